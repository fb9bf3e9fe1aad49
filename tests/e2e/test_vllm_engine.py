"""The ``vllm`` generator on the real vLLM CPU engine (``.venv-vllm``) with SmolLM2, against ``hf``.

One ``lamp run`` per generator covers everything: LaMP-7 (free generation) with none, IPA and
PPlug + retrieval, LaMP-2 (label scoring) with none and PPlug (soft prompts: ``prompt_embeds`` on
vLLM). The hf run trains
PPlug; the vLLM run reuses that very checkpoint from ``$LAMP_HOME/checkpoints`` (vLLM cannot
train). Both run in fp32, greedy. Skips when ``.venv-vllm`` is not built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vllm_env import engine_env, lamp_vllm, require_vllm

pytestmark = pytest.mark.slow

LIMIT = 10
# LaMP-7 (free generation) with none, IPA and PPlug + retrieval (text and soft prefix); LaMP-2
# (label scoring) with none and PPlug. fp32, greedy; PPlug trains a few steps (on hf).
MATRIX_FILE = f"""
data = "demo"
limit = {LIMIT}
decode = "labels"
[generator-args]
dtype = "float32"
[train-args]
max_steps = 2
batch_size = 4
limit = 16
[[group]]
task = ["lamp-7"]
personalizer = ["none"]
[[group]]
task = ["lamp-7"]
personalizer = ["ipa", "pplug+retrieval"]
retriever = ["bm25"]
[[group]]
task = ["lamp-2"]
personalizer = ["none", "pplug"]
"""


def _cells(out: Path) -> dict[tuple[str, str], Path]:
    cells = {}
    for config in out.glob("*/config.json"):
        data = json.loads(config.read_text(encoding="utf-8"))
        cells[(data["task"], data["personalizer"]["name"])] = config.parent
    return cells


def _raw(cell: Path) -> dict[str, str]:
    lines = (cell / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return {p["example_id"]: p["raw"] for p in map(json.loads, lines)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, session_lamp_home):
    """The same matrix through ``hf`` (this virtualenv) and through ``vllm`` (``.venv-vllm``)."""
    require_vllm()
    home = tmp_path_factory.mktemp("vllm-home")
    env = engine_env(home, session_lamp_home / "models")
    matrix = home / "matrix.toml"
    matrix.write_text(MATRIX_FILE, encoding="utf-8")
    command = ["run", "--config", str(matrix), "--quiet"]
    lamp = Path(sys.executable).parent / "lamp"
    hf = subprocess.run(
        [str(lamp), *command, "--generator", "hf", "--out", str(home / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert hf.returncode == 0, hf.stderr[-3000:]
    engine = lamp_vllm([*command, "--generator", "vllm", "--out", str(home / "vllm")], env)
    assert engine.returncode == 0, engine.stderr[-3000:]
    return _cells(home / "hf"), _cells(home / "vllm"), engine


def _agreement(runs, task: str, personalizer: str) -> float:
    hf, engine, _ = runs
    a, b = _raw(hf[(task, personalizer)]), _raw(engine[(task, personalizer)])
    assert len(a) == len(b) == LIMIT and set(a) == set(b)
    return sum(a[i] == b[i] for i in a) / len(a)


@pytest.mark.parametrize("personalizer", ["none", "ipa"])
def test_greedy_outputs_equal_hf_on_at_least_90_percent(runs, personalizer):
    assert _agreement(runs, "lamp-7", personalizer) >= 0.9


def test_label_scoring_picks_the_same_labels_as_hf(runs):
    assert _agreement(runs, "lamp-2", "none") == 1.0


def test_pplug_soft_prompts_through_prompt_embeds_match_hf(runs):
    assert _agreement(runs, "lamp-7", "pplug+retrieval") >= 0.9
    assert _agreement(runs, "lamp-2", "pplug") == 1.0


def test_pplug_runs_the_checkpoint_trained_with_hf(runs):
    hf, engine, _ = runs
    for task, method in (("lamp-7", "pplug+retrieval"), ("lamp-2", "pplug")):
        trained = json.loads((hf[(task, method)] / "config.json").read_text())["checkpoint"]
        used = json.loads((engine[(task, method)] / "config.json").read_text())["checkpoint"]
        assert trained and used == trained


def test_config_records_the_engine_and_timing_the_speed(runs):
    _, engine, _ = runs
    cell = engine[("lamp-7", "none")]
    generator = json.loads((cell / "config.json").read_text())["generator"]
    assert generator["plugin"] == "vllm" and generator["engine"].startswith("vllm ")
    assert generator["dtype"] == "float32" and generator["engine_args"]["enable_prompt_embeds"] is True
    timing = json.loads((cell / "timing.json").read_text())
    assert timing["examples"] == LIMIT and timing["generated_tokens"] > 0 and timing["prompt_tokens"] > 0


def test_encoder_decoder_models_are_refused_in_one_line_suggesting_hf(tiny_t5_dir, tmp_path, session_lamp_home):
    require_vllm()
    env = engine_env(tmp_path / "home", session_lamp_home / "models")
    done = lamp_vllm(
        [
            "run",
            "--task",
            "lamp-7",
            "--data",
            "demo",
            "--limit",
            "2",
            "--quiet",
            "--generator",
            f"vllm:{tiny_t5_dir}",
            "--out",
            str(tmp_path / "runs"),
        ],
        env,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    message = done.stderr.strip().splitlines()[-1]
    assert "encoder-decoder" in message and f"--generator hf:{tiny_t5_dir}" in message
    assert "Traceback" not in done.stderr


def test_a_fine_tuned_generator_is_served_from_its_checkpoint(runs, tmp_path, session_lamp_home):
    """``lamp train --personalizer none`` on hf, then ``lamp run --checkpoint`` through hf and through
    vllm: the engine serves the fine-tuned weights (its outputs are hf's, not the base model's)."""
    hf_base, _, _ = runs
    env = engine_env(tmp_path / "home", session_lamp_home / "models")
    lamp = Path(sys.executable).parent / "lamp"
    tuned = tmp_path / "none-ft"
    dtype = ("--generator-arg", "dtype=float32")
    train = subprocess.run(
        [
            str(lamp),
            "train",
            "--task",
            "lamp-7",
            "--data",
            "demo",
            "--personalizer",
            "none",
            "--eval-split",
            "none",
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--limit",
            "12",
            "--lr",
            "1e-3",
            *dtype,
            "--out",
            str(tuned),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    command = [
        "run",
        "--task",
        "lamp-7",
        "--data",
        "demo",
        "--limit",
        str(LIMIT),
        "--personalizer",
        "none",
        "--checkpoint",
        str(tuned),
        *dtype,
        "--quiet",
    ]
    hf = subprocess.run(
        [str(lamp), *command, "--generator", "hf", "--out", str(tmp_path / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert hf.returncode == 0, hf.stderr[-3000:]
    engine = lamp_vllm([*command, "--generator", "vllm", "--out", str(tmp_path / "vllm")], env)
    assert engine.returncode == 0, engine.stderr[-3000:]
    (hf_cell,), (engine_cell,) = _cells(tmp_path / "hf").values(), _cells(tmp_path / "vllm").values()
    a, b, base = _raw(hf_cell), _raw(engine_cell), _raw(hf_base[("lamp-7", "none")])
    assert set(a) == set(b) == set(base)
    assert sum(a[i] == b[i] for i in a) >= 0.9 * LIMIT  # the fine-tuned model, on either generator
    assert sum(a[i] != base[i] for i in a) >= LIMIT // 2  # ...which is not the base model
    config = json.loads((engine_cell / "config.json").read_text())
    assert config["checkpoint"] and "(fine-tuned)" in config["label"]
    assert list((session_lamp_home / "models" / "fine-tuned").glob("*/model.safetensors"))
