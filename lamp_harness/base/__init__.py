"""Floor 0: the helpers everything else stands on.

What lives here: ``errors`` (``LampError``, the one exception a user can fix), ``secrets`` (what a
secret is, redaction), ``io`` (atomic writes, checksums, ``$LAMP_HOME``), ``progress`` (the progress
bar), ``tokens`` (token counters for prompt budgets) and ``distributed`` (ranks and collectives).

What it may import: nothing else of the core (these modules import only each other). This package
imports nothing itself (no re-exports): import the module you need, e.g.
``from lamp_harness.base.errors import lamp_error``. The floors are in docs/architecture.md.
"""
