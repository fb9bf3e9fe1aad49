"""Faults and bad inputs found by an independent review of the leaderboard-trust, lifetime and
recorded = applied work, each replayed here: one line, the exit code, no traceback, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from lamp_cli import demo_run, toys_env


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_task_arg_for_a_task_the_run_does_not_include_is_refused(toys, cli, tmp_path, lamp_home):
    """``--task-arg lamp-5:max_new_tokens=4`` with ``--task lamp-7`` (a typo in the task name) is
    refused like ``--data lamp-5=demo``, instead of running lamp-7 with its default budget; so is
    one option given two values under two spellings of one task."""
    out = tmp_path / "out"
    base = demo_run(limit=2, out=out)
    code, _, err = cli(*base, "--task-arg", "lamp-5:max_new_tokens=4")
    line = _one_line(err)
    assert code == 2 and "--task-arg lamp-5:max_new_tokens=4 names a task this run does not include" in line
    assert "--task-arg lamp-7:max_new_tokens=4" in line  # the fix
    code, _, err = cli(*base, "--task-arg", "lamp-7:max_new_tokens=4", "--task-arg", "lamp_7:max_new_tokens=5")
    assert code == 2 and "two values of max_new_tokens" in _one_line(err)
    assert not out.exists() or not list(Path(out).glob("*/config.json"))
    code, stdout, err = cli(*base, "--task-arg", "lamp-7:max_new_tokens=4", "--task-arg", "LAMP-7:max_new_tokens=4")
    assert code == 0, stdout + err


def _words_run(runs: Path, task: str = "lamp-7", limit: int = 6) -> tuple[str, ...]:
    """A ``toy-words`` run with the baseline and IPA/BM25 on the demo data: a leaderboard to damage."""
    return demo_run(
        "--personalizer", "none,ipa", "--retriever", "bm25", task=task, generator="toy-words", limit=limit, out=runs
    )


def _leaderboard_json(cli, runs: Path) -> tuple[list[dict], str]:
    """The tables of ``lamp leaderboard RUNS --baseline none --format json``, and stderr."""
    import json

    code, stdout, err = cli("leaderboard", str(runs), "--baseline", "none", "--format", "json")
    assert code == 0, stdout + err
    return json.loads(stdout)["blocks"], err


def test_scores_json_edited_without_changing_any_metric_is_not_used(toys, cli, tmp_path, lamp_home):
    """Rows swapped between two examples of a cell's ``scores.json`` keep every metric's value
    (so metrics.json agrees) but change every paired test: ``metrics.json`` records the file's
    checksum, and the edited file is named in a note and rescored, never used."""
    import json
    import shutil

    runs = tmp_path / "runs"
    code, stdout, err = cli(*_words_run(runs, task="lamp-3", limit=12))
    assert code == 0, stdout + err
    (baseline,) = runs.glob("lamp-3_none-*")
    recorded = json.loads((baseline / "metrics.json").read_text(encoding="utf-8"))["scores"]["sha256"]
    intact, _ = _leaderboard_json(cli, runs)

    edited = tmp_path / "edited"
    shutil.copytree(runs, edited)
    path = edited / baseline.name / "scores.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data["metrics"][0]["rows"]
    other = next(i for i, row in enumerate(rows) if row != rows[0])
    rows[0], rows[other] = rows[other], rows[0]
    path.write_text(json.dumps(data), encoding="utf-8")
    from lamp_harness.run.store import scores_digest

    assert scores_digest(data) != recorded
    tested, err = _leaderboard_json(cli, edited)
    assert "Traceback" not in err
    assert f"{baseline.name}: scores.json not used" in err and "does not match the checksum" in err
    assert tested == intact  # rescored from the predictions: the same tests as the intact file
    assert json.loads(path.read_text(encoding="utf-8")) == data  # the edited file is left for the user to see


@pytest.mark.slow
def test_sigterm_ends_a_one_process_run_like_ctrl_c(tmp_path) -> None:
    """``kill PID`` (or ``timeout``, a scheduler's stop) of a plain ``lamp run`` ends it as Ctrl-C
    does: the one line, exit code 130, its lock released; it used to die silently (-15). The
    rerun finishes the cell from the predictions already written."""
    import signal
    import subprocess
    import sys
    import time

    from lamp_harness.run.store import CellStore

    out = tmp_path / "runs"
    env = toys_env(LAMP_HOME=str(tmp_path / "home"), LAMP_TOY_DELAY="0.5")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "lamp"), *demo_run("--generator-arg", "batch_size=2", limit=40, out=out)]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not [p for p in out.glob("*/predictions.jsonl") if p.stat().st_size]:
            assert job.poll() is None, job.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "Interrupted: finished work is saved; run the same command again to resume."
    )
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    with CellStore(cell).lock():  # free: the lock went with the process
        pass
    kept = (cell / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert kept and not CellStore(cell).finished
    resumed = subprocess.run([*command], env={**env, "LAMP_TOY_DELAY": "0"}, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert CellStore(cell).finished


def test_plugins_new_refuses_the_name_of_its_own_test_folder(cli, tmp_path) -> None:
    """``lamp plugins new tests`` made the package ``tests``: the same folder as the
    distribution's conformance tests, installed as a top-level ``tests`` package."""
    out = tmp_path / "new"
    code, _, err = cli("plugins", "new", "tests", "--out", str(out), "--kind", "task")
    assert code == 2 and "would make the package 'tests'" in _one_line(err) and "Choose another name" in err
    assert not out.exists()


TRAINABLE = '''
import torch

from lamp_harness.plugin.contracts import GenerationRequest, Personalizer
from lamp_harness.plugin.hookspecs import hookimpl


class Bias(Personalizer):
    """A trainable personalizer with one small layer (no model)."""

    name = "bias"
    needs_retriever = False
    trainable = True

    def __init__(self, context, **args):
        pass

    def setup(self, task, generator, context):
        self.generator = generator
        self.layer = torch.nn.Linear(2, 2)

    def personalize(self, task, example, retrieved):
        return GenerationRequest(example.id, example.input, max_new_tokens=task.max_new_tokens)

    def parameters(self):
        return list(self.layer.parameters())

    def training_loss(self, task, examples, retrieved):
        return self.layer(torch.ones(len(examples), 2)).pow(2).mean()

    def state_dict(self):
        return {k: v.detach().clone() for k, v in self.layer.state_dict().items()}

    def load_state_dict(self, state):
        self.layer.load_state_dict(dict(state))


@hookimpl
def lamp_register(registry):
    registry.add_personalizer("bias", Bias, "a tiny trainable personalizer")
'''


def test_a_checkpoint_whose_weights_do_not_fit_the_method_is_one_line(site, toys, cli, tmp_path) -> None:
    """A checkpoint whose safetensors file loads but holds other tensors (another model's, or a
    manifest-less folder whose weights were replaced) was a torch traceback from
    ``load_state_dict``; it is one line naming the checkpoint, before any prediction."""
    import json

    import torch
    from safetensors.torch import save_file

    site.add("lamp-bias", "1.0", bias=TRAINABLE)
    step = tmp_path / "trained" / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    save_file({"weight": torch.zeros(3, 3)}, str(step / "weights.safetensors"))
    (step / "state.json").write_text(json.dumps({"step": 2, "finished": True}), encoding="utf-8")
    (step / "config.json").write_text(
        json.dumps({"train_config": {"personalizer": "bias"}, "component_versions": {"lamp-bias": "1.0"}}), encoding="utf-8"
    )
    (tmp_path / "trained" / "latest.json").write_text(
        json.dumps({"checkpoint": "checkpoints/step-00000002"}), encoding="utf-8"
    )
    out = tmp_path / "runs"
    code, _, err = cli(*demo_run("--personalizer", "bias", "--checkpoint", str(tmp_path / "trained"), limit=2, out=out))
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith(f"Error: {step}: its weights do not fit the method as set up here (RuntimeError:")
    assert "size mismatch for weight" in errors[0] and "train again" in errors[0]
    assert not list(out.glob("*/predictions.jsonl")) or not any(p.read_text() for p in out.glob("*/predictions.jsonl"))


STRICT_GENERATOR = '''
from lamp_harness.plugin.contracts import Generation, Generator
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.options import reject_unknown_args


class Strict(Generator):
    """Validates its arguments as docs/plugins.md teaches; answers with as many words as allowed."""

    name = "strict"

    def __init__(self, context, model=None, **args):
        reject_unknown_args(args, {"word"}, "generator 'strict'")
        self.word = args.get("word", "w")

    @property
    def tokens(self):
        from lamp_harness.testing import WhitespaceTokens

        return WhitespaceTokens()

    def generate(self, requests, *, decode="generate"):
        return [Generation(" ".join([self.word] * (r.max_new_tokens or 50)), 1, r.max_new_tokens or 50)
                for r in requests]


@hookimpl
def lamp_register(registry):
    registry.add_generator("strict", Strict, "a generator that refuses unknown arguments")
'''


def test_generator_arg_max_new_tokens_works_with_a_generator_that_validates_its_arguments(site, cli, tmp_path):
    """``--generator-arg max_new_tokens=8`` is the budget of every task, applied on each request;
    it was also handed to the generator's factory, so a plugin generator validating its arguments
    as the guide teaches (the shipped example's ``prior-reader`` among them) refused the run."""
    import json

    site.add("lamp-strict", "1.0", strict=STRICT_GENERATOR)
    out = tmp_path / "runs"
    code, stdout, err = cli(
        *demo_run(
            "--generator-arg",
            "max_new_tokens=8",
            "--generator-arg",
            "word=x",
            task="lamp-7,lamp-3",
            generator="strict",
            limit=2,
            out=out,
        )
    )
    assert code == 0, stdout + err
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json")]
    assert len(configs) == 2
    for config in configs:
        assert config["generation"] == {"max_new_tokens": 8, "max_new_tokens_from": "generator-arg"}
        assert not any("max_new_tokens" in note for note in config["preset_notes"])
        predictions = (out / config["cell_id"] / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line)["generated_tokens"] == 8 for line in predictions)
    code, _, err = cli(*demo_run("--generator-arg", "wrod=x", generator="strict", limit=2, out=out))
    assert code == 2 and "Traceback" not in err  # its own validation still works
    assert [line for line in err.splitlines() if line.startswith("Error")] == [
        "Error: generator 'strict': unknown argument(s) wrod. Valid keys: word."
    ]


def test_an_empty_data_option_is_refused_not_sent_to_the_official_server(toys, cli, tmp_path, lamp_home):
    """``--data "$DATA"`` with ``DATA`` unset (or ``--data ,,``) named no source and silently sent
    every task to its default source (the official server for LaMP)."""
    out = tmp_path / "runs"
    for value in ("", ",,", " "):
        code, _, err = cli(*demo_run(data=value, limit=2, out=out))
        assert code == 2 and "names no data source" in _one_line(err), (value, err)
    assert not list(out.glob("*/*"))
    code, _, err = cli(
        "train",
        "--task",
        "lamp-7",
        "--personalizer",
        "pplug",
        "--data",
        "",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "trained"),
    )
    assert code == 2 and "names no data source" in _one_line(err), err


def test_train_takes_task_args_as_lamp_run_writes_them(site, toys, cli, tmp_path):
    """``lamp train --task-arg`` is documented "as in `lamp run`", but refused the run's
    ``TASK:KEY=VALUE`` form ("unknown argument(s) lamp_7:max_new_tokens"); it takes it for the
    trained task, and another task's name is one line."""
    import json

    site.add("lamp-bias", "1.0", bias=TRAINABLE)
    base = (
        "train",
        "--task",
        "lamp-7",
        "--personalizer",
        "bias",
        "--generator",
        "toy-echo",
        "--data",
        "demo",
        "--max-steps",
        "1",
        "--limit",
        "4",
        "--eval-split",
        "none",
        "--quiet",
    )
    code, _, err = cli(*base, "--task-arg", "lamp-5:max_new_tokens=3", "--out", str(tmp_path / "refused"))
    assert code == 2 and "names another task than the one trained (lamp-7)" in _one_line(err)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    code, stdout, err = cli(*base, "--task-arg", "lamp-7:max_new_tokens=3", "--out", str(tmp_path / "trained"))
    assert code == 0, stdout + err
    config = json.loads((tmp_path / "trained" / "config.json").read_text(encoding="utf-8"))
    assert config["train_config"]["task_args"] == {"max_new_tokens": "3"}


def test_a_value_typed_into_metrics_json_is_not_shown_as_the_harness_s(toys, cli, tmp_path, lamp_home):
    """A value edited in a cell's ``metrics.json`` was shown (and bolded as the best) with only a
    note that its tests were dropped, under a header saying every value is computed by the
    harness; ``metrics.json`` vouches for its ``scores.json`` (checksum), which gives the value the
    cell computed: the cell is skipped with a note naming the file and both values."""
    import json

    runs = tmp_path / "runs"
    code, stdout, err = cli(*_words_run(runs))
    assert code == 0, stdout + err
    (victim,) = runs.glob("lamp-7_none-*")
    path = victim / "metrics.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"][0]["value"] = 0.9
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out, err = cli("leaderboard", str(runs), "--baseline", "ipa", "--format", "json")
    assert code == 0 and "Traceback" not in err
    (note,) = [line for line in err.splitlines() if victim.name in line]
    assert note.startswith(f"note: skipped {victim}") and "is 0.9 here but" in note and "--force" in note
    shown = [v for block in json.loads(out)["blocks"] for row in block["rows"] for v in row["values"]]
    assert shown and not any(v["value"] == 0.9 for v in shown) and not any(v["cell_id"] == victim.name for v in shown)


def test_an_edited_config_json_makes_the_cell_inconsistent_not_another_method(toys, cli, tmp_path, lamp_home):
    """``config.json`` says which method and model produced a cell's numbers; a hand edit (another
    label, another model) was shown as that method. ``metrics.json`` records the checksum of the
    configuration its results belong to: the leaderboard skips the cell with a note, and the same
    ``lamp run`` repairs it (predictions kept) back to the truth."""
    import json

    runs = tmp_path / "runs"
    command = _words_run(runs)
    code, stdout, err = cli(*command)
    assert code == 0, stdout + err
    (victim,) = runs.glob("lamp-7_none-*")
    path = victim / "config.json"
    original = json.loads(path.read_text(encoding="utf-8"))
    edited = {**original, "label": "pplug / gpt-5", "generator": {**original["generator"], "model": "gpt-5"}}
    path.write_text(json.dumps(edited, indent=2), encoding="utf-8")
    code, out, err = cli("leaderboard", str(runs), "--baseline", "ipa")
    assert code == 0 and "gpt-5" not in out
    (note,) = [line for line in err.splitlines() if victim.name in line]
    assert note.startswith(f"note: skipped {victim}: config.json does not match the checksum in metrics.json")
    code, stdout, err = cli(*command)
    assert code == 0 and "config.json does not match the checksum" in err, stdout + err
    assert json.loads(path.read_text(encoding="utf-8"))["label"] == original["label"]
    code, out, err = cli("leaderboard", str(runs), "--baseline", "none")
    assert code == 0 and "skipped" not in err and "gpt-5" not in out


def test_a_reporter_meeting_a_full_disk_ends_the_run_in_one_line(site, toys, cli, tmp_path) -> None:
    """A reporter writing beside the run (``events.jsonl`` under ``--out``) may be the first to meet
    a full disk: it was disabled with a warning and the run went on to fail at its next write, two
    lines and a truncated log. A full disk is the run's problem: one line naming the path, exit 2,
    finished work kept."""
    site.add(
        "lamp-diskfull",
        "1.0",
        diskfull=f"""
        import errno

        from lamp_harness.plugin.hookspecs import hookimpl

        @hookimpl
        def lamp_example_predicted(cell, example):
            raise OSError(errno.ENOSPC, "No space left on device", {str(tmp_path / "log.jsonl")!r})
    """,
    )
    out = tmp_path / "runs"
    code, _, err = cli(
        "run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--limit", "4", "--quiet", "--out", str(out)
    )
    assert code == 2 and not any(line.startswith("warning") for line in err.splitlines()), err
    (line,) = [line for line in err.splitlines() if line.startswith("Error")]
    assert line.startswith(f"Error: {tmp_path / 'log.jsonl'}: No space left on device. Free some space there"), line
    assert "Traceback" not in err
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    assert (cell / "predictions.jsonl").read_text(encoding="utf-8").strip()  # the batch written is kept


def test_an_empty_baseline_is_refused_not_a_table_without_tests(cli, tmp_path) -> None:
    """``--baseline "$B"`` with ``B`` unset gave a table without a single test and no word about it."""
    from run_folders import fabricate_runs

    runs = fabricate_runs(tmp_path / "runs")
    for value in ("", "  "):
        code, _, err = cli("leaderboard", str(runs), "--baseline", value)
        assert code == 2 and "names no column" in _one_line(err), err
