"""The module the ``lamp_harness`` entry point names: it only registers, it never computes.

The factory is given as a ``"module:Class"`` string, so ``lamp_plugin_example.overlap`` is imported
only when someone actually runs the ``overlap`` retriever (``lamp --help`` stays fast).
"""

from __future__ import annotations

from lamp_harness import Registry, hookimpl


@hookimpl
def lamp_register(registry: Registry) -> None:
    """Add the ``overlap`` retriever to lamp-harness."""
    registry.add_retriever(
        "overlap",
        "lamp_plugin_example.overlap:OverlapRetriever",
        "Word overlap: profile items sharing the most lowercase words with the query first "
        "(example plugin; args: min_len=N ignores words shorter than N).",
    )
