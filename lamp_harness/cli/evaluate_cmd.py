"""``lamp evaluate``: score predictions files in the official gold format, like the official scorer.

Two modes:

- one task: ``--golds dev_outputs.json --predictions preds.json`` (both ``{"task", "golds"}``);
- a whole submission: ``--submission DIR_OR_ZIP --golds DIR_OR_ZIP``. As in the official
  ``evaluate_all``, every ``*.json`` in the submission is read and the ``task`` field (not the file
  name) says which task it is; zips are read through a temporary folder, and entries that could
  write outside it are rejected.

Prediction ids must equal gold ids exactly (missing and extra ids are reported, one line each).
Scores come from the registered task's ``score`` (with seeded bootstrap intervals).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from lamp_harness.base.errors import lamp_error
from lamp_harness.cli.options import SEED_DEFAULT, Seed
from lamp_harness.cli.root import app


def _id_mismatch(golds: dict[str, str], predictions: dict[str, str], where: str) -> list[str]:
    """One line for gold ids without a prediction, one for predictions without a gold."""
    missing = [i for i in golds if i not in predictions]
    extra = [i for i in predictions if i not in golds]
    lines = []
    if missing:
        lines.append(
            f"{where}: {len(missing)} gold id(s) have no prediction: {_ids(missing)}. "
            "Predict every question of the split (prediction ids must equal the gold ids)."
        )
    if extra:
        lines.append(
            f"{where}: {len(extra)} prediction id(s) are not in the golds: {_ids(extra)}. "
            "Remove them, or score against the golds of the same split."
        )
    return lines


def _ids(ids: list[str], n: int = 10) -> str:
    return ", ".join(repr(i) for i in ids[:n]) + (f", ... ({len(ids) - n} more)" if len(ids) > n else "")


def _metrics_json(task, n: int, metrics: list, **extra: Any) -> dict[str, Any]:
    return {"task": task.name, "official_name": task.official_name, **extra, "n": n, "metrics": [asdict(m) for m in metrics]}


def _table(title: str, rows: list[tuple[str, Any]]):
    from rich.console import JustifyMethod
    from rich.table import Table

    table = Table(title=title)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("task", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("95% CI", "right"),
        ("n", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for task_name, m in rows:
        arrow = "↑" if m.higher_is_better else "↓"
        ci = f"[{m.ci_low:.4f}, {m.ci_high:.4f}]" if m.ci_low is not None and m.ci_high is not None else "-"
        table.add_row(task_name, f"{m.name} {arrow}", f"{m.value:.4f}", ci, str(m.n))
    return table


@app.command("evaluate")
def evaluate(
    golds: Path = typer.Option(
        ...,
        "--golds",
        help="Gold outputs: an official {split}_outputs.json, or with --submission "
        "a folder or .zip holding one per task. Example: "
        "--golds LaMP_3/dev_outputs.json",
    ),
    predictions: Path = typer.Option(
        None,
        "--predictions",
        "-p",
        help='Predictions in the same format ({"task", "golds": [{"id", '
        '"output"}]}), for one task. Example: --predictions preds.json',
    ),
    submission: Path = typer.Option(
        None,
        "--submission",
        help="A folder or .zip with one predictions file per task (file names "
        'are free: each file\'s "task" field identifies it). Example: '
        "--submission submission.zip",
    ),
    task: str = typer.Option(
        None, "--task", "-t", help='The task, e.g. --task lamp-3. [default: the golds file\'s "task" field]'
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the metrics as JSON here, e.g. --out metrics.json."),
    seed: Seed = SEED_DEFAULT,
    require_all: bool = typer.Option(
        False,
        "--require-all",
        help="With --submission: fail (exit 2) when a task of the golds has no "
        "predictions, like the leaderboard. [default: score what is there]",
    ),
    task_arg: list[str] = typer.Option(
        [],
        "--task-arg",
        help="KEY=VALUE option of the task (repeatable; a submission: "
        "NAME:KEY=VALUE for one task), e.g. --task-arg scorer=pplug: "
        "LaMP-3 scored by the PPlug paper's rule (an unparsable answer "
        "counts as its first digit, else 1) instead of LaMP's.",
    ),
) -> None:
    """Score predictions against golds with the task's official metrics and seeded bootstrap 95%
    intervals. Examples: lamp evaluate --golds dev_outputs.json --predictions preds.json --out m.json;
    lamp evaluate --submission submission.zip --golds golds.zip"""
    from rich.console import Console

    from lamp_harness.base.errors import LampError
    from lamp_harness.base.io import atomic_write_json, writable_file
    from lamp_harness.base.secrets import RedactedStream
    from lamp_harness.plugin.options import parse_kv

    if (predictions is None) == (submission is None):
        raise lamp_error(
            "pass exactly one of --predictions (one task) and --submission (all tasks)",
            fix="e.g. lamp evaluate --golds dev_outputs.json --predictions preds.json.",
        )
    if out is not None:
        writable_file(out, "--out")
    console = Console(file=RedactedStream("stdout"))  # type: ignore[arg-type]  # an IO by delegation; no line repeats a secret
    task_args = parse_kv(task_arg, "--task-arg")
    if predictions is not None:
        result, rows = _evaluate_one(golds, predictions, task, seed, task_args)
    else:
        if task is not None:
            raise lamp_error(
                '--task does not apply to --submission (each file\'s "task" field says it)',
                fix="Drop --task, or score one file with --predictions.",
            )
        result, rows = _evaluate_submission(golds, submission, seed, require_all, console, task_args)
    if rows:
        console.print(_table("lamp evaluate", rows))
    if out is not None:
        atomic_write_json(out, result)
        console.print(f"Metrics written to {out}", highlight=False)
    if result.get("failed") or (require_all and result.get("missing")):
        # A LampError (not typer.Exit) so that `main` exits with code 2.
        what = []
        if result.get("failed"):
            what.append(f"could not score {', '.join(result['failed'])} (see the errors above)")
        if require_all and result.get("missing"):
            what.append(f"no predictions for {', '.join(result['missing'])}")
        raise LampError(f"{submission}: {'; '.join(what)}")


def _with_args(task, task_args: dict[str, str], scoped: bool = False):
    """``task`` rebuilt with its ``--task-arg`` options: ``KEY=VALUE``, or ``NAME:KEY=VALUE`` for
    the task NAME only (the only form with ``scoped``, a submission of several tasks). A task that
    takes no options is a one-line error."""
    from lamp_harness.plugin.registry import host, normalize

    args = {}
    for key, value in task_args.items():
        name, _, option = key.rpartition(":")
        if not name and scoped:
            raise lamp_error(
                f"--task-arg {key}={value}: with --submission, name the task",
                fix=f"Write --task-arg TASK:{key}={value}, e.g. lamp-3:{key}={value}.",
            )
        if not name or normalize(name) == normalize(task.name):
            args[option] = value
    if not args:
        return task
    from lamp_harness.run.cells import make_task

    return make_task(host().registry, task.name, args)


def _evaluate_one(golds_path: Path, predictions_path: Path, task_name: str | None, seed: int, task_args: dict[str, str]):
    from lamp_harness.base.errors import LampError
    from lamp_harness.inputs.data import read_outputs, task_for_official_name
    from lamp_harness.plugin.registry import host

    if task_name:
        task = host().registry.create("task", task_name)
    else:
        name, _ = read_outputs(golds_path)
        task = task_for_official_name(name)
    task = _with_args(task, task_args)
    _, golds = read_outputs(golds_path, task, check_labels=True)
    _, predictions = read_outputs(predictions_path, task)
    lines = _id_mismatch(golds, predictions, str(predictions_path))
    if lines:
        for line in lines[:-1]:
            print(f"Error: {line}", file=sys.stderr)
        raise LampError(lines[-1])
    metrics = task.score(predictions, golds, seed=seed)
    if not metrics:
        raise LampError(f"task {task.name} returned no metrics")
    result = _metrics_json(
        task,
        len(golds),
        metrics,
        golds=str(golds_path),
        predictions=str(predictions_path),
        **({"task_args": task_args} if task_args else {}),
    )
    return result, [(task.name, m) for m in metrics]


def _evaluate_submission(
    golds_path: Path, submission_path: Path, seed: int, require_all: bool, console, task_args: dict[str, str]
):
    from lamp_harness.base.errors import LampError
    from lamp_harness.inputs.data import outputs_files, read_outputs, task_for_official_name
    from lamp_harness.plugin.registry import normalize

    rows: list[tuple[str, Any]] = []
    scored: dict[str, Any] = {}
    failed: list[str] = []
    with outputs_files(golds_path) as gold_files, outputs_files(submission_path) as pred_files:
        gold_by = {normalize(k): v for k, v in gold_files.items()}
        pred_by = {normalize(k): v for k, v in pred_files.items()}
        for key in sorted(gold_by, key=_natural):
            if key not in pred_by:
                continue
            gold_file, pred_file = gold_by[key], pred_by[key]
            try:
                task = _with_args(task_for_official_name(gold_file.task), task_args, scoped=True)
                _, golds = read_outputs(gold_file.path, task, check_labels=True, label=gold_file.label)
                _, predictions = read_outputs(pred_file.path, task, label=pred_file.label)
            except LampError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed.append(gold_file.task)
                continue
            lines = _id_mismatch(golds, predictions, pred_file.label)
            if lines:
                for line in lines:
                    print(f"Error: {line}", file=sys.stderr)
                failed.append(gold_file.task)
                continue
            metrics = task.score(predictions, golds, seed=seed)
            scored[gold_file.task] = _metrics_json(
                task, len(golds), metrics, golds=gold_file.label, predictions=pred_file.label
            )
            rows.extend((task.name, m) for m in metrics)
        missing = sorted((gold_by[k].task for k in gold_by if k not in pred_by), key=_natural)
        unmatched = sorted((pred_by[k].task for k in pred_by if k not in gold_by), key=_natural)
    if missing:
        level = "Error" if require_all else "Missing"
        print(
            f"{level}: {submission_path}: no predictions for {', '.join(missing)} (the golds have them; "
            f"the leaderboard requires every task).",
            file=sys.stderr,
        )
    if unmatched:
        print(f"Not scored: {submission_path}: no golds for {', '.join(unmatched)} in {golds_path}.", file=sys.stderr)
    if not scored and not failed:
        raise lamp_error(
            "no task could be scored: the submission and the golds share no task",
            where=str(submission_path),
            fix='Check the files\' "task" fields (e.g. "LaMP_3").',
        )
    result = {
        "golds": str(golds_path),
        "submission": str(submission_path),
        "tasks": scored,
        "missing": missing,
        "without_golds": unmatched,
        "failed": failed,
        **({"task_args": task_args} if task_args else {}),
    }
    return result, rows


def _natural(name: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
