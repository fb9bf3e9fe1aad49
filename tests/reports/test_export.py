"""`lamp export --submission`: official-format files per task, the zip, missing and ambiguous tasks."""

from __future__ import annotations

import json
import zipfile

import pytest
from run_folders import fabricate_runs, write_cell

from lamp_harness.base.errors import LampError
from lamp_harness.cli import main
from lamp_harness.plugin.registry import Registry
from lamp_harness.report.export import export_submission

SEVEN = [f"LaMP_{n}" for n in range(1, 8)]


class _Task:
    benchmark = "LaMP"  # a submission names the missing tasks of its benchmark

    def __init__(self, official_name: str) -> None:
        self.official_name = official_name


def toy_registry() -> Registry:
    """Seven tasks, plus a variant sharing an official name (like a superseded task version)."""
    registry = Registry()
    for n in range(1, 8):
        registry.add_task(f"lamp-{n}", lambda n=n: _Task(f"LaMP_{n}"))
    registry.add_task("lamp-2-old", lambda: _Task("LaMP_2"))
    return registry


def cli(capsys, *args):
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_selected_cells_become_gold_format_files_and_a_zip(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", split="test")
    out = tmp_path / "submission"
    result = export_submission([runs], out, split="test", select={"personalizer": "ipa", "k": "4"}, registry=toy_registry())
    assert [e.official_name for e in result.exported] == ["LaMP_1", "LaMP_3"]
    data = json.loads((out / "LaMP_3.json").read_text(encoding="utf-8"))
    assert data == {
        "task": "LaMP_3",
        "golds": [
            {"id": "lamp-3-q0", "output": "ipa-bm25-4-0"},
            {"id": "lamp-3-q1", "output": "ipa-bm25-4-1"},
        ],
    }
    with zipfile.ZipFile(result.zip_path) as archive:
        assert sorted(archive.namelist()) == ["LaMP_1.json", "LaMP_3.json"]
        assert json.loads(archive.read("LaMP_3.json")) == data
    assert result.missing == ("LaMP_2", "LaMP_4", "LaMP_5", "LaMP_6", "LaMP_7")  # of its benchmark only


def test_ambiguous_cells_are_rejected_listing_the_candidates(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", split="test")
    with pytest.raises(LampError) as info:
        export_submission([runs], tmp_path / "out", split="test", select={"personalizer": "ipa"}, registry=toy_registry())
    message = str(info.value)
    assert "\n" not in message
    assert "several candidate cells" in message and "--select" in message
    assert "'ipa / bm25 / k=1 / smollm2-135m-instruct'" in message
    assert "'ipa / bm25 / k=4 / smollm2-135m-instruct'" in message
    assert "none /" not in message  # the selection already excluded it
    assert not (tmp_path / "out").exists()  # nothing written when the choice is ambiguous


def test_tasks_sharing_an_official_name_are_ambiguous(tmp_path):
    metric = [{"name": "accuracy", "value": 0.5, "higher_is_better": True}]
    write_cell(tmp_path, task="lamp-2", personalizer="none", split="test", metrics=metric, outputs=[("a", "x")])
    write_cell(tmp_path, task="lamp-2-old", personalizer="none", split="test", metrics=metric, outputs=[("a", "y")])
    with pytest.raises(LampError, match="LaMP_2: lamp-2 .*lamp-2-old"):
        export_submission([tmp_path], tmp_path / "out", registry=toy_registry())


def test_split_and_selection_errors_say_what_exists(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", split="dev")
    with pytest.raises(LampError, match="no finished cells for split 'test' \\(splits found: dev\\)"):
        export_submission([runs], tmp_path / "out", registry=toy_registry())
    with pytest.raises(LampError, match="--select matches none"):
        export_submission([runs], tmp_path / "out", split="dev", select={"retriever": "contriever"}, registry=toy_registry())
    with pytest.raises(LampError, match="unknown key\\(s\\) colour"):
        export_submission([runs], tmp_path / "out", split="dev", select={"colour": "red"}, registry=toy_registry())


def test_select_by_cell_id_prefix_and_by_no_retriever(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", split="test")
    result = export_submission([runs], tmp_path / "a", select={"retriever": "none"}, registry=toy_registry())
    assert {e.cell.label for e in result.exported} == {"none / smollm2-135m-instruct"}
    result = export_submission([runs], tmp_path / "b", select={"cell_id": "lamp-3_ipa_bm25_k1"}, registry=toy_registry())
    assert [e.official_name for e in result.exported] == ["LaMP_3"]


def test_stale_files_from_an_earlier_export_are_reported(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", split="test")
    out = tmp_path / "out"
    out.mkdir()
    (out / "LaMP_7.json").write_text(json.dumps({"task": "LaMP_7", "golds": []}), encoding="utf-8")
    (out / "notes.json").write_text("{}", encoding="utf-8")
    result = export_submission([runs], out, select={"personalizer": "none"}, registry=toy_registry())
    assert result.stale == (out / "LaMP_7.json",)


def test_cli_reports_missing_tasks_and_round_trips_through_evaluate(tmp_path, capsys):
    """The zip is what `lamp evaluate --submission` (the official scorer's rules) accepts."""
    runs = tmp_path / "runs"
    gold_dir = tmp_path / "golds"
    gold_dir.mkdir()
    predictions = {"lamp-1": [("q1", "[1]"), ("q2", "[2]")], "lamp-3": [("r1", "4"), ("r2", "2")]}
    golds = {"lamp-1": {"q1": "[1]", "q2": "[1]"}, "lamp-3": {"r1": "5", "r2": "2"}}
    for task, outputs in predictions.items():
        write_cell(
            runs,
            task=task,
            personalizer="none",
            split="dev",
            outputs=outputs,
            metrics=[{"name": "x", "value": 0.0, "higher_is_better": True}],
        )
        official = f"LaMP_{task[-1]}"
        (gold_dir / f"{official}.json").write_text(
            json.dumps({"task": official, "golds": [{"id": i, "output": o} for i, o in golds[task].items()]})
        )
    out = tmp_path / "submission"
    code, stdout, err = cli(capsys, "export", "--submission", str(out), str(runs), "--split", "dev")
    assert code == 0, err
    assert "LaMP_1.json" in stdout and "submission.zip" in stdout
    assert "missing task(s) LaMP_2, LaMP_4, LaMP_5, LaMP_6, LaMP_7" in err

    report = tmp_path / "scores.json"
    code, _, err = cli(
        capsys,
        "evaluate",
        "--submission",
        str(out / "submission.zip"),
        "--golds",
        str(gold_dir),
        "--out",
        str(report),
    )
    assert code == 0, err
    scores = json.loads(report.read_text(encoding="utf-8"))["tasks"]
    values = {(t, m["name"]): m["value"] for t, r in scores.items() for m in r["metrics"]}
    assert values[("LaMP_1", "accuracy")] == 0.5  # one of two right
    assert values[("LaMP_3", "MAE")] == 0.5  # |4-5| and |2-2|


def test_cli_ambiguity_is_one_line_exit_2(tmp_path, capsys):
    runs = fabricate_runs(tmp_path / "runs", split="test")
    code, _, err = cli(capsys, "export", "--submission", str(tmp_path / "out"), str(runs))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "several candidate cells" in err
