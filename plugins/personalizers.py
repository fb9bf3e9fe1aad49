"""Built-in personalizers plugin (registered through the ``lamp_harness`` entry-point group)."""

from __future__ import annotations

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in personalizers (factories are imported lazily)."""
    registry.add_personalizer(
        "none", "lamp_plugins.basic_personalizers:NonPersonalized", "Non-personalized baseline: the bare task input."
    )
    registry.add_personalizer(
        "ipa",
        "lamp_plugins.basic_personalizers:InPromptAugmentation",
        "In-prompt augmentation (LaMP): top-k retrieved items in the prompt, official truncation.",
    )
    registry.add_personalizer(
        "full",
        "lamp_plugins.basic_personalizers:FullProfile",
        "The whole profile in the prompt (long-context tasks: the entire history up to the question), "
        "fitted to the input budget by the task (PersonaMem drops the oldest context first).",
    )
    registry.add_personalizer(
        "fid",
        "lamp_plugins.fid:FusionInDecoder",
        "Fusion-in-decoder (LaMP): one passage per retrieved item, fused in an encoder-decoder's "
        "decoder; trainable (fine-tunes the generator).",
    )
    registry.add_personalizer(
        "pplug",
        "lamp_plugins.pplug:PPlug",
        "PPlug (persona-plug): input-aware user embedding [I; P] as soft tokens in front of a frozen "
        "LLM; trainable. With a retriever: PPlug + retrieval.",
    )
    registry.add_personalizer(
        "pplug+retrieval",
        "lamp_plugins.pplug:PPlugRetrieval",
        "PPlug + retrieval: the top-1 retrieved item (dense BGE-style retriever by default) as text "
        "in front of [I; P]; trainable.",
    )
    registry.add_personalizer(
        "oppu",
        "lamp_plugins.oppu:OPPU",
        "OPPU (one PEFT per user): a LoRA per user trained on that user's history, questions answered "
        "with it; trained per user on demand (lamp run) or by lamp train (users dealt to ranks).",
    )
    registry.add_personalizer(
        "oppu+retrieval",
        "lamp_plugins.oppu:OPPURetrieval",
        "OPPU + RAG: the user's LoRA and the top-k retrieved items in the prompt (BM25 by default).",
    )
    registry.add_personalizer(
        "oppu+summary",
        "lamp_plugins.oppu:OPPUSummary",
        "OPPU + PAG: the user's LoRA and the user's profile summary in the prompt.",
    )
    registry.add_personalizer(
        "pag",
        "lamp_plugins.oppu:PAG",
        "PAG (summary-augmented prompting): a per-user profile summary written by a summarizer "
        "generator (cached), then the top-k retrieved items, within the task's token budget.",
    )
