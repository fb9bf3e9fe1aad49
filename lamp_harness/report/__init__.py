"""Reports read from finished cells: scores, paired tests, leaderboards, submission files.

What lives here: ``significance`` (paired tests, Holm's correction), ``scores`` (per-example scores
of a cell), the ``leaderboard`` package (paper-style tables, the HTML page, comparisons; its page
and comparisons build on its model, not on its reader) and ``export`` (official-format submission
files).

What it may import: ``significance`` (floor 1) only floors 0-1 (``lamp_harness.base``,
``plugin.contracts``, ``inputs.metrics``); ``scores`` (floor 4) also the plugin host,
``lamp_harness.inputs`` and the run's cells, records and store (floor 2), and sits below the
prediction loop, which scores through it; ``leaderboard`` and ``export`` (floor 8) anything below
the CLI. Cell files are read through ``lamp_harness.run.store.CellStore`` only. This package imports
nothing itself (no re-exports). The floors are in docs/architecture.md.
"""
