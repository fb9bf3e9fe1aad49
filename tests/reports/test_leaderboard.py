"""`lamp leaderboard`: paper-style tables from run folders (fabricated: two tasks x three methods)."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from lamp_cli import demo_run
from run_folders import fabricate_runs, write_cell

from lamp_harness.base.errors import LampError
from lamp_harness.cli import main
from lamp_harness.report import leaderboard as lb
from lamp_harness.report.leaderboard.reader import _ref_value

EXPECTED = """\
## split: dev, scheme: user, data: fabricated

| task | metric | ipa / bm25 / k=1 / smollm2-135m-instruct | ipa / bm25 / k=4 / smollm2-135m-instruct | none / smollm2-135m-instruct |
|---|---|---:|---:|---:|
| lamp-1 | accuracy ↑ | 0.600 | **0.650** | 0.500 |
| lamp-1 | f1 ↑ | **0.580** | **0.580** | 0.450 |
| lamp-3 | MAE ↓ | **0.300** | 0.350 | 0.400 |
| lamp-3 | RMSE ↓ | 0.650 | **0.600** | 0.700 |
"""


@pytest.fixture
def runs(tmp_path):
    return fabricate_runs(tmp_path / "runs")


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def cli_ok(capsys, *args):
    try:
        main(list(args))
    except SystemExit as exc:  # typer may exit 0 explicitly
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr()


HEADER = """\
# Leaderboard

- **What this is**: 6 finished cells (run folders); every value is computed by the harness from the cell's predictions (`metrics.json`), not typed in.
- **Data** (split: dev, scheme: user, data: fabricated): fabricated; no checksum recorded; n = 2 per task (lamp-1, lamp-3)
- **Models**: smollm2-135m-instruct (generator)
- **Warning**: table 'split: dev, scheme: user, data: fabricated' rests on fewer than 30 examples (lamp-1: n=2, lamp-3: n=2): its intervals are wide, its paired tests coarse and able to show only very large differences; read its values and † marks as a demonstration, not a result

"""


def test_markdown_matches_the_papers_layout(runs, capsys):
    out = cli_ok(capsys, "leaderboard", str(runs)).out
    assert out == HEADER + EXPECTED


def test_best_respects_direction_and_ties_are_all_bold(runs):
    board = lb.leaderboard([runs])
    rows = {(r.task, r.metric): r for r in board.blocks[0].rows}
    mae = rows[("lamp-3", "MAE")]
    assert not mae.higher_is_better
    # lowest MAE (0.300, ipa k=1) is the best, not the highest (0.400)
    assert [v.best for v in mae.values] == [True, False, False]
    # 0.58 and 0.5801 print the same: both bold
    assert [v.best for v in rows[("lamp-1", "f1")].values] == [True, True, False]


def test_label_is_built_from_the_config_when_absent(tmp_path):
    cell = write_cell(
        tmp_path,
        task="lamp-7",
        personalizer="none",
        with_label=False,
        metrics=[{"name": "rouge-1", "value": 0.3, "higher_is_better": True}],
    )
    assert lb.read_cell(cell).label == "none / smollm2-135m-instruct"
    cell = write_cell(
        tmp_path,
        task="lamp-7",
        personalizer="ipa",
        retriever="bm25",
        k=4,
        with_label=False,
        metrics=[{"name": "rouge-1", "value": 0.3, "higher_is_better": True}],
    )
    assert lb.read_cell(cell).label == "ipa / bm25 / k=4 / smollm2-135m-instruct"


def test_ci_shows_intervals(runs, capsys):
    out = cli_ok(capsys, "leaderboard", str(runs), "--ci").out
    assert "| lamp-3 | MAE ↓ | **0.300** [0.200, 0.400] | 0.350 [0.250, 0.450] | 0.400 [0.300, 0.500] |" in out


def test_reference_lamp_time_adds_the_papers_numbers_beside_ours(runs, capsys):
    out = cli_ok(capsys, "leaderboard", str(runs), "--reference", "lamp-time").out
    header = out.split("## split")[1].splitlines()[2]
    ref = "(LaMP paper; FlanT5-base, fine-tuned; time-based, dev set)"
    assert header.endswith(
        f"| none / smollm2-135m-instruct | No-retrieval {ref} | "
        f"Random (non-pers.) {ref} | Random k=1 {ref} | BM25 k=1 {ref} | "
        f"Contriever k=1 {ref} | Recency k=1 {ref} | IPA tuned {ref} | "
        f"FiD k=16 {ref} |"
    )
    assert (
        "- **Reference columns** (LaMP paper; FlanT5-base, fine-tuned; time-based, dev set): LaMP paper "
        "(Salemi et al., ACL 2024), results tables; model FlanT5-base, fine-tuned; split time-based, dev set. "
        "Published numbers, not run here."
    ) in out
    # LaMP paper, time-based split: LaMP-3 MAE row (leaderboard/references); our best stays the only bold one
    assert (
        "| lamp-3 | MAE ↓ | **0.300** | 0.350 | 0.400 | 0.280 | 0.280 | 0.279 | 0.278 | 0.281 | 0.279 | 0.266 | 0.250 |"
    ) in out
    # the paper reports no F1 for LaMP-1
    assert "| lamp-1 | f1 ↑ | **0.580** | **0.580** | 0.450 | – | – | – | – | – | – | – | – |" in out


def test_every_reference_table_loads_and_names_our_metrics():
    assert lb.reference_names() == ["lamp-qa", "lamp-time", "lamp-user", "personamem", "pplug"]
    pplug = lb.load_reference("pplug")
    methods = list(dict.fromkeys(r.method for r in pplug))
    assert methods[-2:] == ["PPlug", "PPlug + retrieval"]
    assert {(r.task, r.metric, r.value) for r in pplug if r.method == "PPlug + retrieval"} >= {
        ("lamp-3", "MAE", 0.215),
        ("lamp-7", "rouge-L", 0.495),
    }
    assert not [r for r in pplug if r.task == "lamp-6"]  # PPlug has no LaMP-6
    user = lb.load_reference("lamp-user")
    assert len(user) == 13 * 7  # 13 task x metric rows, 7 columns
    assert {r.metric for r in user} == {"accuracy", "f1", "MAE", "RMSE", "rouge-1", "rouge-L"}


def test_reference_personamem_shows_the_papers_accuracies_beside_ours(tmp_path, capsys):
    """PersonaMem paper, 128k contexts (leaderboard/references/personamem.csv): overall accuracy
    and the per-question-type accuracies sit beside our cells, each column labelled."""
    runs = tmp_path / "runs"
    for personalizer, retriever, overall, facts in (("none", None, 0.375, 0.5), ("ipa", "bm25", 0.5, 0.75)):
        write_cell(
            runs,
            task="personamem-128k",
            personalizer=personalizer,
            retriever=retriever,
            k=1 if retriever else None,
            split="test",
            scheme=None,
            metrics=[
                {"name": "accuracy", "value": overall, "higher_is_better": True},
                {"name": "accuracy:recall_user_shared_facts", "value": facts, "higher_is_better": True},
            ],
        )
    out = cli_ok(capsys, "leaderboard", str(runs), "--reference", "personamem").out
    ref = "(PersonaMem paper; as each column names it; zero-shot, discriminative, full history in the prompt; 128k contexts, all questions)"
    header = next(line for line in out.splitlines() if line.startswith("| task | metric |"))
    assert header.endswith(
        f"| none / smollm2-135m-instruct | GPT-4.5 {ref} | GPT-4o {ref} | GPT-4o-mini {ref} | "
        f"Llama-4-Maverick {ref} | Random guess {ref} |"
    ), header
    # Figure 4's "Overall" column, then Figure 3's "Recall User Shared Facts" row
    assert "| personamem-128k | accuracy ↑ | **0.500** | 0.375 | 0.520 | 0.450 | 0.390 | 0.430 | 0.250 |" in out
    assert (
        "| personamem-128k | accuracy:recall_user_shared_facts ↑ | **0.750** | 0.500 | 0.610 | 0.410 | "
        "0.550 | 0.370 | 0.250 |"
    ) in out
    assert "PersonaMem paper (Jiang et al., arXiv 2504.14225), Figures 3-4" in out
    # a pattern-free table: a type the paper does not map stays empty on our row, never the overall value
    table = {(r.task, r.metric) for r in lb.load_reference("personamem")}
    assert ("personamem-128k", "accuracy:recalling_facts_mentioned_by_the_user") not in table
    assert ("personamem-32k", "accuracy") not in table  # the paper's tables are the 128k ones


def test_reference_metric_names_match_the_tasks():
    """The reference tables name the tasks and metrics the registered tasks emit (compared without
    regard to case, as the leaderboard matches them)."""
    from lamp_harness.plugin.registry import host

    registry = host().registry
    tables = {table: lb.load_reference(table) for table in lb.reference_names()}
    # a per-question-type metric (PersonaMem's accuracy:TYPE) is emitted for the types the
    # examples' ids carry ({type}:{question id}): give every type a reference names one example
    types = {r.metric.split(":", 1)[1] for rows in tables.values() for r in rows if r.metric.startswith("accuracy:")}
    emitted = set()
    for name in registry.names("task"):
        task = registry.create("task", name)
        gold = task.labels[0] if task.labels else "a gold title"
        golds = {"a": gold, **{f"{kind}:q1": gold for kind in sorted(types)}}
        emitted |= {(name, m.name.lower()) for m in task.score(golds, golds)}
        for metric in task.judged_metrics:  # named after the judge: the paper preset's default one
            from lamp_harness.run.judge import resolve_judge

            emitted.add((name, resolve_judge(registry, metric, None, "lamp-paper").metric_name.lower()))
    for table, rows in tables.items():
        for row in rows:
            key = (row.task, row.metric.lower())
            assert key in emitted or any(_ref_value({key: 1.0}, e) for e in emitted), (table, row)


def test_unknown_reference_is_a_one_line_error(runs, capsys):
    code, _, err = run_cli(capsys, "leaderboard", str(runs), "--reference", "lamp-moon")
    assert code == 2
    assert "unknown reference 'lamp-moon'" in err and "lamp-time" in err and len(err.strip().splitlines()) == 1


def test_json_format(runs, capsys):
    data = json.loads(cli_ok(capsys, "leaderboard", str(runs), "--format", "json").out)
    (block,) = data["blocks"]
    assert (block["split"], block["scheme"]) == ("dev", "user")
    assert [c["label"] for c in block["columns"]][2] == "none / smollm2-135m-instruct"
    mae = next(r for r in block["rows"] if r["metric"] == "MAE")
    assert mae["higher_is_better"] is False
    assert mae["values"][0] == {
        "task": "lamp-3",
        "metric": "MAE",
        "column": "ipa / bm25 / k=1 / smollm2-135m-instruct",
        "kind": "run",
        "value": 0.3,
        "ci_low": 0.2,
        "ci_high": 0.4,
        "n": 2,
        "cell_id": "lamp-3_ipa_bm25_k1-dev-" + mae["values"][0]["cell_id"][-8:],
        "best": True,
        "baseline": False,
        # no --baseline: no test
        "p_value": None,
        "p_adjusted": None,
        "significant": None,
        "test": None,
        "n_paired": None,
        "delta": None,
    }


def test_csv_format_is_long_and_complete(runs, capsys):
    rows = list(csv.DictReader(io.StringIO(cli_ok(capsys, "leaderboard", str(runs), "-f", "csv").out)))
    assert len(rows) == 2 * 2 * 3  # tasks x metrics x methods
    best = [(r["task"], r["metric"], r["column"]) for r in rows if r["best"] == "true"]
    assert ("lamp-3", "MAE", "ipa / bm25 / k=1 / smollm2-135m-instruct") in best
    assert float(next(r for r in rows if r["metric"] == "RMSE" and r["column"].startswith("none"))["value"]) == 0.7


def test_output_is_deterministic_and_written_to_out(runs, tmp_path, capsys):
    target = tmp_path / "board.md"
    cli_ok(capsys, "leaderboard", str(runs), "--out", str(target))
    assert target.read_text(encoding="utf-8") == HEADER + EXPECTED
    assert cli_ok(capsys, "leaderboard", str(runs)).out == HEADER + EXPECTED


def test_newest_duplicate_wins_across_runs_dirs(runs, tmp_path, capsys):
    older = fabricate_runs(tmp_path / "older", offset=-0.2)
    for metrics in older.rglob("metrics.json"):
        os.utime(metrics, (1_000_000, 1_000_000))
    result = cli_ok(capsys, "leaderboard", str(older), str(runs))
    assert result.out == HEADER + EXPECTED
    assert "kept the newer one" in result.err


def test_same_label_different_settings_are_two_columns(tmp_path):
    """A --generator-arg the label does not show (dtype) makes another method, not a rerun."""
    metric = [{"name": "rouge-1", "value": 0.5, "higher_is_better": True}]
    for name, dtype, value in (("fp32", "float32", 0.5), ("bf16", "bfloat16", 0.4), ("rerun", "float32", 0.6)):
        cell = write_cell(
            tmp_path / name,
            task="lamp-7",
            personalizer="none",
            cell_id=f"cell-{name}",
            metrics=[{**metric[0], "value": value}],
        )
        config = json.loads((cell / "config.json").read_text())
        config["generator"].update(dtype=dtype, device="cuda" if name == "rerun" else "cpu")
        (cell / "config.json").write_text(json.dumps(config))
        os.utime(cell / "metrics.json", (1_000_000 + len(name), 1_000_000 + len(name)))
    collected = lb.collect_cells([tmp_path])
    labels = {c.label: c.metrics[0].value for c in collected.cells}
    base = "none / smollm2-135m-instruct"
    # float32 ran twice (on another device): the newer one wins; bfloat16 is a column of its own.
    assert labels == {f"{base} / dtype=float32": 0.6, f"{base} / dtype=bfloat16": 0.4}
    assert any("kept the newer one" in note for note in collected.notes)


def _cell(root, name, value=0.5, mtime=1_000_000, **changes):
    """A finished lamp-7 cell whose config.json has ``changes`` applied (dotted keys reach into the
    components: ``generator.dtype``)."""
    cell = write_cell(
        root / name,
        task="lamp-7",
        personalizer="ipa",
        retriever="dense",
        k=1,
        cell_id=f"cell-{name}",
        metrics=[{"name": "rouge-1", "value": value, "higher_is_better": True}],
    )
    config = json.loads((cell / "config.json").read_text())
    for key, change in changes.items():
        *parts, last = key.split("__")
        target = config
        for part in parts:
            target = target[part]
        target[last] = change
    (cell / "config.json").write_text(json.dumps(config))
    os.utime(cell / "metrics.json", (mtime, mtime))
    return cell


def test_another_seed_is_a_column_and_another_checkpoint_path_is_a_rerun(tmp_path):
    _cell(tmp_path, "a", checkpoint="/home/a/ckpt", mtime=1_000_001)
    _cell(tmp_path, "b", checkpoint="/scratch/b/ckpt", mtime=1_000_002)
    _cell(tmp_path, "c", seed=1)
    labels = sorted(c.label.split(" / ")[-1] for c in lb.collect_cells([tmp_path]).cells)
    assert labels == ["seed=0", "seed=1"]


def test_another_training_budget_is_a_column_and_another_world_size_a_rerun(tmp_path):
    """PPlug trained at effective batch 8 and at the paper's 64 (``--train-arg grad_accum=8``) are
    two methods; the same budget as 2 processes x accumulation 1 instead of 1 x 2 is the same one."""
    trained = {"batch_size": 4, "grad_accum": 2, "world_size": 1, "steps": 40, "lr": 1e-4}
    _cell(tmp_path, "b8", training=trained, mtime=1_000_001)
    _cell(tmp_path, "b8-ddp", training={**trained, "grad_accum": 1, "world_size": 2}, mtime=1_000_002)
    _cell(tmp_path, "b64", training={**trained, "grad_accum": 16, "steps": 5})
    labels = sorted(c.label.split(" / ", 4)[-1] for c in lb.collect_cells([tmp_path]).cells)
    assert labels == ["grad_accum=16 / steps=5", "grad_accum=2 / steps=40"]


def test_settings_with_the_same_name_in_two_components_are_told_apart(tmp_path):
    """The retriever's model is not hidden behind the generator's."""
    _cell(tmp_path, "bge", retriever__model="bge")
    _cell(tmp_path, "contriever", retriever__model="contriever")
    labels = sorted(c.label.split(" / ")[-1] for c in lb.collect_cells([tmp_path]).cells)
    assert labels == ["model=bge", "model=contriever"]
    _cell(tmp_path, "fp16", retriever__model="bge", generator__model="other")
    labels = sorted(" / ".join(c.label.split(" / ")[-2:]) for c in lb.collect_cells([tmp_path]).cells)
    assert "generator.model=other / retriever.model=bge" in labels


def test_after_an_upgrade_the_rerun_replaces_the_old_cell(tmp_path):
    """v1 ran float32 and bfloat16; v2 reran float32 only: two columns, the float32 one from v2."""
    _cell(tmp_path, "a", value=0.1, generator__dtype="float32", versions={"lamp-harness": "1"})
    _cell(tmp_path, "b", value=0.2, generator__dtype="bfloat16", versions={"lamp-harness": "1"})
    _cell(
        tmp_path,
        "c",
        value=0.3,
        mtime=2_000_000,
        generator__dtype="float32",
        generator__new_field=1,
        versions={"lamp-harness": "2"},
    )
    kept = {c.label.split(" / ")[-1]: c.metrics[0].value for c in lb.collect_cells([tmp_path]).cells}
    assert kept == {"dtype=float32": 0.3, "dtype=bfloat16": 0.2}


def test_a_retriever_argument_gets_its_own_column(tmp_path, toys, cli):
    out = tmp_path / "runs"
    common = demo_run("--personalizer", "ipa", "--retriever", "bm25", limit=6, out=out)
    assert cli(*common)[0] == 0
    assert cli(*common, "--retriever-arg", "k1=0.5")[0] == 0
    code, board, err = cli("leaderboard", str(out))
    assert code == 0 and "same cell" not in err
    assert "ipa / bm25 / k=1 / toy-echo / k1=0.5" in board
    assert "ipa / bm25 / k=1 / toy-echo / k1=default" in board


def test_results_on_different_data_never_share_a_table(tmp_path):
    metric = [{"name": "rouge-1", "value": 0.5, "higher_is_better": True}]
    demo = write_cell(tmp_path / "a", task="lamp-7", personalizer="none", metrics=metric)
    real = write_cell(tmp_path / "b", task="lamp-7", personalizer="none", metrics=metric)
    for folder, source in ((demo, "demo:v1"), (real, "local:/home/someone/LaMP-7/user")):
        config = json.loads((folder / "config.json").read_text())
        config["data"]["source"] = source
        config["cell_id"] += source[:4]  # the runner's ids include the data fingerprint
        (folder / "config.json").write_text(json.dumps(config))
    titles = [b.title for b in lb.leaderboard([tmp_path]).blocks]
    assert titles == ["split: dev, scheme: user, data: demo:v1", "split: dev, scheme: user, data: local:user"]


def test_blocks_per_split_and_scheme(tmp_path):
    metric = [{"name": "rouge-1", "value": 0.4, "higher_is_better": True}]
    write_cell(tmp_path, task="lamp-7", personalizer="none", split="dev", scheme="time", metrics=metric)
    write_cell(tmp_path, task="lamp-7", personalizer="none", split="dev", scheme="user", metrics=metric)
    write_cell(tmp_path, task="lamp-7", personalizer="none", split="train", scheme=None, metrics=metric)
    titles = [b.title for b in lb.leaderboard([tmp_path]).blocks]
    assert titles == [
        "split: dev, scheme: time, data: fabricated",
        "split: dev, scheme: user, data: fabricated",
        "split: train, data: fabricated",
    ]


def test_missing_runs_dir_and_empty_dir_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "leaderboard", str(tmp_path / "nope"))
    assert code == 2 and "runs folder does not exist" in err
    code, _, err = run_cli(capsys, "leaderboard", str(tmp_path))
    assert code == 2 and "no finished cells" in err


def test_malformed_metrics_skips_the_cell_and_names_it(runs, capsys):
    before = len(lb.collect_cells([runs]).cells)
    bad = next(runs.rglob("metrics.json"))
    bad.write_text("{not json", encoding="utf-8")
    board = lb.leaderboard([runs])
    assert any(str(bad.parent) in note and "metrics.json is unreadable" in note for note in board.notes)
    assert len(lb.collect_cells([runs]).cells) == before - 1
    assert f"skipped {bad.parent}" in cli_ok(capsys, "leaderboard", str(runs)).err


@pytest.mark.slow
def test_plot_writes_a_valid_png_and_svg(runs, tmp_path, capsys):
    png, svg = tmp_path / "board.png", tmp_path / "board.svg"
    cli_ok(capsys, "leaderboard", str(runs), "--plot", str(png), "--reference", "pplug")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lb.plot(lb.leaderboard([runs]), svg)
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
    assert "MAE ↓" in text  # panel titles are kept as text (svg.fonttype none)
    with pytest.raises(LampError, match="png or .svg"):
        lb.plot(lb.leaderboard([runs]), tmp_path / "board.gif")


def test_the_page_chart_renderers_and_comparisons_read_the_model_never_the_reader():
    """The leaderboard package's floors: the reader fills the model; everything that shows or tests
    a board imports the model (no cycle through the reader, the way leaderboard.py and webpage.py
    once imported each other)."""
    import ast
    from pathlib import Path

    package = Path(lb.__file__).parent
    floors = ["model", "plot", "page", "render", "comparisons", "reader"]
    for index, module in enumerate(floors):
        tree = ast.parse((package / f"{module}.py").read_text(encoding="utf-8"))
        imported = {
            n.module.rsplit(".", 1)[-1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("lamp_harness.report.leaderboard.")
        }
        assert imported <= set(floors[:index]), (module, imported - set(floors[:index]))
        assert not any(
            isinstance(n, ast.ImportFrom) and n.module == "lamp_harness.report.leaderboard" for n in ast.walk(tree)
        ), module
