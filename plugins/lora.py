"""Several LoRA adapters on one shared transformers model, through peft's low-level API.

The adapters' layers are injected into the model itself (no ``PeftModel`` wrapper), so the model
keeps serving plain requests: with no adapter active every LoRA layer is switched off and the
model computes exactly its base outputs. One adapter at a time is active; adapters are added
(to train one), loaded from a folder in the peft layout (``adapter_config.json``,
``adapter_model.safetensors``: what ``PeftModel.save_pretrained`` and vLLM read), saved to one, and
deleted. The OPPU trainer and the ``hf`` generator's per-request adapters both use these functions.
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
