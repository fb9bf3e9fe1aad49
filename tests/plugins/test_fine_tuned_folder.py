"""The model folder the ``vllm`` generator serves a fine-tuned generator checkpoint from (built
without vLLM: links to the base model's files beside the checkpoint's safetensors). The engine
serving it is tested in ``test_vllm_engine.py``."""

from __future__ import annotations

import pytest
import torch
from lamp_plugins.vllm_generator import fine_tuned_folder
from safetensors.torch import load_file, save_file

from lamp_harness.base.errors import LampError
from lamp_harness.inputs.models import ResolvedModel


@pytest.fixture
def base(tiny_llama_dir, lamp_home, monkeypatch):
    monkeypatch.setenv("LAMP_MODEL_CACHE", str(lamp_home / "models"))
    return ResolvedModel("generator", "tiny-llama", "local", str(tiny_llama_dir))


def _checkpoint(tmp_path, tiny_llama_dir, change=None):
    state = {k: v.clone() + 1.0 for k, v in load_file(str(tiny_llama_dir / "model.safetensors")).items()}
    if change:
        change(state)
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path), metadata={"step": "3"})
    return path


def test_the_folder_links_the_base_files_beside_the_fine_tuned_weights(base, tiny_llama_dir, tmp_path):
    weights = _checkpoint(tmp_path, tiny_llama_dir)
    folder = fine_tuned_folder(base, weights)
    assert (folder / "model.safetensors").resolve() == weights.resolve()
    assert (folder / "config.json").resolve() == (tiny_llama_dir / "config.json").resolve()
    assert (folder / "tokenizer_config.json").is_symlink()
    assert not any(p.name.endswith(".safetensors") and p.name != "model.safetensors" for p in folder.iterdir())
    loaded = load_file(str(folder / "model.safetensors"))
    original = load_file(str(tiny_llama_dir / "model.safetensors"))
    assert all(torch.equal(loaded[k], original[k] + 1.0) for k in original)
    assert fine_tuned_folder(base, weights) == folder  # reused


def test_a_folder_with_a_dangling_link_is_rebuilt(base, tiny_llama_dir, tmp_path):
    weights = _checkpoint(tmp_path, tiny_llama_dir)
    folder = fine_tuned_folder(base, weights)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(tmp_path / "gone.json")
    assert fine_tuned_folder(base, weights) == folder
    assert (folder / "config.json").resolve() == (tiny_llama_dir / "config.json").resolve()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.pop(next(k for k in s if "layers.1." in k)), "lacks"),
        (lambda s: s.update({"model.extra.weight": torch.zeros(2)}), "which the model has not"),
        (
            lambda s: s.update({k: torch.zeros(3, 3) for k in [next(k for k in s if k.endswith("q_proj.weight"))]}),
            "with shape (3, 3)",
        ),
    ],
)
def test_anything_but_a_whole_fine_tune_is_one_line(base, tiny_llama_dir, tmp_path, change, expected):
    weights = _checkpoint(tmp_path, tiny_llama_dir, change)
    with pytest.raises(LampError) as error:
        fine_tuned_folder(base, weights)
    message = str(error.value)
    assert "\n" not in message and expected in message and "not a whole fine-tune" in message
