"""Several LoRA adapters on one shared transformers model, through peft's low-level API.

The adapters' layers are injected into the model itself (no ``PeftModel`` wrapper), so the model
keeps serving plain requests: with no adapter active every LoRA layer is switched off and the
model computes exactly its base outputs. One adapter at a time is active; adapters are added
(to train one), loaded from a folder in the peft layout (``adapter_config.json``,
``adapter_model.safetensors``: what ``PeftModel.save_pretrained`` and vLLM read), saved to one, and
deleted. The OPPU trainer and the ``hf`` generator's per-request adapters both use these functions.

An adapter can also be merged into the model's weights and the result saved as a model folder
(:func:`save_merged`: OPPU's task LoRA). Adapters trained on such a folder name it as their base
(``base_model_name_or_path``, peft's field); :func:`local_base` reads it back, so a generator
answers them on that model rather than on its own.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
"""Key prefix of saved adapter weights (peft's ``PeftModel`` layout, which vLLM expects)."""


def _layers(model: Any) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in model.modules() if isinstance(module, BaseTunerLayer)]


def add(model: Any, config: Any, name: str) -> list[Any]:
    """Inject a fresh adapter ``name`` (a ``peft.LoraConfig``) into ``model`` and make it the active
    one; returns its trainable parameters (the base stays frozen)."""
    from peft import inject_adapter_in_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "already found a peft_config": several adapters, by design
        inject_adapter_in_model(config, model, adapter_name=name)
    activate(model, name)
    params = [p for n, p in model.named_parameters() if "lora_" in n and f".{name}." in n]
    for p in params:
        p.requires_grad_(True)
    return params


def activate(model: Any, name: str | None) -> None:
    """Answer with adapter ``name`` (``None``: with the base model, every adapter switched off)."""
    for layer in _layers(model):
        if name is None:
            layer.enable_adapters(False)
        else:
            layer.enable_adapters(True)
            layer.set_adapter(name)


def delete(model: Any, name: str) -> None:
    """Remove adapter ``name`` from ``model`` (its memory is freed; others stay)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "adapter was active...": activate() decides next
        for layer in _layers(model):
            if name in layer.lora_A:
                layer.delete_adapter(name)
    config = getattr(model, "peft_config", None)
    if isinstance(config, dict):
        config.pop(name, None)


def state(model: Any, name: str) -> dict[str, Any]:
    """Adapter ``name``'s weights, keyed as peft saves them (CPU tensors)."""
    from peft import get_peft_model_state_dict

    weights = get_peft_model_state_dict(model, adapter_name=name)
    return {PREFIX + key: value.detach().to("cpu").contiguous() for key, value in weights.items()}


def save(model: Any, name: str, config: Any, folder: Path, base_model: str) -> None:
    """Write adapter ``name`` into ``folder`` in the peft layout (``folder`` must exist)."""
    from safetensors.torch import save_file

    save_file(state(model, name), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    described = config.to_dict()
    described["base_model_name_or_path"] = base_model
    described["target_modules"] = sorted(described.get("target_modules") or [])
    described["peft_type"] = "LORA"
    (folder / CONFIG_FILE).write_text(json.dumps(described, indent=2, sort_keys=True, default=str), encoding="utf-8")


def applied_modules(folder: Path) -> list[str]:
    """The modules the adapter saved in ``folder`` actually adapts (``q_proj``, ``v_proj``...),
    read from its weights' names: a requested target module the model lacks (``out_proj`` on a
    Llama) matches nothing and is absent here."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / WEIGHTS_FILE), framework="pt") as weights:
        names = list(weights.keys())
    return sorted({name.split(".lora_")[0].rsplit(".", 1)[-1] for name in names if ".lora_" in name})


def read_config(folder: Path) -> Any:
    """The ``peft.LoraConfig`` saved in ``folder``."""
    from peft import LoraConfig

    raw: Mapping[str, Any] = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    known = set(LoraConfig.__dataclass_fields__)
    return LoraConfig(**{k: v for k, v in raw.items() if k in known and k not in ("peft_type",)})


def load(model: Any, folder: Path, name: str) -> None:
    """Load the adapter saved in ``folder`` into ``model`` as ``name`` (and make it active)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    config = read_config(folder)
    config.inference_mode = True
    add(model, config, name)
    for p in model.parameters():
        p.requires_grad_(False)
    device = next(model.parameters()).device
    weights = {
        key.removeprefix(PREFIX): value for key, value in load_file(str(folder / WEIGHTS_FILE), device=str(device)).items()
    }
    result = set_peft_model_state_dict(model, weights, adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        delete(model, name)
        from lamp_harness import lamp_error

        raise lamp_error(
            f"{folder}: the adapter's weights do not fit this model ({unexpected[0]!r} ...)",
            fix="Serve it with the model it was trained on.",
        )
    activate(model, name)


def save_merged(model: Any, name: str, tokenizer: Any, folder: Path) -> None:
    """Save ``model`` with adapter ``name`` merged into its weights (``W + scale * B @ A``, what
    ``PeftModel.merge_and_unload`` computes) as a transformers model folder (config, safetensors,
    generation config, tokenizer) in ``folder``; ``model`` itself is left unchanged."""
    import torch

    tuned = set(_layers(model))
    layers = {path: module for path, module in model.named_modules() if module in tuned}
    weights: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        weights[key.replace(".base_layer.", ".")] = value
    with torch.no_grad():
        for path, layer in layers.items():
            if name not in layer.lora_A:
                continue
            key = f"{path}.weight"
            weights[key] = (weights[key] + layer.get_delta_weight(name).to(weights[key].dtype)).contiguous()
    model.save_pretrained(str(folder), state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def local_base(folder: str | Path) -> str | None:
    """The model folder the adapter in ``folder`` was trained on, when its config names a local
    transformers model folder (a merged model, see :func:`save_merged`); ``None`` when it names a
    hub id or alias (the generator's own model)."""
    try:
        raw = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = raw.get("base_model_name_or_path")
    if not isinstance(base, str) or not Path(base).is_absolute() or not (Path(base) / "config.json").is_file():
        return None
    return str(Path(base).resolve())
