"""Built-in data sources plugin: the official LaMP server and the synthetic demo dataset.

Registered lazily (``"module:Class"`` strings), so listing plugins imports neither module.
"""

from __future__ import annotations

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in data sources."""
    registry.add_data_source(
        "lamp",
        "lamp_tasks.download:LampServerSource",
        "Official LaMP files (https://ciir.cs.umass.edu/downloads/LaMP/, or $LAMP_DATA_URL), "
        "downloaded on demand into $LAMP_HOME/data/lamp and reused.",
        aliases=("official",),
    )
    registry.add_data_source(
        "demo",
        "lamp_tasks.demo:DemoSource",
        "Synthetic demo data for LaMP-1..7 (train 80 / dev 40 questions) with planted personal "
        "signals; generated on first use, no network.",
        aliases=("synthetic",),
    )
    registry.add_data_source(
        "hub",
        "lamp_tasks.hub:HubSource",
        "Hugging Face hub datasets (LongLaMP/LongLaMP, bowen-upenn/PersonaMem) through huggingface_hub's "
        "cache under $LAMP_HOME/hub (resumable, offline once cached), converted into $LAMP_HOME/data/hub.",
    )
