"""Data, models and scoring primitives: what a run reads and how it scores.

What lives here: ``cache`` (embedding and ranking caches shared by runs), ``metrics`` (task-agnostic
metrics with bootstrap intervals), ``data`` (LaMP data files, the data-source contract, dataset
resolution) and ``models`` (model aliases, presets, the model cache).

What it may import: ``cache`` and ``metrics`` (floor 1) only ``lamp_harness.base`` and floor 1 of
``lamp_harness.plugin`` (``contracts``); ``data`` and ``models`` (floor 4) also the plugin host
(``lamp_harness.plugin.registry``, which looks components up). This package imports nothing itself
(no re-exports). The floors are in docs/architecture.md.
"""
