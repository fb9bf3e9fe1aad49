"""OPPU (one LoRA per user) and PAG (profile summaries): per-user training on the user's own history
only, atomic adapters that a killed job resumes, per-request adapter serving, cached summaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lamp_cli import demo_run

from lamp_harness.inputs.data import resolve_dataset
from lamp_harness.plugin.contracts import GenerationRequest, RunContext
from lamp_harness.plugin.registry import host

pytest_plugins = ("tiny_models",)
BIN = Path(sys.executable).parent


def env(**extra: str) -> dict[str, str]:
    values = {**os.environ, "OMP_NUM_THREADS": "1", "LAMP_DIST_TIMEOUT": "120"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID"):
        values.pop(name, None)
    return {**values, **extra}


def dev_examples(context: RunContext, task_name: str = "lamp-7", n: int = 3):
    task = host().registry.create("task", task_name)
    return task, resolve_dataset(task, data="demo", data_dir=None, split="dev", context=context).examples[:n]


def build(context: RunContext, model_dir: Path, name: str = "oppu", **args: str):
    registry = host().registry
    generator = registry.create("generator", "hf", context, model=str(model_dir), num_beams="1")
    return generator, registry.create("personalizer", name, context, **args)


@pytest.mark.slow
def test_each_users_adapter_is_trained_on_that_users_history_only(context, tiny_llama_dir) -> None:
    from lamp_plugins.oppu import OPPU, text_hash, user_key

    task, examples = dev_examples(context, n=3)
    # Stage 1 off: the per-user adapters train on this very generator, whose loss is recorded.
    generator, oppu = build(context, tiny_llama_dir, epochs="1", batch_size="4", stage1="false")
    oppu.setup(task, generator, context)
    seen: dict[str, list[str]] = {}
    current: list[str] = []
    real_loss, real_train_one = generator.loss, OPPU._train_one

    def loss(requests, targets):  # the real loss; records what reached the model for which user
        seen.setdefault(current[-1], []).extend(f"{r.prompt}\n{t}" for r, t in zip(requests, targets, strict=True))
        return real_loss(requests, targets)

    def train_one(self, task, key, example, folder):
        current.append(key)
        return real_train_one(self, task, key, example, folder)

    generator.loss = loss
    OPPU._train_one = train_one
    try:
        oppu.prepare(task, examples)
    finally:
        OPPU._train_one = real_train_one
    profiles = {user_key(ex): {item.get("text") for item in ex.profile} for ex in examples}
    sizes = {user_key(ex): len(ex.profile) for ex in examples}
    assert len(profiles) == 3 and set(seen) == set(profiles)
    for key, texts in seen.items():
        others = set().union(*(p for k, p in profiles.items() if k != key))
        answers = {t.split("\n", 1)[1] for t in texts}  # lamp-7: the answer is the user's own tweet
        assert answers <= profiles[key] and not answers & others
        assert len(texts) == sizes[key]  # 1 epoch: every item of the user once, nothing else
        manifest = json.loads((oppu.user_folder(key) / "manifest.json").read_text())
        assert sorted(manifest["trained_on"]) == sorted(text_hash(t) for t in texts)
        assert oppu.user_folder(key).stat().st_mode & 0o777 == 0o755  # a shared $LAMP_HOME serves a team
    held = json.loads((oppu.store() / "users.json").read_text())
    assert held["count"] == 3 and set(held["users"]) == {k[:32] for k in profiles}


@pytest.mark.slow
def test_hf_answers_with_the_users_adapter_as_a_merged_model_would(context, tiny_llama_dir, tmp_path) -> None:
    """Adapter switching on the shared model gives what the base model with the LoRA merged into
    its weights (W + alpha/r * B A, computed here by hand) generates; plain requests stay base."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, examples = dev_examples(context, n=2)
    generator, oppu = build(context, tiny_llama_dir, epochs="3", lr="0.05", batch_size="4", stage1="false")
    oppu.setup(task, generator, context)
    oppu.prepare(task, examples)
    requests = [oppu.personalize(task, ex, ()) for ex in examples]
    assert len({r.adapter for r in requests}) == 2
    plain = [GenerationRequest(r.example_id, r.prompt, max_new_tokens=8) for r in requests]
    requests = [GenerationRequest(r.example_id, r.prompt, max_new_tokens=8, adapter=r.adapter) for r in requests]
    base_before = [g.text for g in generator.generate(plain)]
    adapted = [g.text for g in generator.generate(requests + plain)]
    assert adapted[2:] == base_before  # no adapter leaks into plain requests
    assert adapted[:2] != base_before  # the adapters change the answers (lr 0.05 on a tiny model)

    for request, text in zip(requests, adapted[:2], strict=True):
        folder = Path(request.adapter)
        config = json.loads((folder / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        weights = load_file(str(folder / "adapter_model.safetensors"))
        model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for key, a in weights.items():
                if ".lora_A." not in key:
                    continue
                b = weights[key.replace(".lora_A.", ".lora_B.")]
                target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
                params[target] += scale * (b @ a)
        merged = tmp_path / f"merged-{folder.name}"
        model.save_pretrained(merged)
        AutoTokenizer.from_pretrained(str(tiny_llama_dir)).save_pretrained(merged)
        reference = host().registry.create("generator", "hf", context, model=str(merged), num_beams="1")
        assert reference.generate([GenerationRequest("x", request.prompt, max_new_tokens=8)])[0].text == text


def train_split(context: RunContext, task_name: str = "lamp-7"):
    task = host().registry.create("task", task_name)
    return lambda: resolve_dataset(task, data="demo", data_dir=None, split="train", context=context).examples


@pytest.mark.slow
def test_stage1_task_lora_is_trained_once_merged_and_the_users_adapters_sit_on_it(context, tiny_llama_dir) -> None:
    """Stage 1: a task LoRA trained on the training users, merged into the base model (what
    peft's merge_and_unload gives), trained once and reused by another cell; each user's adapter
    is trained on and answered with that merged model, by the hf generator."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    task, examples = dev_examples(context, n=2)
    args = {"epochs": "1", "batch_size": "4", "lr": "0.05", "stage1_examples": "8", "stage1_epochs": "2"}
    generator, oppu = build(context, tiny_llama_dir, **args)
    oppu.setup(task, generator, context)
    oppu.use_train_split(train_split(context))
    oppu.prepare(task, examples)
    described = oppu.describe()
    assert described["stage1_task_lora"] is True
    stage1 = described["stage1"]
    assert stage1["examples"] == 8 and stage1["epochs"] == 2 and stage1["steps"] == 4 and stage1["trained_this_run"]
    # What was applied, beside what was asked: a Llama has o_proj, not the official script's out_proj.
    assert stage1["lora"]["target_modules"] == ["q_proj", "v_proj", "k_proj", "out_proj"]
    assert stage1["lora"]["applied_to"] == ["k_proj", "q_proj", "v_proj"]
    assert described["lora"]["applied_to"] == ["q_proj", "v_proj"]
    folder = Path(stage1["folder"])
    merged = folder / "model"
    # The merged model is the base with the task LoRA merged in (peft's own merge), not the base.
    raw = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    reference = PeftModel.from_pretrained(raw, str(folder / "adapter")).merge_and_unload()
    saved = load_file(str(merged / "model.safetensors"))
    base = dict(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).state_dict())
    expected = reference.state_dict()
    assert set(saved) <= set(expected) and not any("lora" in k for k in saved)
    for key, value in saved.items():
        assert torch.allclose(value, expected[key], atol=1e-6), key
    changed = [k for k in saved if not torch.equal(saved[k], base[k])]
    assert changed and all(("q_proj" in k or "k_proj" in k or "v_proj" in k) for k in changed)
    # Each user's adapter names the merged model as its base, and is answered on it.
    requests = [oppu.personalize(task, ex, ()) for ex in examples]
    for request in requests:
        config = json.loads((Path(request.adapter) / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(merged)
    asked = [GenerationRequest(r.example_id, r.prompt, max_new_tokens=6, adapter=r.adapter) for r in requests]
    on_merged = generator.on_base(merged)
    assert on_merged is oppu.trainer and on_merged is not generator
    texts = [g.text for g in generator.generate(asked)]
    assert texts == [g.text for g in on_merged.generate(asked)]
    plain = [GenerationRequest(r.example_id, r.prompt, max_new_tokens=6) for r in requests]
    assert [g.text for g in generator.generate(plain)] != [g.text for g in on_merged.generate(plain)]
    stamp = (merged / "model.safetensors").stat().st_mtime_ns

    # Another cell (a new personalizer): stage 1 is found, not trained again.
    again = host().registry.create("personalizer", "oppu", context, **args)
    again.setup(task, generator, context)
    again.use_train_split(train_split(context))
    again.prepare(task, examples)
    assert again.describe()["stage1"]["trained_this_run"] is False and again.merged == merged
    assert again.describe()["trained_this_run"] == 0  # the per-user adapters too
    assert (merged / "model.safetensors").stat().st_mtime_ns == stamp
    # Switched off: the adapters train on the base model, in a store of their own.
    plain = {k: v for k, v in args.items() if not k.startswith("stage1_")}  # stage-1 settings are refused then
    off = host().registry.create("personalizer", "oppu", context, **plain, stage1="false")
    off.setup(task, generator, context)
    off.prepare(task, examples)
    assert off.describe()["stage1_task_lora"] is False and "stage1" not in off.describe()
    assert off.store() != oppu.store()


@pytest.mark.slow
def test_stage1_without_a_training_split_is_a_one_line_error(context, tiny_llama_dir) -> None:
    from lamp_harness import LampError

    task, examples = dev_examples(context, n=1)
    generator, oppu = build(context, tiny_llama_dir)
    oppu.setup(task, generator, context)
    with pytest.raises(LampError, match="stage1=false"):
        oppu.prepare(task, examples)
    oppu.use_train_split(train_split(context))
    with pytest.raises(LampError, match="nothing to train on"):  # asked users are never stage-1 users
        oppu.prepare(task, train_split(context)())


def _adapters(store: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {
        d.name: load_file(str(d / "adapter_model.safetensors"))
        for d in sorted((store / "users").iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


@pytest.mark.slow
def test_killed_per_user_training_resumes_to_the_adapters_of_an_uninterrupted_run(tiny_llama_dir, tmp_path) -> None:
    import torch

    args = [
        "train",
        "--task",
        "lamp-7",
        "--personalizer",
        "oppu",
        "--data",
        "demo",
        "--split",
        "dev",
        "--limit",
        "8",
        "--generator",
        str(tiny_llama_dir),
        "--personalizer-arg",
        "epochs=12",
        "--personalizer-arg",
        "batch_size=4",
        "--quiet",
    ]
    home = str(tmp_path / "home")
    whole = subprocess.run(
        [str(BIN / "lamp"), *args, "--out", str(tmp_path / "whole")],
        env=env(LAMP_HOME=home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr
    assert "trained 8 of 8 users' adapters" in whole.stdout
    # The command it suggests finds these adapters: the same data, split, model and settings.
    suggested = f"use them with: lamp run --task lamp-7 --data demo --split dev --generator {tiny_llama_dir}"
    assert suggested in whole.stdout and "--personalizer oppu --personalizer-arg epochs=12" in whole.stdout
    reference = _adapters(tmp_path / "whole")
    assert len(reference) == 8

    killed = tmp_path / "killed"
    job = subprocess.Popen(
        [str(BIN / "lamp"), *args, "--out", str(killed)],
        env=env(LAMP_HOME=home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        # An adapter counts once renamed into place: its temporary folder (".NAME.xxx") holds a manifest first.
        users = killed / "users"
        done = (
            [d for d in users.glob("*") if not d.name.startswith(".") and (d / "manifest.json").exists()]
            if users.exists()
            else []
        )
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed; give it more epochs"
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=60)
    partial = len(_adapters(killed))
    assert 2 <= partial < 8
    # Resumed with another world size: only the missing users are trained.
    resumed = subprocess.run(
        [str(BIN / "lamp"), *args, "--out", str(killed), "--nproc-per-node", "2"],
        env=env(LAMP_HOME=home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"trained {8 - partial} of 8 users' adapters" in resumed.stdout
    again = _adapters(killed)
    assert set(again) == set(reference)
    for user, weights in reference.items():
        assert set(again[user]) == set(weights)
        assert all(torch.equal(weights[k], again[user][k]) for k in weights), user
    held = json.loads((killed / "users.json").read_text())
    assert held["count"] == 8 and sorted(held["users"]) == sorted(reference)


@pytest.mark.slow
def test_lamp_run_trains_serves_and_keeps_pag_summaries_generating_none_twice(cli, tiny_llama_dir, tmp_path) -> None:
    matrix = demo_run(
        "--personalizer",
        "oppu,oppu+retrieval,oppu+summary,pag",
        "--retriever",
        "bm25",
        "--generator-arg",
        "num_beams=1",
        "--personalizer-arg",
        "pag:summary_tokens=6",
        "--personalizer-arg",
        "oppu+summary:summary_tokens=6",
        "--personalizer-arg",
        "oppu:epochs=1",
        "--summarizer",
        str(tiny_llama_dir),
        "--summarizer-arg",
        "num_beams=2",
        generator=str(tiny_llama_dir),
        limit=3,
        quiet=False,
    )
    code, out, err = cli(*matrix, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert "oppu+retrieval" in out + err and "pag" in out + err  # the leaderboard rendered every method
    # The training before the first prediction is told as it happens.
    assert "oppu: stage 1: training the task LoRA on 80 training questions" in err and "oppu: training user 1/3" in err
    assert "writing 3 profile summaries" in err
    configs = {
        json.loads((d / "config.json").read_text())["personalizer"]["name"]: d
        for d in (tmp_path / "one").iterdir()
        if (d / "config.json").exists()
    }
    assert set(configs) == {"oppu", "oppu+retrieval", "oppu+summary", "pag"}
    oppu = json.loads((configs["oppu"] / "config.json").read_text())["personalizer"]
    lora = {"rank": 8, "alpha": 8.0, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert oppu["lora"] == {**lora, "applied_to": ["q_proj", "v_proj"]}
    assert oppu["train"]["epochs"] == 1 and oppu["trained_this_run"] == 3 and oppu["stage1_task_lora"] is True
    # Stage 1 on the demo's training split (40 users x 2 questions), the official 3 epochs.
    assert oppu["stage1"]["examples"] == 80 and oppu["stage1"]["epochs"] == 3 and oppu["stage1"]["trained_this_run"]
    # The training budget is recorded, and every leaderboard states it beside the column.
    budget = json.loads((configs["oppu"] / "config.json").read_text())["training"]
    assert budget["per_user"] == 3 and budget["epochs"] == 1 and budget["batch_size"] == 16 and budget["lr"] == 1e-4
    assert budget["before"].startswith("stage 1: a task LoRA on 80 training questions, 3 epoch(s), 15 steps")
    code, board, err = cli("leaderboard", str(tmp_path / "one"))
    assert code == 0 and "**Training** (oppu[epochs=1] / " in board
    assert "model): one adapter per user (3 users), 3 steps × batch 16, 43 training examples, 1 epoch(s)" in board
    pag = json.loads((configs["pag"] / "config.json").read_text())["personalizer"]
    # oppu+summary ran first (cells run in matrix order) and wrote the same 3 summaries (and its
    # stage 1 those of the 40 training users): pag reuses them.
    summary_cell = json.loads((configs["oppu+summary"] / "config.json").read_text())["personalizer"]
    assert summary_cell["summaries"]["generated_this_run"] == 43 and pag["summaries"]["generated_this_run"] == 0
    assert pag["summaries"]["summarizer"]["num_beams"] == 2  # --summarizer-arg reached the summarizer
    kept = json.loads((configs["pag"] / "summaries.json").read_text())
    assert len(kept["users"]) == 3 and all(isinstance(u["summary"], str) for u in kept["users"])
    prompts = [json.loads(line)["prompt"] for line in (configs["pag"] / "predictions.jsonl").read_text().splitlines()]
    assert all(p.startswith(u["summary"]) for p, u in zip(prompts, kept["users"], strict=True) if u["summary"])

    code, out, err = cli(*matrix, "--out", str(tmp_path / "two"))
    assert code == 0, err
    for d in (tmp_path / "two").iterdir():
        if (d / "config.json").exists():
            described = json.loads((d / "config.json").read_text())["personalizer"]
            assert described.get("trained_this_run", 0) == 0  # the adapters were found
            assert not described.get("stage1", {}).get("trained_this_run")  # and the stage-1 models
            assert described.get("summaries", {}).get("generated_this_run", 0) == 0  # and the summaries


def test_a_generator_that_cannot_serve_adapters_is_refused_in_one_line(cli, toys, tiny_llama_dir) -> None:
    code, _, err = cli(
        "run", "--task", "lamp-7", "--data", "demo", "--personalizer", "oppu", "--limit", "1", "--generator", "toy-echo"
    )
    assert code != 0
    assert "cannot serve" in err and "Traceback" not in err


def test_summarizer_options_without_a_summary_method_are_one_line_errors(cli) -> None:
    code, _, err = cli(*demo_run("--personalizer", "none", "--summarizer", "hf", limit=1, quiet=False))
    assert code != 0 and "--summarizer applies to no personalizer" in err and "Traceback" not in err


@pytest.mark.slow
def test_an_adapters_folder_of_other_settings_is_refused_and_untrained_adapters_are_told(
    context, tiny_llama_dir, tmp_path, capsys
) -> None:
    """``adapters=FOLDER`` holding another configuration's adapters was used silently (its cell then
    recorded settings that were not applied) and its record overwritten; one optimizer step per
    user falls in the warm-up, where the learning rate is 0, and trained nothing without a word."""
    from lamp_harness.base.errors import LampError

    task, examples = dev_examples(context, n=1)
    folder = tmp_path / "adapters"
    args = {"epochs": "1", "batch_size": "16", "stage1": "false", "adapters": str(folder)}
    generator, oppu = build(context, tiny_llama_dir, **args)
    oppu.setup(task, generator, context)
    oppu.prepare(task, examples)
    assert "all fall in the warm-up" in capsys.readouterr().err
    other = host().registry.create("personalizer", "oppu", context, **args, rank="4")
    other.setup(task, generator, context)
    with pytest.raises(LampError, match=r"were trained with other settings \(lora differ\)"):
        other.prepare(task, examples)
    assert json.loads((folder / "config.json").read_text())["lora"]["rank"] == 8  # its record is kept


def test_lamp_train_refuses_the_loop_settings_a_per_user_method_does_not_use(cli, tmp_path) -> None:
    code, _, err = cli(
        "train", "--task", "lamp-7", "--data", "demo", "--personalizer", "oppu", "--epochs", "3", "--max-steps", "1"
    )
    lines = [line for line in err.splitlines() if line.startswith("Error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "--epochs, --max-steps do not apply" in lines[0] and "--personalizer-arg epochs=..." in lines[0]


def test_settings_that_would_not_apply_are_refused_before_any_work(cli, tmp_path) -> None:
    out = tmp_path / "runs"
    code, _, err = cli(
        *demo_run(
            "--personalizer", "oppu", "--personalizer-arg", "stage1=false", "--personalizer-arg", "stage1_epochs=2", out=out
        )
    )
    assert code == 2 and "stage1_epochs set stage 1, which stage1=false turns off" in err
    # A key given to every method of a matrix that one of them lacks: the scoped form is named.
    code, _, err = cli(*demo_run("--personalizer", "none,oppu", "--personalizer-arg", "epochs=1", out=out))
    assert code == 2 and "--personalizer-arg NAME:KEY=VALUE (e.g. oppu:KEY=VALUE)" in err
    assert not out.exists()


@pytest.mark.slow  # the run's generator (the offline model) loads before the summarizer
def test_a_bad_summarizer_is_named_as_the_summarizer(cli, tmp_path) -> None:
    argv = demo_run("--personalizer", "pag", "--summarizer", "nosuchmodel", generator=None, limit=1, out=tmp_path / "runs")
    code, _, err = cli(*argv)
    assert code == 2 and "Traceback" not in err
    assert "Error: --summarizer nosuchmodel: unknown model 'nosuchmodel'" in err
