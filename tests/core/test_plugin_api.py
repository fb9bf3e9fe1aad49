"""What the plugin API promises a third-party author, exercised through the real CLI with fake
installed distributions: generators get run-level settings only when they declare them, requests
carry the retrieved items and metadata, per-task data sources (``--data TASK=NAME``, the matrix
file's table, a task's own ``data_source``), and plugin versions in the cell id (recomputed on an
upgrade, or kept under ``--allow-stale``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# A fake distribution holding a strict generator, a task with its own data source, and the source.
COMPONENTS = '''
import json
from pathlib import Path

from lamp_harness import metrics
from lamp_harness.contracts import Generation, Generator, Task
from lamp_harness.data import DataSource, SplitFiles
from lamp_harness.hookspecs import hookimpl
from lamp_harness.io import atomic_write_json
from lamp_harness.options import batch_size_arg, reject_unknown_args


class Words:
    def count(self, text):
        return len(text.split())

    def truncate(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])


class Strict(Generator):
    """Rejects unknown arguments, declares only batch_size; answers with what it was sent."""

    name = "strict"

    def __init__(self, context, batch_size=2, **args):
        reject_unknown_args(args, {"style"}, "generator 'strict'")
        self.batch_size = batch_size_arg(batch_size, 2, "generator 'strict'")
        self.style = args.get("style", "ids")

    @property
    def tokens(self):
        return Words()

    def generate(self, requests, *, decode="generate"):
        out = []
        for r in requests:
            if r.choices:
                text = r.choices[0]
            else:
                text = "|".join(i.id for i in r.retrieved) + ";" + json.dumps(dict(r.metadata), sort_keys=True)
            out.append(Generation(text, 1, 1))
        return out


class Beams(Strict):
    """Declares num_beams (default 1), so --num-beams changes what it would generate."""

    name = "beams"

    def __init__(self, context, batch_size=2, num_beams=1, **args):
        super().__init__(context, batch_size, **args)
        self.num_beams = int(num_beams)


class Echo(Task):
    name = "toy-echo-task"
    official_name = "Toy_Echo"
    kind = "generation"
    profile_fields = ("text",)
    data_source = "toy-files"

    def query(self, example):
        return example.input

    def document(self, item):
        return item.get("text")

    def ppep(self, item, free_text=None):
        return item.get("text") if free_text is None else free_text

    def prompt(self, example, items, tokens, max_tokens=256):
        return tokens.truncate(" ".join([*(self.ppep(i) for i in items), example.input]), max_tokens)

    def score(self, predictions, golds, *, seed=0):
        ids = sorted(predictions)
        return [metrics.accuracy([predictions[i] for i in ids], [golds[i] for i in ids], seed=seed)]


class ToyFiles(DataSource):
    name = "toy-files"
    schemes = ("user",)

    def locate(self, task, split, scheme="user", *, download=True):
        folder = Path(self.context.lamp_home) / "toy-files"
        questions = [{"id": f"t{i}", "input": f"question {i}",
                      "profile": [{"id": f"t{i}-b", "text": "beta"}, {"id": f"t{i}-a", "text": "alpha question"},
                                  {"id": f"t{i}-c", "text": "gamma"}]}
                     for i in range(3)]
        atomic_write_json(folder / f"{split}_questions.json", questions)
        atomic_write_json(folder / f"{split}_outputs.json",
                          {"task": "Toy_Echo", "golds": [{"id": q["id"], "output": "x"} for q in questions]})
        return SplitFiles(folder / f"{split}_questions.json", folder / f"{split}_outputs.json", "toy-files:v1")


@hookimpl
def lamp_register(registry):
    registry.add_generator("strict", Strict, "strict toy generator")
    registry.add_generator("beams", Beams, "toy generator declaring num_beams")
    registry.add_task("toy-echo-task", Echo, "toy task with its own data")
    registry.add_data_source("toy-files", ToyFiles, "toy data")
'''


def _cells(out: Path) -> dict[str, dict]:
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*/config.json"))]
    return {c["cell_id"]: c for c in configs}


def _predictions(cell: Path) -> list[dict]:
    return [json.loads(line) for line in (cell / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_strict_generator_runs_with_num_beams_and_sees_retrieved_items(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    out = tmp_path / "out"
    code, stdout, err = cli(
        "run",
        "--task",
        "toy-echo-task",
        "--personalizer",
        "ipa",
        "--retriever",
        "bm25",
        "--k",
        "2",
        "--generator",
        "strict",
        "--num-beams",
        "4",
        "--batch-size",
        "1",
        "--max-input-tokens",
        "64",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stdout + err
    (config,) = _cells(out).values()
    assert config["generator"]["name"] == "strict"
    notes = " ".join(config["preset_notes"])
    assert "generator 'strict' takes no 'num_beams' parameter" in notes
    assert "max_input_tokens" in notes and "batch_size" not in notes  # batch_size is declared
    predictions = _predictions(out / config["cell_id"])
    assert len(predictions) == 3
    for p in predictions:
        ids, _ = p["raw"].split(";", 1)
        assert ids.split("|") == list(p["retrieved"]) and len(p["retrieved"]) == 2
        assert ids.split("|")[0].endswith("-a")  # bm25: the item sharing "question" ranks first

    code, _, err = cli(
        "run",
        "--task",
        "toy-echo-task",
        "--generator",
        "strict",
        "--generator-arg",
        "tone=x",
        "--out",
        str(tmp_path / "bad"),
        "--quiet",
    )
    assert code == 2 and "unknown argument(s) tone" in err and "Traceback" not in err


@pytest.mark.slow
def test_per_task_data_sources_in_one_matrix_and_the_task_default(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    out = tmp_path / "out"
    base = ("run", "--task", "lamp-7,toy-echo-task", "--generator", "strict", "--limit", "2", "--quiet", "--out", str(out))
    code, stdout, err = cli(*base, "--data", "lamp-7=demo,toy-echo-task=toy-files")
    assert code == 0, stdout + err
    sources = {c["task"]: c["data"]["source"] for c in _cells(out).values()}
    assert sources == {"lamp-7": "demo:v1", "toy-echo-task": "toy-files:v1"}
    first = set(_cells(out))

    # The toy task's own data_source applies when the run names none for it.
    code, stdout, err = cli(*base, "--data", "lamp-7=demo")
    assert code == 0, stdout + err
    assert set(_cells(out)) == first  # the same cells: finished, skipped

    # The matrix-file equivalent: a table of task = source.
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(
        'task = ["lamp-7", "toy-echo-task"]\ngenerator = "strict"\nlimit = 2\n'
        f'out = "{out}"\n[data]\nlamp-7 = "demo"\ntoy-echo-task = "toy-files"\n',
        encoding="utf-8",
    )
    code, stdout, err = cli("run", "--config", str(matrix), "--quiet")
    assert code == 0, stdout + err
    assert set(_cells(out)) == first

    # A default for the other tasks plus a per-task entry.
    code, stdout, err = cli(*base, "--data", "demo,toy-echo-task=toy-files")
    assert code == 0, stdout + err
    assert set(_cells(out)) == first

    code, _, err = cli(*base, "--data", "lamp-7=")
    assert code == 2 and "is not TASK=SOURCE" in err
    code, _, err = cli(*base, "--data", "lamp-77=demo")
    assert code == 2 and "Unknown task 'lamp-77'" in err


def _set_version(site, dist: str, old: str, new: str) -> None:
    info = site.root / f"{dist.replace('-', '_')}-{old}.dist-info"
    moved = site.root / f"{dist.replace('-', '_')}-{new}.dist-info"
    shutil.move(info, moved)
    metadata = moved / "METADATA"
    metadata.write_text(metadata.read_text(encoding="utf-8").replace(f"Version: {old}", f"Version: {new}"), encoding="utf-8")


def test_a_plugin_upgrade_recomputes_its_cells_or_keeps_them_with_allow_stale(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    out = tmp_path / "out"
    args = (
        "run",
        "--task",
        "lamp-7",
        "--data",
        "demo",
        "--limit",
        "2",
        "--generator",
        "strict",
        "--out",
        str(out),
        "--quiet",
    )
    code, stdout, err = cli(*args)
    assert code == 0, stdout + err
    (old,) = _cells(out).values()
    assert old["component_versions"]["lamp-strict"] == "1.0"
    assert "lamp-harness" in old["component_versions"]
    assert old["versions"]["lamp-strict"] == "1.0"

    _set_version(site, "lamp-strict", "1.0", "1.1")
    code, stdout, err = cli(*args, "--allow-stale")
    assert code == 0, stdout + err
    assert list(_cells(out)) == [old["cell_id"]]  # nothing recomputed
    assert f"keeping {old['cell_id']}, computed with other versions (lamp-strict 1.0 -> 1.1)" in err

    code, stdout, err = cli(*args)
    assert code == 0, stdout + err
    cells = _cells(out)
    assert len(cells) == 2
    (new,) = [c for c in cells.values() if c["cell_id"] != old["cell_id"]]
    assert new["component_versions"]["lamp-strict"] == "1.1" and new["base_id"] == old["base_id"]
    assert "recomputing it as " + new["cell_id"] in err
    assert (out / new["cell_id"] / "metrics.json").is_file()

    # Another run with 1.1 finds its own cell finished: no warning, nothing recomputed.
    code, stdout, err = cli(*args)
    assert code == 0 and "recomputing" not in err and len(_cells(out)) == 2


def test_lamp_run_warns_about_a_hook_function_missing_hookimpl(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    site.add("lamp-forgetful", "0.1", forgetful="def lamp_cell_finished(cell, metrics):\n    pass\n")
    code, stdout, err = cli(
        "run",
        "--task",
        "lamp-7",
        "--data",
        "demo",
        "--limit",
        "1",
        "--generator",
        "strict",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert code == 0, stdout + err
    assert (
        "warning: plugin 'forgetful' (lamp-forgetful 0.1): function 'lamp_cell_finished' looks like the "
        "'lamp_cell_finished' hook but has no @hookimpl"
    ) in " ".join(err.split())


def test_batch_size_arg_takes_an_integer_or_auto_and_names_the_generator_otherwise():
    import pytest

    from lamp_harness.errors import LampError
    from lamp_harness.options import batch_size_arg

    assert batch_size_arg("auto", 32, "generator 'x'") == 32
    assert batch_size_arg(" AUTO ", 32, "generator 'x'") == 32
    assert batch_size_arg(None, 32, "generator 'x'") == 32
    assert batch_size_arg("8", 32, "generator 'x'") == 8
    for bad in ("0", "eight"):
        with pytest.raises(LampError, match="generator 'x'"):
            batch_size_arg(bad, 32, "generator 'x'")


def test_a_declared_num_beams_other_than_the_default_gets_a_label_and_a_column_of_its_own(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    out = tmp_path / "out"
    for extra in ([], ["--num-beams", "4"], ["--num-beams", "1"], ["--batch-size", "auto"]):
        code, stdout, err = cli(
            "run", "--task", "toy-echo-task", "--generator", "beams", *extra, "--out", str(out), "--quiet"
        )
        assert code == 0, stdout + err
    labels = sorted(c["label"] for c in _cells(out).values())
    # 1 is the declared default and the batch size changes no output: those keep the plain label
    assert labels == ["none / beams", "none / beams", "none / beams", "none / beams / beams=4"], labels
    code, stdout, err = cli("leaderboard", str(out), "--format", "json")
    assert code == 0, err
    assert {"none / beams", "none / beams / beams=4"} <= set(json.dumps(json.loads(stdout)).split('"'))
    # strict declares no num_beams: the setting is unused, so it stays out of the label
    code, stdout, err = cli(
        "run",
        "--task",
        "toy-echo-task",
        "--generator",
        "strict",
        "--num-beams",
        "4",
        "--out",
        str(tmp_path / "strict"),
        "--quiet",
    )
    assert code == 0, stdout + err
    assert [c["label"] for c in _cells(tmp_path / "strict").values()] == ["none / strict"]
