"""Built-in generators plugin (registered through the ``lamp_harness`` entry-point group).

Registers the ``hf`` generator (any transformers model: hub id, local folder or alias) and the
built-in model aliases and presets (:mod:`lamp_plugins.models`). Factories are lazy strings, so
torch and transformers are imported only when a generator is created.
"""

from __future__ import annotations

from lamp_harness.hookspecs import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in generators, model aliases and presets."""
    from lamp_plugins import models

    registry.add_generator(
        "hf", "lamp_plugins.hf_generator:HFGenerator",
        "Any transformers model (alias, hub id or local folder): encoder-decoder or decoder-only; "
        "greedy/beam search, label scoring, soft-prompt prefixes (PPlug), fusion-in-decoder (FiD).")
    models.register(registry)
