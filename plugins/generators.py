"""Built-in generators plugin (registered through the `lamp_harness` entry-point group)."""

from __future__ import annotations

from lamp_harness.hookspecs import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in generators."""
