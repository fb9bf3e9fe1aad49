"""``lamp evaluate``: drop-in scoring of official-format files, submissions as folders and zips."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest
from lamp_tasks import demo

from lamp_harness.cli import main
from lamp_harness.inputs.data import write_outputs


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_single_task_scores_like_the_official_scorer(tmp_path, capsys):
    golds, preds, out = tmp_path / "dev_outputs.json", tmp_path / "preds.json", tmp_path / "m.json"
    write_outputs(golds, "LaMP_3", {"1": "1", "2": "3", "3": "5", "4": "4"})
    # "x" does not parse: it counts as whichever of 1 and 5 is farther from the gold (gold 5 -> 1)
    write_outputs(preds, "LaMP_3", {"4": "4", "3": "x", "2": "3", "1": "2"})
    assert _run(["evaluate", "--golds", str(golds), "--predictions", str(preds), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "lamp-3" and result["n"] == 4  # task read from the golds file
    metrics = {m["name"]: m for m in result["metrics"]}
    mae = next(m for n, m in metrics.items() if n.lower() == "mae")
    rmse = next(m for n, m in metrics.items() if n.lower() == "rmse")
    assert mae["value"] == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert rmse["value"] == pytest.approx(math.sqrt((1 + 0 + 16 + 0) / 4))
    assert mae["higher_is_better"] is False and mae["ci_low"] <= mae["value"] <= mae["ci_high"]
    shown = capsys.readouterr().out
    assert "lamp-3" in shown and "95% CI" in shown


def test_lamp3_with_the_pplug_papers_scorer(tmp_path, capsys):
    """``--task-arg scorer=pplug``: an unparsable answer counts as its first digit, else 1.0 (the
    PPlug authors' scorer, behind the PPlug paper's numbers), not as the farther of 1 and 5."""
    golds, preds, out = tmp_path / "dev_outputs.json", tmp_path / "preds.json", tmp_path / "m.json"
    write_outputs(golds, "LaMP_3", {"1": "1", "2": "3", "3": "5", "4": "4"})
    write_outputs(preds, "LaMP_3", {"1": "I'd say 2 of 5", "2": "3", "3": "no idea", "4": " 4 "})
    argv = ["evaluate", "--golds", str(golds), "--predictions", str(preds), "--out", str(out)]
    assert _run([*argv, "--task-arg", "scorer=pplug"]) == 0
    result = json.loads(out.read_text())
    mae = next(m for m in result["metrics"] if m["name"].lower() == "mae")
    assert mae["value"] == pytest.approx((1 + 0 + 4 + 0) / 4)  # "I'd say 2 of 5" -> 2, "no idea" -> 1
    assert result["task_args"] == {"scorer": "pplug"}
    assert _run(argv) == 0  # the LaMP scorer: both unparsable answers are 4 away from their gold
    mae = next(m for m in json.loads(out.read_text())["metrics"] if m["name"].lower() == "mae")
    assert mae["value"] == pytest.approx((4 + 0 + 4 + 0) / 4)
    capsys.readouterr()
    assert _run([*argv, "--task-arg", "scorer=paper"]) == 2
    assert "scorer='paper' is not lamp or pplug" in capsys.readouterr().err
    # A submission: the option names its task (the others are scored as usual).
    for folder, outputs in (("g", {"1": "1", "2": "5"}), ("p", {"1": "maybe 2", "2": "x"})):
        write_outputs(tmp_path / folder / "LaMP_3.json", "LaMP_3", outputs)
        write_outputs(tmp_path / folder / "LaMP_7.json", "LaMP_7", {"1": "a b"})
    submission = ["evaluate", "--submission", str(tmp_path / "p"), "--golds", str(tmp_path / "g"), "--out", str(out)]
    assert _run([*submission, "--task-arg", "lamp-3:scorer=pplug"]) == 0
    mae = next(m for m in json.loads(out.read_text())["tasks"]["LaMP_3"]["metrics"] if m["name"].lower() == "mae")
    assert mae["value"] == pytest.approx((1 + 4) / 2)  # "maybe 2" -> 2, "x" -> 1.0
    assert json.loads(out.read_text())["task_args"] == {"lamp_3:scorer": "pplug"}
    capsys.readouterr()
    assert _run([*submission, "--task-arg", "scorer=pplug"]) == 2
    assert "with --submission, name the task" in capsys.readouterr().err
    write_outputs(golds, "LaMP_7", {"1": "a"})
    write_outputs(preds, "LaMP_7", {"1": "a"})
    assert _run([*argv, "--task-arg", "scorer=pplug"]) == 2
    assert "task 'lamp-7' (--task-arg): unknown argument(s) scorer. Valid keys: max_new_tokens." in capsys.readouterr().err
    write_outputs(golds, "LaMP_3", {"1": "1"})
    write_outputs(preds, "LaMP_3", {"1": "1"})
    assert _run([*argv, "--task-arg", "scorers=pplug"]) == 2
    assert (
        "task 'lamp-3' (--task-arg): unknown argument(s) scorers. Valid keys: max_new_tokens, scorer."
        in capsys.readouterr().err
    )


def test_prediction_ids_must_equal_gold_ids(tmp_path, capsys):
    golds, preds = tmp_path / "g.json", tmp_path / "p.json"
    write_outputs(golds, "LaMP_7", {"1": "a b", "2": "c d", "3": "e"})
    write_outputs(preds, "LaMP_7", {"1": "a b", "9": "x"})
    assert _run(["evaluate", "--task", "lamp-7", "--golds", str(golds), "--predictions", str(preds)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 2
    assert "2 gold id(s) have no prediction: '2', '3'" in lines[0]
    assert "1 prediction id(s) are not in the golds: '9'" in lines[1]


def test_predictions_of_another_task_are_rejected(tmp_path, capsys):
    golds, preds = tmp_path / "g.json", tmp_path / "p.json"
    write_outputs(golds, "LaMP_4", {"1": "a"})
    write_outputs(preds, "LaMP_5", {"1": "a"})
    assert _run(["evaluate", "--golds", str(golds), "--predictions", str(preds)]) == 2
    assert "the file is for LaMP_5 but the task is lamp-4" in capsys.readouterr().err


def _demo_golds(folder: Path) -> dict[str, dict]:
    """The demo's dev golds of all seven tasks, one file per task in `folder`."""
    folder.mkdir(parents=True)
    golds = {}
    for task in demo.TASKS:
        _, outputs = demo.generate(task, "dev")
        (folder / f"{task}_dev_outputs.json").write_text(json.dumps(outputs))
        golds[outputs["task"]] = outputs
    return golds


def _submission(folder: Path, golds: dict[str, dict], skip: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True)
    for name, outputs in golds.items():
        if name not in skip:
            # file names are free: the "task" field identifies each file
            (folder / f"preds_{name.lower()}.json").write_text(json.dumps(outputs))


def test_submission_folder_scores_all_seven_tasks(tmp_path, capsys):
    golds = _demo_golds(tmp_path / "golds")
    _submission(tmp_path / "sub", golds)
    out = tmp_path / "all.json"
    assert (
        _run(["evaluate", "--submission", str(tmp_path / "sub"), "--golds", str(tmp_path / "golds"), "--out", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert sorted(result["tasks"]) == [f"LaMP_{n}" for n in range(1, 8)]
    assert result["missing"] == [] and result["failed"] == []
    for name, scored in result["tasks"].items():
        for metric in scored["metrics"]:
            if "f1" in metric["name"].lower():
                continue  # macro-F1 over ALL labels: tags absent from the golds score 0 (official)
            perfect = 1.0 if metric["higher_is_better"] else 0.0
            assert metric["value"] == pytest.approx(perfect), (name, metric)


def test_submission_zip_with_missing_task(tmp_path, capsys):
    golds = _demo_golds(tmp_path / "golds")
    _submission(tmp_path / "sub", golds, skip=("LaMP_6",))
    archive = tmp_path / "submission.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "sub").iterdir()):
            zf.write(path, arcname=f"results/{path.name}")
    golds_zip = tmp_path / "golds.zip"
    with zipfile.ZipFile(golds_zip, "w") as zf:
        for path in sorted((tmp_path / "golds").iterdir()):
            zf.write(path, arcname=path.name)
    out = tmp_path / "r.json"
    assert _run(["evaluate", "--submission", str(archive), "--golds", str(golds_zip), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["missing"] == ["LaMP_6"] and len(result["tasks"]) == 6
    assert "no predictions for LaMP_6" in capsys.readouterr().err
    # the leaderboard's rule: every task is required
    assert _run(["evaluate", "--submission", str(archive), "--golds", str(golds_zip), "--require-all"]) == 2


def test_submission_with_wrong_ids_reports_the_task_and_exits_2(tmp_path, capsys):
    golds = _demo_golds(tmp_path / "golds")
    _submission(tmp_path / "sub", golds)
    broken = dict(golds["LaMP_3"], golds=golds["LaMP_3"]["golds"][1:])
    (tmp_path / "sub" / "preds_lamp_3.json").write_text(json.dumps(broken))
    out = tmp_path / "r.json"
    assert (
        _run(["evaluate", "--submission", str(tmp_path / "sub"), "--golds", str(tmp_path / "golds"), "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "preds_lamp_3.json: 1 gold id(s) have no prediction" in err
    assert json.loads(out.read_text())["failed"] == ["LaMP_3"]


@pytest.mark.parametrize("entry", ["../evil.json", "/abs/evil.json", "ok/../../evil.json"])
def test_zip_slip_is_rejected_before_extracting_anything(tmp_path, capsys, entry):
    golds = _demo_golds(tmp_path / "golds")
    archive = tmp_path / "inner" / "sub.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("LaMP_1.json", json.dumps(golds["LaMP_1"]))
        zf.writestr(zipfile.ZipInfo(entry), json.dumps(golds["LaMP_2"]))
    assert _run(["evaluate", "--submission", str(archive), "--golds", str(tmp_path / "golds")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and "has an absolute path or '..'" in err[0] and entry in err[0]
    assert not (tmp_path / "evil.json").exists() and not (tmp_path / "inner" / "evil.json").exists()
    assert not Path("/abs/evil.json").exists()


def test_two_files_for_one_task_are_rejected(tmp_path, capsys):
    golds = _demo_golds(tmp_path / "golds")
    _submission(tmp_path / "sub", golds)
    (tmp_path / "sub" / "again.json").write_text(json.dumps(golds["LaMP_4"]))
    assert _run(["evaluate", "--submission", str(tmp_path / "sub"), "--golds", str(tmp_path / "golds")]) == 2
    assert "two files for LaMP_4" in capsys.readouterr().err


def test_malformed_member_of_a_zip_is_named_by_its_zip_path(tmp_path, capsys):
    golds = _demo_golds(tmp_path / "golds")
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("LaMP_1.json", json.dumps(golds["LaMP_1"]))
        zf.writestr("bad/LaMP_2.json", '{"task": "LaMP_2", "golds": [')
    assert _run(["evaluate", "--submission", str(archive), "--golds", str(tmp_path / "golds")]) == 2
    err = capsys.readouterr().err
    assert f"{archive}!bad/LaMP_2.json: malformed JSON at line 1" in err
    assert "lamp-zip-" not in err  # never the temporary path


def test_exactly_one_mode_is_required(tmp_path, capsys):
    assert _run(["evaluate", "--golds", str(tmp_path)]) == 2
    assert "exactly one of --predictions" in capsys.readouterr().err
