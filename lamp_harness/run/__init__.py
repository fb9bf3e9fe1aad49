"""A run, cell by cell: plan, assemble, predict, judge, record, schedule.

What lives here: ``cells`` (the matrix, ``CellSpec``, ``RunInfo``, plan expansion and ``assemble()``),
``records`` (what a cell leaves on disk, typed), ``store`` (a cell's folder, its only reader and
writer), ``prediction`` (the prediction loop), ``judge`` (LLM-judged metrics) and ``runner`` (the
scheduler of ``lamp run``).

What it may import: ``cells``, ``records`` and ``store`` (floor 2) only ``lamp_harness.base`` and
floor 1 (``plugin.contracts``, ``plugin.options``, ``plugin.catalog``, ``inputs.cache``,
``inputs.metrics``...); ``prediction`` and ``judge`` (floor 5) also the plugin host,
``lamp_harness.inputs`` and ``report.scores`` (floor 4: a cell's per-example scores); ``runner``
(floor 7) also the plugin API and ``lamp_harness.train``. This package imports nothing itself (no
re-exports). The floors are in docs/architecture.md.
"""
