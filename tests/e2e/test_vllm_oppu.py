"""OPPU's per-user adapters served by the real vLLM CPU engine (``.venv-vllm``) with SmolLM2:
one LoRA-enabled engine on the stage-1 model (the task LoRA merged into SmolLM2, a local model
folder), one ``LoRARequest`` per question, greedy outputs against ``hf``.

The hf run trains stage 1 and every user's adapter; the vllm run finds the same stage-1 model and
adapters (their stores are keyed by the trainer's model, which the engine names) and trains
nothing. Skips without ``.venv-vllm``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vllm_env import engine_env, lamp_vllm, require_vllm

pytestmark = pytest.mark.slow

LIMIT = 4


def _cell(out: Path) -> tuple[dict, dict[str, str]]:
    (config,) = list(out.glob("*/config.json"))
    lines = (config.parent / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(config.read_text()), {p["example_id"]: p["raw"] for p in map(json.loads, lines)}


def test_vllm_serves_every_users_adapter_from_one_engine_as_hf_does(tmp_path, session_lamp_home) -> None:
    require_vllm()
    env = engine_env(tmp_path / "home", session_lamp_home / "models")
    command = [
        "run",
        "--task",
        "lamp-7",
        "--data",
        "demo",
        "--personalizer",
        "oppu",
        "--limit",
        str(LIMIT),
        "--num-beams",
        "1",
        "--generator-arg",
        "dtype=float32",
        "--personalizer-arg",
        "epochs=1",
        "--personalizer-arg",
        "stage1_examples=32",
        "--personalizer-arg",
        "stage1_epochs=2",
        "--quiet",
    ]
    lamp = Path(sys.executable).parent / "lamp"
    hf = subprocess.run(
        [str(lamp), *command, "--generator", "hf", "--out", str(tmp_path / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert hf.returncode == 0, hf.stderr[-3000:]
    engine = lamp_vllm(
        [
            *command,
            "--generator",
            "vllm",
            "--generator-arg",
            "max_loras=4",
            "--generator-arg",
            "max_lora_rank=8",
            "--out",
            str(tmp_path / "vllm"),
        ],
        env,
    )
    assert engine.returncode == 0, engine.stderr[-3000:]
    hf_config, hf_raw = _cell(tmp_path / "hf")
    config, raw = _cell(tmp_path / "vllm")
    assert hf_config["personalizer"]["trained_this_run"] == LIMIT  # one user per demo question
    assert config["personalizer"]["trained_this_run"] == 0 and config["personalizer"]["users"] == LIMIT
    assert config["personalizer"]["adapters"] == hf_config["personalizer"]["adapters"]
    stage1, hf_stage1 = config["personalizer"]["stage1"], hf_config["personalizer"]["stage1"]
    assert config["personalizer"]["stage1_task_lora"] is True and hf_stage1["trained_this_run"] is True
    assert stage1["trained_this_run"] is False and stage1["folder"] == hf_stage1["folder"]
    assert stage1["examples"] == 32 and stage1["epochs"] == 2
    merged = str(Path(stage1["folder"]) / "model")
    for adapter in (Path(hf_config["personalizer"]["adapters"]) / "users").iterdir():
        if adapter.is_dir() and not adapter.name.startswith("."):  # what vLLM's engine is started on
            assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == merged
    engine_args = config["generator"]["engine_args"]
    assert engine_args["enable_lora"] is True and engine_args["max_loras"] == 4 and engine_args["max_lora_rank"] == 8
    agree = sum(raw[k] == hf_raw[k] for k in hf_raw) / len(hf_raw)
    assert agree >= 0.9, {k: (hf_raw[k], raw[k]) for k in hf_raw if raw[k] != hf_raw[k]}
