"""What a leaderboard may rest on: per-example scores verified before any test, tables keyed by the
data's checksum, small reruns that replace nothing silently, a header saying what each table is,
and the leaderboard's bad inputs (each one line, an exit code, no traceback).

Real cells throughout: the toy generator that answers from its prompt's words, on the demo data."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from lamp_cli import LAMP_PROCESS, demo_run, toys_env
from lamp_cli import lamp_output as lamp
from run_folders import rewrite_config

from lamp_harness.report import leaderboard as lb
from lamp_harness.run.store import PREDICTIONS, SCORES

REPO = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def notes(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("note: ")]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """lamp-7 on 12 demo questions: none and IPA (BM25, k=1), the toy generator (made once)."""
    import subprocess

    out = tmp_path_factory.mktemp("pristine") / "runs"
    home = tmp_path_factory.mktemp("home")
    env = toys_env(LAMP_HOME=str(home))
    done = subprocess.run(
        [
            *LAMP_PROCESS,
            *demo_run(
                "--personalizer", "none,ipa", "--retriever", "bm25", "--k", "1", generator="toy-words", limit=12, out=out
            ),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return out, home


@pytest.fixture
def runs(pristine, tmp_path, toys, monkeypatch):
    out, home = pristine
    monkeypatch.setenv("LAMP_HOME", str(home))
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    return copy


def cell(runs: Path, prefix: str) -> Path:
    return next(d for d in runs.iterdir() if d.is_dir() and d.name.startswith(prefix))


def board_json(capsys, runs: Path, *args: str) -> tuple[dict, str]:
    code, out, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "json", *args)
    assert code == 0, err
    return json.loads(out), err


def compared(board: dict) -> list[dict]:
    return [v for r in board["blocks"][0]["rows"] for v in r["values"] if v and v["p_value"] is not None]


def edit_scores(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- scores verified before statistics ---------------------------------------------------------


def test_stored_scores_carry_the_checksum_of_their_predictions(runs):
    from lamp_harness.run.store import _digest_and_count

    for directory in (d for d in runs.iterdir() if d.is_dir()):
        stored = json.loads((directory / SCORES).read_text())
        sha, count = _digest_and_count(directory / PREDICTIONS)
        assert stored["predictions"] == {"sha256": sha, "count": count}


DAMAGES = {
    "nan": (lambda d: d["metrics"][0]["rows"][0].__setitem__(0, float("nan")), "non-finite value"),
    "edited value": (lambda d: d["metrics"][0]["rows"][3].__setitem__(0, 0.99), "recomputed from its rows"),
    "foreign id": (lambda d: d["ids"].__setitem__(0, "not-a-question"), "not in predictions.jsonl"),
    "duplicate id": (lambda d: d["ids"].__setitem__(1, d["ids"][0]), "more than once"),
    "changed statistic": (lambda d: d["metrics"][0].__setitem__("statistic", "root_mean"), "recomputed from its rows"),
    "infinite profile size": (lambda d: d["profile_size"].__setitem__(0, float("inf")), "impossible profile size"),
    "negative profile size": (lambda d: d["profile_size"].__setitem__(0, -3), "impossible profile size"),
    "other predictions": (lambda d: d["predictions"].__setitem__("sha256", "0" * 64), "checksum"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_scores_are_reported_and_recomputed_never_used(damage, runs, capsys):
    intact, _ = board_json(capsys, runs)
    baseline = cell(runs, "lamp-7_none")
    change, words = DAMAGES[damage]
    edit_scores(baseline / SCORES, change)
    damaged = (baseline / SCORES).read_text()
    board, err = board_json(capsys, runs)
    (note,) = [n for n in notes(err) if str(baseline) in n]
    assert words in note and "recomputed from predictions.jsonl and the data" in note, note
    # the tests ran on the recomputed (verified) values: the same as from the intact file
    assert board["blocks"] == intact["blocks"]
    assert (baseline / SCORES).read_text() == damaged  # the evidence is left for the user


@pytest.mark.parametrize("damage", ["nan", "foreign id", "infinite profile size"])
def test_damaged_scores_that_cannot_be_recomputed_are_refused_with_a_note(damage, runs, capsys):
    baseline = cell(runs, "lamp-7_none")
    edit_scores(baseline / SCORES, DAMAGES[damage][0])
    for path in runs.glob("*/config.json"):  # the data on this machine is not the cells'
        rewrite_config(path.parent, lambda c: c["data"].__setitem__("checksums", {"dev_outputs.json": "0" * 64}))
    board, err = board_json(capsys, runs, "--by", "profile-size")
    (note,) = [n for n in notes(err) if str(baseline) in n]
    assert "not used" in note and DAMAGES[damage][1] in note and "checksums differ" in note
    assert compared(board) == []  # no test on values that were not verified
    for breakdown in board.get("breakdowns", []):  # nor a breakdown
        for row in breakdown["rows"]:
            assert all(
                b["values"][
                    breakdown["columns"].index(next(c["label"] for c in board["blocks"][0]["columns"] if c["baseline"]))
                ]
                is None
                for b in row["buckets"]
            )
    baseline_entry = next(v for r in board["blocks"][0]["rows"] for v in r["values"] if v and v["baseline"])
    assert baseline_entry["value"] is not None  # the table still shows the cell's metrics


def test_old_scores_without_a_checksum_are_verified_by_rescoring(runs, capsys):
    intact, _ = board_json(capsys, runs)
    for path in runs.glob(f"*/{SCORES}"):
        edit_scores(path, lambda d: d.pop("predictions"))
        edit_scores(path.parent / "metrics.json", lambda d: d.pop("scores"))  # old cells record no checksum
    board, err = board_json(capsys, runs)
    assert board["blocks"] == intact["blocks"] and notes(err) == [n for n in notes(err) if "fewer than" in n]
    # an old file whose rows a rescore contradicts (within what metrics.json allows) is replaced
    victim = cell(runs, "lamp-7_ipa")
    data = json.loads((victim / SCORES).read_text())
    rows = data["metrics"][0]["rows"]
    first, other = 0, next(k for k, row in enumerate(rows) if row[0] != rows[0][0])
    rows[first][0], rows[other][0] = rows[other][0], rows[first][0]  # same mean, other examples
    for metric in data["metrics"][1:]:  # rouge-L likewise, so metrics.json still agrees
        r = metric["rows"]
        r[first][0], r[other][0] = r[other][0], r[first][0]
    (victim / SCORES).write_text(json.dumps(data))
    board, err = board_json(capsys, runs)
    assert any(str(victim) in n and "differs from a rescore" in n for n in notes(err)), err
    assert board["blocks"] == intact["blocks"]


@pytest.mark.slow
def test_committed_run_folders_still_render_with_tests(capsys):
    for runs in ("leaderboard/demo-runs", "leaderboard/lamp7-finetuned/runs"):
        before = {p: p.read_bytes() for p in (REPO / runs).rglob("*") if p.is_file()}
        code, out, err = lamp(capsys, "leaderboard", str(REPO / runs), "--baseline", "none", "-f", "json")
        assert code == 0, err
        assert "no per-example scores" not in err and "not used" not in err, err
        assert compared(json.loads(out)), runs
        assert {p: p.read_bytes() for p in (REPO / runs).rglob("*") if p.is_file()} == before


# -- data identity --------------------------------------------------------------------------------


def test_two_data_sets_with_one_name_get_two_tables_with_their_checksums(toys, tmp_path, capsys):
    from dataclasses import replace

    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.registry import host
    from lamp_harness.train.training import write_split_files

    task = host().registry.create("task", "lamp-7")
    dataset = resolve_dataset(task, data="demo", data_dir=None, split="dev", context=RunContext(tmp_path))
    out = tmp_path / "runs"
    for part, examples in (("a", dataset.examples[:6]), ("b", dataset.examples[6:12])):
        folder = tmp_path / part / "data"
        write_split_files(replace(dataset, examples=examples), folder, "dev", task.official_name)
        code, _, err = lamp(
            capsys,
            "run",
            "--task",
            "lamp-7",
            "--data-dir",
            str(folder),
            "--split",
            "dev",
            "--generator",
            "toy-words",
            "--personalizer",
            "none",
            "--out",
            str(out / part),
            "--quiet",
        )
        assert code == 0, err
    code, md, err = lamp(capsys, "leaderboard", str(out))
    assert code == 0, err
    titles = [line for line in md.splitlines() if line.startswith("## split")]
    assert len(titles) == 2 and all("data: local:data (checksum " in t for t in titles), titles
    assert titles[0] != titles[1]


def test_a_smaller_rerun_does_not_replace_the_larger_cell(runs, toys, capsys):
    code, _, err = lamp(capsys, *demo_run("--personalizer", "none", generator="toy-words", limit=2, out=runs / "smoke"))
    assert code == 0, err
    board, err = board_json(capsys, runs)
    baseline = next(v for r in board["blocks"][0]["rows"] for v in r["values"] if v and v["baseline"])
    assert baseline["n"] == 12
    (note,) = [n for n in notes(err) if "smoke" in n]
    assert "scored 2 examples" in note and "scored 12; kept the larger one although this one is newer" in note


# -- every table says what it is ------------------------------------------------------------------


@pytest.mark.slow
def test_header_says_data_models_training_and_small_samples_in_every_format(tmp_path, capsys):
    demo = REPO / "leaderboard/demo-runs"
    code, md, _ = lamp(capsys, "leaderboard", str(demo), "--baseline", "none")
    assert code == 0
    head = md.split("## split")[0]
    assert head.startswith("# Leaderboard\n")
    assert (
        "**Data** (split: dev, scheme: user, data: demo:v1): demo:v1 (synthetic data in LaMP's format, generated "
        "by the harness with planted personal signals; not the LaMP benchmark); checksum `"
    ) in head
    assert (
        "n = 10 per task (lamp-1, lamp-2, lamp-3, lamp-4, lamp-5, lamp-6, lamp-7, longlamp-review, personamem-32k)"
    ) in head
    assert "smollm2-135m-instruct (generator), a stand-in for google/flan-t5-base (preset 'offline')" in head
    assert "minilm (pplug encoder), a stand-in for BAAI/bge-base-en-v1.5" in head
    assert "minilm (contriever), a stand-in for facebook/contriever" in head  # from the preset's notes
    # PPlug trains 1 epoch on LaMP-3 and 2 on the others (the paper's counts): each budget names its tasks.
    assert "**Training** (pplug / smollm2-135m-instruct / max-new-tokens=24): lamp-1, lamp-2, lamp-4, lamp-5" in head
    assert "lamp-7: 6 steps × batch 4, 24 training examples, 2 epoch(s) planned" in head
    assert "; lamp-3: 6 steps × batch 4, 24 training examples, 1 epoch(s) planned" in head
    assert "**Warning**: table 'split: dev, scheme: user, data: demo:v1' rests on fewer than 30" in head

    code, out, _ = lamp(capsys, "leaderboard", str(demo), "-f", "json")
    header = json.loads(out)["header"]
    assert header["data"][0]["n"] == [
        *([f"lamp-{i}", "10"] for i in range(1, 8)),
        ["longlamp-review", "10"],
        ["personamem-32k", "10"],
    ]
    assert {
        "model": "smollm2-135m-instruct",
        "role": "generator",
        "stand_in_for": "google/flan-t5-base",
        "preset": "offline",
    } in header["models"]
    assert header["warnings"] and header["cells"] == 33

    page = tmp_path / "page.html"
    code, _, _ = lamp(capsys, "leaderboard", str(demo), "-f", "html", "--out", str(page))
    html = page.read_text()
    assert code == 0 and "<strong>Warning</strong>: table" in html and "a stand-in for google/flan-t5-base" in html


def test_training_budget_is_recorded_by_the_runner_and_shown(tmp_path, capsys):
    """A fabricated checkpoint folder: what `lamp train` writes beside the weights."""
    from lamp_harness import TrainingBudget
    from lamp_harness.train.training import recorded_budget

    step = tmp_path / "train" / "checkpoints" / "step-00000012"
    step.mkdir(parents=True)
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(1, dtype=np.float32)}, str(step / "weights.safetensors"))  # intact, as a real one
    (step / "state.json").write_text(json.dumps({"step": 12, "world_size": 1}))
    (step / "config.json").write_text(
        json.dumps(
            {
                "train_config": {"batch_size": 8, "grad_accum": 8, "lr": 1e-4, "epochs": 2, "max_steps": None},
                "train_data": {"examples": 1005},
                "personalizer": {"name": "pplug", "augment": 10},
                "mixed_precision": "bf16",
            }
        )
    )
    recorded = recorded_budget(step)
    assert recorded is not None
    budget = recorded.to_json()
    assert list(budget) == ["steps", "batch_size", "grad_accum", "world_size", "examples", "epochs", "lr"] + [
        "mixed_precision",
        "augment",
    ]  # the order config.json has always had
    assert budget == {
        "steps": 12,
        "batch_size": 8,
        "grad_accum": 8,
        "world_size": 1,
        "examples": 1005,
        "epochs": 2,
        "lr": 1e-4,
        "mixed_precision": "bf16",
        "augment": 10,
    }
    text = lb.training_budget({"training": budget, "checkpoint": str(step)})
    assert text == (
        "12 steps × batch 8 × 8 accumulated, 1005 training examples, 2 epoch(s) planned, lr 0.0001, "
        "augment 10, mixed precision bf16"
    )
    assert "not recorded" in lb.training_budget({"checkpoint": "/somewhere/pplug"})
    assert lb.training_budget({"checkpoint": None}) is None
    # Weights a method trains itself, one adapter per user after a stage it starts from (OPPU).
    own = TrainingBudget(steps=16, batch_size=16, examples=121, epochs=2, lr=1e-4, per_user=8, before="stage 1: x")
    assert lb.training_budget({"training": own.to_json(), "checkpoint": None}) == (
        "one adapter per user (8 users), 16 steps × batch 16, 121 training examples, 2 epoch(s) planned, "
        "lr 0.0001, after stage 1: x"
    )


def test_reference_columns_name_model_split_and_source(capsys):
    code, md, _ = lamp(capsys, "leaderboard", str(REPO / "leaderboard/lamp7-finetuned/runs"), "--reference", "lamp-user")
    assert code == 0
    assert "No-retrieval (LaMP paper; FlanT5-base, fine-tuned; user-based, dev set)" in md
    assert (
        "**Reference columns** (LaMP paper; FlanT5-base, fine-tuned; user-based, dev set): LaMP paper "
        "(Salemi et al., ACL 2024), results tables; model FlanT5-base, fine-tuned; split user-based, dev set"
    ) in md
    for name in lb.reference_names():
        info = lb.reference_info(name)
        assert "?" not in (info.source, info.model, info.split), name


# -- smalls ---------------------------------------------------------------------------------------


def test_csv_has_the_delta_column(runs, capsys):
    code, text, _ = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and "delta" in rows[0]
    compared = [r for r in rows if r["p_value"]]
    assert compared and all(r["delta"] for r in compared)
    assert all(r["delta"] == "" for r in rows if r["baseline"] == "true")


def test_a_dollar_in_a_column_label_renders_in_the_plot_and_the_page(runs, tmp_path, capsys):
    victim = cell(runs, "lamp-7_ipa")
    rewrite_config(victim, lambda c: c.__setitem__("label", "ipa $x^$ / cost $5 / $\\frac{a"))
    page, image = tmp_path / "page.html", tmp_path / "plot.png"
    code, _, err = lamp(
        capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "html", "--out", str(page), "--plot", str(image)
    )
    assert code == 0, err
    assert "Traceback" not in err and image.read_bytes()[:4] == b"\x89PNG"
    assert "ipa $x^$ / cost $5 / $\\frac{a" in page.read_text()


@pytest.mark.parametrize(
    "command",
    [
        ("leaderboard", "RUNS"),
        ("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-words", "--out", "OUT"),
        ("train", "--task", "lamp-7", "--personalizer", "pplug", "--out", "OUT"),
        ("rank", "--task", "lamp-7", "--data", "demo", "--retriever", "random", "--out", "OUT"),
        ("evaluate", "--task", "lamp-7", "--golds", "PRED", "--predictions", "PRED"),
    ],
)
@pytest.mark.parametrize("seed", ["-1", "4294967296", "1e3"])
def test_every_seed_is_range_checked_in_one_line(command, seed, runs, toys, tmp_path, capsys):
    args = [
        str(runs)
        if a == "RUNS"
        else str(tmp_path / "out")
        if a == "OUT"
        else str(tmp_path / "p.jsonl")
        if a == "PRED"
        else a
        for a in command
    ]
    code, _, err = lamp(capsys, *args, "--seed", seed)
    line = one_line(err)
    assert code == 2 and "--seed" in line and f"lamp {command[0]}" in line, line
    assert not (tmp_path / "out").exists()


def test_baseline_accepts_a_cell_id_prefix(runs, capsys):
    target = cell(runs, "lamp-7_ipa")
    for prefix in (target.name[:16], target.name):
        code, out, err = lamp(capsys, "leaderboard", str(runs), "--baseline", prefix, "-f", "json")
        assert code == 0, err
        columns = json.loads(out)["blocks"][0]["columns"]
        assert next(c for c in columns if c["baseline"])["label"].startswith("ipa / bm25 / k=1")
    # a prefix that names several cells says so, in one line
    code, _, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "lamp-7_")
    assert code == 2 and "cell ids of 2 columns" in one_line(err)


def test_a_matrix_files_seed_is_range_checked_in_one_line(toys, tmp_path, capsys):
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('task = ["lamp-7"]\ndata = "demo"\ngenerator = ["toy-words"]\nseed = 4294967296\n')
    code, _, err = lamp(capsys, "run", "--config", str(matrix), "--out", str(tmp_path / "out"))
    line = one_line(err)
    assert code == 2 and "seed" in line and "4294967295" in line and str(matrix) in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_metric_skips_the_cell_with_a_note(value, runs, capsys):
    victim = cell(runs, "lamp-7_ipa")
    path = victim / "metrics.json"
    edit_scores(path, lambda d: d["metrics"][0].__setitem__("value", float(value)))
    code, out, err = lamp(capsys, "leaderboard", str(runs))
    assert code == 0 and "Traceback" not in err
    (note,) = [n for n in notes(err) if str(victim) in n]
    assert "non-finite value" in note and "skipped" in note
    assert "ipa / bm25" not in out.split("## split")[1]


def test_cells_whose_metric_is_another_statistic_get_a_note_not_a_test(runs, capsys):
    import math

    victim = cell(runs, "lamp-7_ipa")
    scores = json.loads((victim / SCORES).read_text())
    entry = next(m for m in scores["metrics"] if m["name"] == "rouge-1")
    entry["statistic"] = "root_mean"
    (victim / SCORES).write_text(json.dumps(scores))
    rows = [r[0] for r in entry["rows"]]
    edit_scores(
        victim / "metrics.json",
        lambda d: next(m for m in d["metrics"] if m["name"] == "rouge-1").__setitem__(
            "value", math.sqrt(sum(rows) / len(rows))
        ),
    )
    from lamp_harness.run.store import scores_digest

    # as a cell computed that way writes it: metrics.json records the checksum of that scores.json
    edit_scores(victim / "metrics.json", lambda d: d["scores"].__setitem__("sha256", scores_digest(scores)))
    board, err = board_json(capsys, runs)
    (note,) = [n for n in notes(err) if "root_mean statistic" in n]
    assert "lamp-7 rouge-1" in note and "no test between them" in note
    row = next(r for r in board["blocks"][0]["rows"] if r["metric"] == "rouge-1")
    assert all(v["p_value"] is None for v in row["values"])
