"""Training: ``lamp train``.

What lives here: ``training`` (the training loop, checkpoints, resuming; a cell's trainer takes a
``CellSpec`` and a context, never the runner).

What it may import: everything up to floor 6 (``lamp_harness.base``, ``plugin``, ``inputs``, the
lower floors of ``run``: ``cells``, ``prediction``...), never ``run.runner`` (the runner calls the
trainer, not the other way round). This package imports nothing itself (no re-exports). The floors
are in docs/architecture.md.
"""
