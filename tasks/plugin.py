"""Built-in task plugin: the LaMP tasks and their data sources."""

from __future__ import annotations

from lamp_harness.hookspecs import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the LaMP tasks and data sources."""
