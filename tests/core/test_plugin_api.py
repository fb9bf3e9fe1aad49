"""What the plugin API promises a third-party author, exercised through the real CLI with fake
installed distributions: generators get run-level settings only when they declare them, requests
carry the retrieved items and metadata, per-task data sources (``--data TASK=NAME``, the matrix
file's table, a task's own ``data_source``), and plugin versions in the cell id (recomputed on an
upgrade, or kept under ``--allow-stale``). And the declared surface itself: ``lamp_harness.__all__``
and ``lamp_harness.testing.__all__`` resolve, cost nothing to import, match the type stub, and are
all that the examples, the scaffold, the plugin guide and (but for a few marked sites) the
built-ins import."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lamp_cli import demo_run
from toy_sources import TEXT_ITEM_METHODS, WORDS

# A fake distribution holding a strict generator, a task with its own data source, and the source.
COMPONENTS = (
    """
import json
from pathlib import Path

from lamp_harness import (
    DataSource,
    Generation,
    Generator,
    SplitFiles,
    Task,
    atomic_write_json,
    batch_size_arg,
    hookimpl,
    metrics,
    reject_unknown_args,
)

"""
    + WORDS
    + '''

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
'''
    + TEXT_ITEM_METHODS
    + """
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
"""
)


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


def test_a_plugin_upgrade_recomputes_its_cells_or_keeps_them_with_allow_stale(site, cli, tmp_path):
    site.add("lamp-strict", "1.0", strict=COMPONENTS)
    out = tmp_path / "out"
    args = demo_run(generator="strict", limit=2, out=out)
    code, stdout, err = cli(*args)
    assert code == 0, stdout + err
    (old,) = _cells(out).values()
    assert old["component_versions"]["lamp-strict"] == "1.0"
    assert "lamp-harness" in old["component_versions"]
    assert old["versions"]["lamp-strict"] == "1.0"

    site.set_version("lamp-strict", "1.0", "1.1")
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
    code, stdout, err = cli(*demo_run(generator="strict", limit=1, out=tmp_path / "out"))
    assert code == 0, stdout + err
    assert (
        "warning: plugin 'forgetful' (lamp-forgetful 0.1): function 'lamp_cell_finished' looks like the "
        "'lamp_cell_finished' hook but has no @hookimpl"
    ) in " ".join(err.split())


def test_batch_size_arg_takes_an_integer_or_auto_and_names_the_generator_otherwise():
    from lamp_harness import LampError, batch_size_arg

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


# ---------------------------------------------------------------------------------------------
# The declared surface: `lamp_harness` and `lamp_harness.testing`, and who imports what
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ("lamp_harness", "lamp_harness.testing")
INTERNAL_MARK = "# core-internal:"
MAX_BUILT_IN_EXCEPTIONS = 10


def _import_sites(source: str, where: str) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """Every import of a ``lamp_harness`` module in ``source`` (module level, in functions, under
    ``TYPE_CHECKING``): ``(where, line, module, names)``."""
    sites = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "lamp_harness":
            sites.append((where, node.lineno, node.module or "", tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            sites += [(where, node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] == "lamp_harness"]
    return sites


def _off_api(sites: list[tuple[str, int, str, tuple[str, ...]]]) -> list[str]:
    """The sites that reach past the plugin API: another module, or a name not in its ``__all__``."""
    import lamp_harness
    import lamp_harness.testing

    declared = {"lamp_harness": set(lamp_harness.__all__), "lamp_harness.testing": set(lamp_harness.testing.__all__)}
    off = []
    for where, line, module, names in sites:
        if module not in PUBLIC:
            off.append(f"{where}:{line}: {module}")
        elif not names:
            off.append(f"{where}:{line}: import {module} (import names from it)")
        elif unknown := sorted(set(names) - declared[module]):
            off.append(f"{where}:{line}: {module} has no public {', '.join(unknown)}")
    return off


def _python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_every_public_name_resolves_and_the_type_stub_declares_the_same_names():
    import lamp_harness
    import lamp_harness.testing

    exports = lamp_harness._EXPORTS
    assert lamp_harness.__all__ == ["__version__", *exports]
    for name in exports:
        value = getattr(lamp_harness, name)
        module = importlib.import_module(f"lamp_harness.{exports[name]}")
        assert value is (module if name == exports[name].rpartition(".")[2] else getattr(module, name)), name
    assert set(lamp_harness.__all__) <= set(dir(lamp_harness))
    for name in lamp_harness.testing.__all__:
        assert getattr(lamp_harness.testing, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'runner'"):
        lamp_harness.__getattr__("runner")

    stub = ast.parse((ROOT / "lamp_harness" / "__init__.pyi").read_text(encoding="utf-8"))
    stubbed = {}
    for node in stub.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.asname == alias.name, f"the stub must re-export {alias.name} as itself"
                stubbed[alias.name] = (node.module or "").removeprefix("lamp_harness.").removeprefix("lamp_harness")
    stubbed["metrics"] = "inputs.metrics"
    assert stubbed == exports


def test_the_trainable_generator_mixin_lives_below_the_trainer():
    import lamp_harness
    from lamp_harness.plugin import trainable
    from lamp_harness.train import training

    assert lamp_harness.GeneratorFineTuning is trainable.GeneratorFineTuning is training.GeneratorFineTuning
    assert issubclass(training.FineTuned, lamp_harness.GeneratorFineTuning)
    imported = {m for _, _, m, _ in _import_sites(Path(trainable.__file__).read_text(), "x")}
    assert "lamp_harness.train.training" not in imported


def test_importing_the_plugin_api_loads_nothing_until_a_name_is_used():
    probe = (
        "import sys, lamp_harness\n"
        "print(sorted(m for m in sys.modules if m.startswith('lamp_harness')))\n"
        "from lamp_harness import Retriever, hookimpl, int_arg, GeneratorFineTuning\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'lamp_harness.run.runner') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['lamp_harness']", "[]"]


def test_the_examples_the_scaffold_and_the_plugin_guide_import_only_the_plugin_api(tmp_path):
    from lamp_harness.plugin.scaffold import SCAFFOLD_KINDS, scaffold

    sites = []
    for path in _python_files(ROOT / "examples"):
        sites += _import_sites(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    written = scaffold("lamp-api-probe", tmp_path / "probe", list(SCAFFOLD_KINDS))
    for path in (p for p in written if p.suffix == ".py"):
        sites += _import_sites(path.read_text(encoding="utf-8"), f"lamp plugins new: {path.relative_to(tmp_path)}")
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for n, block in enumerate(re.findall(r"```python\n(.*?)```", guide, flags=re.S)):  # a list item's is indented
        sites += _import_sites(textwrap.dedent(block), f"docs/plugins.md, python block {n + 1}")
    assert len({s[0] for s in sites}) > 20  # every kind of component, its tests and the guide's blocks
    assert _off_api(sites) == []


def test_the_built_ins_import_only_the_plugin_api_but_for_a_few_marked_exceptions():
    exceptions, unmarked = [], []
    for path in _python_files(ROOT / "plugins", ROOT / "tasks"):
        lines = path.read_text(encoding="utf-8").splitlines()
        sites = _import_sites("\n".join(lines), str(path.relative_to(ROOT)))
        for site in sites:
            if site[2] in PUBLIC:
                continue
            where, line = site[0], site[1]
            above = line - 2
            while above >= 0 and lines[above].strip().startswith("#") and INTERNAL_MARK not in lines[above]:
                above -= 1  # the mark opens the comment block right above the import
            reason = lines[above].strip() if above >= 0 and lines[above].strip().startswith("#") else ""
            reason = reason.split(INTERNAL_MARK, 1)[1].strip() if INTERNAL_MARK in reason else ""
            (exceptions if reason else unmarked).append(f"{where}:{line}: {site[2]}")
        assert _off_api([s for s in sites if s[2] in PUBLIC]) == [], path
    assert unmarked == [], f"an import past the plugin API needs a '{INTERNAL_MARK} why' comment right above it"
    assert len(exceptions) <= MAX_BUILT_IN_EXCEPTIONS, exceptions
