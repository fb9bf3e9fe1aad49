"""Built-in personalizers plugin (registered through the ``lamp_harness`` entry-point group)."""

from __future__ import annotations

from lamp_harness.hookspecs import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in personalizers (factories are imported lazily)."""
    registry.add_personalizer(
        "none", "lamp_plugins.basic_personalizers:NonPersonalized",
        "Non-personalized baseline: the bare task input.")
    registry.add_personalizer(
        "ipa", "lamp_plugins.basic_personalizers:InPromptAugmentation",
        "In-prompt augmentation (LaMP): top-k retrieved items in the prompt, official truncation.")
