"""Built-in generators plugin (registered through the ``lamp_harness`` entry-point group).

Registers the ``hf`` generator (any transformers model: hub id, local folder or alias), the
``vllm`` generator (an in-process vLLM engine), the ``openai`` generator (any OpenAI-compatible
HTTP server) and the built-in model aliases and presets (:mod:`lamp_plugins.models`). Factories are lazy strings, so
torch, transformers, vllm and httpx are imported only when a generator is created.
"""

from __future__ import annotations

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in generators, model aliases and presets."""
    from lamp_plugins import models

    registry.add_generator(
        "hf",
        "lamp_plugins.hf_generator:HFGenerator",
        "Any transformers model (alias, hub id or local folder): encoder-decoder or decoder-only; "
        "greedy/beam search, label scoring, soft-prompt prefixes (PPlug), fusion-in-decoder (FiD).",
    )
    registry.add_generator(
        "vllm",
        "lamp_plugins.vllm_generator:VLLMGenerator",
        'Decoder-only models on an in-process vLLM engine (pip install "lamp-harness[vllm]", or '
        "scripts/setup-vllm.sh on CPU): batched greedy/sampling/beam decoding, label scoring from "
        "prompt logprobs, PPlug soft prompts through prompt_embeds.",
    )
    registry.add_generator(
        "openai",
        "lamp_plugins.openai_generator:OpenAIGenerator",
        "Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, OpenAI, Azure): "
        "--generator openai:MODEL --generator-arg base_url=URL; concurrency, rate limits, "
        "retries, a response cache, token usage.",
    )
    models.register(registry)
