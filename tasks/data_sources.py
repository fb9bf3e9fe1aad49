"""Built-in data sources plugin: the official LaMP server and the synthetic demo dataset."""

from __future__ import annotations

from lamp_harness.hookspecs import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in data sources."""
