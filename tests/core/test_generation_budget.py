"""Recorded = applied: every generation and run-level setting a cell's ``config.json`` records is
the one that reached its generator (built-in and plugin tasks), the generation budget follows one
documented precedence, and tasks take typed, validated options (``--task-arg``, ``[task-args]``).

A fake distribution holds a generator that writes down everything it receives (its arguments, the
run context, every request's budget and the decoding), and a task with an option and a hard limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lamp_cli import demo_run
from toy_sources import TEXT_ITEM_METHODS, WORDS

RECORDER = (
    """
import json
from pathlib import Path

from lamp_harness import metrics
from lamp_harness.plugin.contracts import Generation, Generator, Task
from lamp_harness.inputs.data import DataSource, SplitFiles
from lamp_harness.base.errors import lamp_error
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.base.io import atomic_write_json
from lamp_harness.plugin.options import batch_size_arg, int_arg

"""
    + WORDS
    + '''

class Recorder(Generator):
    """Answers with as many words as the request's budget allows, and logs what it received."""

    name = "recorder"

    def __init__(self, context, model="default-model", batch_size=2, num_beams=1, max_input_tokens=256,
                 max_new_tokens=100, **args):
        owner = "generator 'recorder'"
        self.log = Path(context.lamp_home) / "recorder.jsonl"
        self.model = model
        self.batch_size = batch_size_arg(batch_size, 2, owner)
        self.num_beams = int_arg({"n": num_beams}, "n", 1, owner, minimum=1)
        self._max_input_tokens = int_arg({"n": max_input_tokens}, "n", 256, owner, minimum=1)
        self.max_new_tokens = int_arg({"n": max_new_tokens}, "n", 100, owner, minimum=1)
        self.args = dict(args)
        self._write({"event": "init", "model": model, "batch_size": self.batch_size,
                     "num_beams": self.num_beams, "max_input_tokens": self._max_input_tokens,
                     "max_new_tokens": self.max_new_tokens, "args": self.args, "seed": context.seed,
                     "device": context.device, "preset": context.preset,
                     "prompt_budget": context.prompt_budget})

    def _write(self, record):
        with self.log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\\n")

    @property
    def tokens(self):
        return Words()

    @property
    def max_input_tokens(self):
        return self._max_input_tokens

    def generate(self, requests, *, decode="generate"):
        out = []
        for r in requests:
            budget = r.max_new_tokens or self.max_new_tokens
            self._write({"event": "request", "id": r.example_id, "max_new_tokens": r.max_new_tokens,
                         "decode": decode, "prompt_tokens": len(r.prompt.split())})
            text = r.choices[0] if decode == "labels" and r.choices else " ".join(["word"] * 300)
            words = text.split()[:budget]
            out.append(Generation(" ".join(words), len(r.prompt.split()), len(words)))
        return out

    def describe(self):
        return {"name": self.name, "model": self.model, "batch_size": self.batch_size,
                "num_beams": self.num_beams, "max_input_tokens": self._max_input_tokens,
                "max_new_tokens": self.max_new_tokens, **self.args}


class Budgeted(Task):
    """A generation task with an option (``style``) and a hard limit on the budget."""

    name = "toy-budget"
    official_name = "Toy_Budget"
    kind = "generation"
    profile_fields = ("text",)
    max_new_tokens = 40
    max_new_tokens_limit = 50
    data_source = "toy-budget-files"

    def __init__(self, style="plain"):
        if style not in ("plain", "short"):
            raise lamp_error(f"style {style!r} is not plain or short", where="task 'toy-budget'",
                             fix="Pass --task-arg toy-budget:style=short.")
        self.style = style
'''
    + TEXT_ITEM_METHODS
    + """
    def prompt(self, example, items, tokens, max_tokens=256, **budget):
        text = " ".join([*(self.ppep(i) for i in items), example.input])
        return tokens.truncate(text if self.style == "plain" else example.input, max_tokens)

    def score(self, predictions, golds, *, seed=0):
        ids = sorted(predictions)
        return [metrics.accuracy([predictions[i] for i in ids], [golds[i] for i in ids], seed=seed)]


class Files(DataSource):
    name = "toy-budget-files"
    schemes = ("user",)

    def locate(self, task, split, scheme="user", *, download=True):
        folder = Path(self.context.lamp_home) / "toy-budget-files"
        questions = [{"id": f"b{i}", "input": f"question {i}",
                      "profile": [{"id": f"b{i}-a", "text": "alpha"}, {"id": f"b{i}-b", "text": "beta"}]}
                     for i in range(3)]
        atomic_write_json(folder / f"{split}_questions.json", questions)
        atomic_write_json(folder / f"{split}_outputs.json",
                          {"task": "Toy_Budget", "golds": [{"id": q["id"], "output": "word"} for q in questions]})
        return SplitFiles(folder / f"{split}_questions.json", folder / f"{split}_outputs.json", "toy-budget:v1")


@hookimpl
def lamp_register(registry):
    registry.add_generator("recorder", Recorder, "records what it receives")
    registry.add_task("toy-budget", Budgeted, "toy task with an option and a budget limit")
    registry.add_data_source("toy-budget-files", Files, "toy data")
"""
)


def _cells(out: Path) -> dict[str, dict]:
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*/config.json"))]
    return {c["task"]: c for c in configs}


def _log(lamp_home: Path) -> list[dict]:
    path = lamp_home / "recorder.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.unlink()
    return records


def _predictions(out: Path, config: dict) -> list[dict]:
    text = (out / config["cell_id"] / "predictions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_every_recorded_setting_is_the_one_the_generator_received(site, cli, tmp_path, lamp_home):
    site.add("lamp-recorder", "1.0", recorder=RECORDER)
    out = tmp_path / "out"
    code, stdout, err = cli(
        "run",
        "--task",
        "lamp-7,toy-budget",
        "--data",
        "lamp-7=demo",
        "--limit",
        "3",
        "--personalizer",
        "ipa",
        "--retriever",
        "bm25",
        "--k",
        "2",
        "--generator",
        "recorder:my-model",
        "--batch-size",
        "2",
        "--num-beams",
        "3",
        "--max-input-tokens",
        "64",
        "--generator-arg",
        "max_new_tokens=8",
        "--generator-arg",
        "style=loud",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--prompt-budget",
        "strict",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stdout + err
    log = _log(lamp_home)
    (init,) = [r for r in log if r["event"] == "init"]  # one generator, shared by both cells
    requests = [r for r in log if r["event"] == "request"]
    cells = _cells(out)
    assert set(cells) == {"lamp-7", "toy-budget"}
    for task, config in cells.items():
        generator = config["generator"]
        # Generator settings: what config.json says is what the factory got.
        for key in ("model", "batch_size", "num_beams", "max_input_tokens"):
            assert generator[key] == init[key], (task, key)
        assert (init["model"], init["batch_size"], init["num_beams"], init["max_input_tokens"]) == ("my-model", 2, 3, 64)
        assert generator["style"] == init["args"]["style"] == "loud"
        # Run-level settings the generator sees through its context.
        assert (config["seed"], config["prompt_budget"]) == (init["seed"], init["prompt_budget"]) == (5, "strict")
        assert init["device"] == "cpu" and config["preset"] == init["preset"]
        # The budget: 8 recorded, 8 on every request, at most 8 tokens generated.
        assert generator["max_new_tokens"] == 8
        assert config["generation"] == {"max_new_tokens": 8, "max_new_tokens_from": "generator-arg"}
        predictions = _predictions(out, config)
        mine = [r for r in requests if r["id"] in {p["example_id"] for p in predictions}]
        assert len(mine) == 3 and {r["max_new_tokens"] for r in mine} == {8}
        assert {r["decode"] for r in mine} == {config["decode"]} == {"generate"}
        assert all(p["generated_tokens"] <= 8 and len(p["raw"].split()) <= 8 for p in predictions)
        assert max(r["prompt_tokens"] for r in mine) <= 64
        assert config["label"].endswith("/ max-new-tokens=8 / prompt-budget=strict")


def test_label_decoding_recorded_is_the_decoding_the_generator_ran(site, cli, tmp_path, lamp_home):
    site.add("lamp-recorder", "1.0", recorder=RECORDER)
    out = tmp_path / "out"
    code, stdout, err = cli(*demo_run("--decode", "labels", task="lamp-1,lamp-7", generator="recorder", limit=2, out=out))
    assert code == 0, stdout + err
    requests = [r for r in _log(lamp_home) if r["event"] == "request"]
    cells = _cells(out)
    for task, config in cells.items():
        ids = {p["example_id"] for p in _predictions(out, config)}
        assert {r["decode"] for r in requests if r["id"] in ids} == {config["decode"]}, task
    # LaMP-7 has no labels to score: it generates, and says so.
    assert (cells["lamp-1"]["decode"], cells["lamp-7"]["decode"]) == ("labels", "generate")


def test_budget_precedence_task_arg_then_generator_arg_then_task_default_within_the_limit(site, cli, tmp_path, lamp_home):
    site.add("lamp-recorder", "1.0", recorder=RECORDER)
    base = demo_run(task="lamp-7,toy-budget", data="lamp-7=demo", generator="recorder", limit=2)

    def budgets(*extra: str, out: str) -> dict[str, tuple[int, str, set[int]]]:
        code, stdout, err = cli(*base, *extra, "--out", str(tmp_path / out))
        assert code == 0, stdout + err
        requests = [r for r in _log(lamp_home) if r["event"] == "request"]
        result = {}
        for task, config in _cells(tmp_path / out).items():
            ids = {p["example_id"] for p in _predictions(tmp_path / out, config)}
            seen = {r["max_new_tokens"] for r in requests if r["id"] in ids}
            assert config["generator"]["max_new_tokens"] == config["generation"]["max_new_tokens"]
            result[task] = (config["generation"]["max_new_tokens"], config["generation"]["max_new_tokens_from"], seen)
        return result

    # Nobody asked: each task's own default (LaMP-7: 128), not the generator's (100).
    assert budgets(out="defaults") == {"lamp-7": (128, "task", {128}), "toy-budget": (40, "task", {40})}
    # A task's own option wins over the generator's; the other task keeps the generator's.
    assert budgets("--generator-arg", "max_new_tokens=8", "--task-arg", "toy-budget:max_new_tokens=12", out="both") == {
        "lamp-7": (8, "generator-arg", {8}),
        "toy-budget": (12, "task-arg", {12}),
    }
    # A budget over the task's hard limit is cut to it, and config.json says why.
    assert budgets("--task-arg", "max_new_tokens=99", out="limit") == {
        "lamp-7": (99, "task-arg", {99}),
        "toy-budget": (50, "task-limit", {50}),
    }


def test_task_options_are_validated_before_any_cell_and_recorded(site, cli, tmp_path, lamp_home):
    site.add("lamp-recorder", "1.0", recorder=RECORDER)
    out = tmp_path / "out"
    base = (
        "run",
        "--task",
        "toy-budget",
        "--personalizer",
        "ipa",
        "--retriever",
        "bm25",
        "--generator",
        "recorder",
        "--limit",
        "2",
        "--quiet",
        "--out",
        str(out),
    )

    code, _, err = cli(*base, "--task-arg", "toy-budget:colour=red")
    assert code == 2 and "Traceback" not in err
    assert "unknown argument(s) colour" in err and "Valid keys: max_new_tokens, style" in err
    code, _, err = cli(*base, "--task-arg", "style=fancy")
    assert code == 2 and "style 'fancy' is not plain or short" in err
    code, _, err = cli(*base, "--task-arg", "max_new_tokens=many")
    assert code == 2 and "max_new_tokens='many' is not an integer" in err
    code, _, err = cli(*base, "--task-arg", "toy-budgett:style=short")
    assert code == 2 and "Unknown task 'toy-budgett'" in err
    assert not list(out.glob("*/config.json"))  # nothing ran

    code, stdout, err = cli(*base)
    assert code == 0, stdout + err
    plain = _cells(out)["toy-budget"]
    assert plain["task_args"] == {}

    matrix = tmp_path / "matrix.toml"
    matrix.write_text(
        f'task = "toy-budget"\npersonalizer = "ipa"\nretriever = "bm25"\ngenerator = "recorder"\n'
        f'limit = 2\nout = "{out}"\n'
        '[task-args.toy-budget]\nstyle = "short"\n',
        encoding="utf-8",
    )
    code, stdout, err = cli("run", "--config", str(matrix), "--quiet")
    assert code == 0, stdout + err
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json")]
    (short,) = [c for c in configs if c["cell_id"] != plain["cell_id"]]
    assert short["task_args"] == {"style": "short"} and short["base_id"] != plain["base_id"]
    # The option reached the task: the short style leaves the profile out of the prompt.
    assert all("alpha" not in p["prompt"] and "beta" not in p["prompt"] for p in _predictions(out, short))
    assert all("alpha" in p["prompt"] or "beta" in p["prompt"] for p in _predictions(out, plain))


def test_demo_toml_budget_applies_to_every_task():
    """examples/demo.toml says its outputs are short (24 tokens): every task's budget is 24."""
    from lamp_harness.plugin.registry import host
    from lamp_harness.run.cells import _stringify, generation_budget, read_config

    root = Path(__file__).resolve().parents[2]
    config = read_config(root / "examples" / "demo.toml")
    generator_args = _stringify(config["generator-args"], "[generator-args]")
    registry = host().registry
    for name in config["task"]:
        assert generation_budget(registry.create("task", name), generator_args) == (24, "generator-arg"), name


@pytest.mark.slow
def test_max_new_tokens_8_bounds_every_lamp_task_with_the_real_model(cli, tmp_path):
    """The acceptance check with the offline preset's real SmolLM2: ``--generator-arg
    max_new_tokens=8`` gives at most 8 generated tokens on all seven LaMP tasks, and every
    cell's config.json says 8."""
    out = tmp_path / "out"
    tasks = ",".join(f"lamp-{i}" for i in range(1, 8))
    code, stdout, err = cli(
        *demo_run(
            "--decode",
            "generate",
            "--generator-arg",
            "max_new_tokens=8",
            "--device",
            "cpu",
            task=tasks,
            generator=None,
            limit=2,
            out=out,
        )
    )
    assert code == 0, stdout + err
    cells = _cells(out)
    assert len(cells) == 7
    for task, config in cells.items():
        assert config["generator"]["max_new_tokens"] == 8, task
        assert config["generation"]["max_new_tokens"] == 8, task
        predictions = _predictions(out, config)
        assert predictions and all(0 < p["generated_tokens"] <= 8 for p in predictions), task
