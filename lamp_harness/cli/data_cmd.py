"""``lamp data``: download the official files, validate local files, and show what is cached."""

from __future__ import annotations

from pathlib import Path

import typer

from lamp_harness.base.errors import lamp_error
from lamp_harness.cli.options import SCHEME_DEFAULT, DataSource, Scheme
from lamp_harness.cli.root import app

data_app = typer.Typer(
    help="Get and check LaMP data: download official splits into the cache, validate files, show what is available.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

_SHOW = 20


def _context():
    from lamp_harness.base.io import lamp_home
    from lamp_harness.plugin.contracts import RunContext

    return RunContext(lamp_home=lamp_home())


def _tasks(value: str) -> list:
    from lamp_harness.plugin.registry import host

    registry = host().registry
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        names = registry.names("task")
    if not names:
        raise lamp_error("--task is empty", fix="Pass e.g. --task lamp-4 or --task lamp-1,lamp-3.")
    return [registry.create("task", n) for n in names]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@data_app.command("download")
def download(
    task: str = typer.Option(
        ...,
        "--task",
        "-t",
        help="Task(s) to download, comma-separated, or 'all'. Example: --task lamp-4 or --task lamp-1,lamp-3.",
    ),
    scheme: Scheme = SCHEME_DEFAULT,
    split: str = typer.Option(
        "train,dev", "--split", help="Split(s), comma-separated: train, dev, test (test has no golds). [default: train,dev]"
    ),
    data: DataSource = None,
    force: bool = typer.Option(False, "--force", help="Download again even when the cache has the files."),
) -> None:
    """Download splits into the cache ($LAMP_HOME/data/lamp/{scheme}/{task}/), resuming interrupted
    downloads. The base URL can be overridden with LAMP_DATA_URL. Example:
    lamp data download --task lamp-4 --scheme time --split train,dev"""
    from rich.console import Console
    from rich.table import Table

    from lamp_harness.base.errors import LampError
    from lamp_harness.inputs.data import check_scheme, check_split_name, get_source

    scheme = check_scheme(scheme)
    splits = [check_split_name(s.strip()) for s in split.split(",") if s.strip()]
    context = _context()
    tasks = _tasks(task)
    sources = {t.name: get_source(data or t.data_source or "lamp", context) for t in tasks}
    names = sorted({source.name for source in sources.values()})
    many = len(tasks) > 1
    console = Console()
    table = Table(title=f"{', '.join(names)} data ({scheme}-based split)")
    for column in ("task", "split", "file", "size", "folder"):
        table.add_column(column, overflow="fold")
    for t in tasks:
        source = sources[t.name]
        for s in splits:
            try:
                files = source.fetch(t, s, scheme, force=force)
            except LampError as exc:
                if not many:
                    raise
                console.print(f"[yellow]skipped[/] {t.name} {s}: {exc}", soft_wrap=True)
                continue
            for path in (files.questions, files.outputs):
                if path is not None:
                    table.add_row(t.name, s, path.name, _size(path.stat().st_size), str(path.parent))
    console.print(table)


def _pairs(path: Path) -> list[tuple[str, Path | None, Path | None]]:
    """``(label, questions, outputs)`` to validate for PATH (a file or a folder)."""
    if path.is_file():
        return [(path.name, path, None)]
    if not path.is_dir():
        raise lamp_error(
            "does not exist", where=str(path), fix="Pass a questions file, an outputs file, or a folder holding them."
        )
    prefixes: dict[str, list[Path | None]] = {}
    for file in sorted(path.glob("*.json")):
        for kind, suffix in ((0, "_questions.json"), (1, "_outputs.json")):
            if file.name.endswith(suffix):
                prefixes.setdefault(file.name[: -len(suffix)], [None, None])[kind] = file
    if not prefixes:
        raise lamp_error(
            "holds no *_questions.json or *_outputs.json file",
            where=str(path),
            fix="Pass the folder of one split (e.g. dev_questions.json, dev_outputs.json).",
        )
    return [(prefix, q, o) for prefix, (q, o) in sorted(prefixes.items())]


def _infer_task(pairs: list[tuple[str, Path | None, Path | None]], path: Path):
    """The task named by an outputs file's ``task`` field (``LaMP_5`` -> ``lamp-5``); a questions
    file's first profile item tells apart tasks that share an official name."""
    import json

    from lamp_harness.inputs.data import task_for_official_name

    name, sample = None, None
    for _, questions, outputs in pairs:
        for candidate in (outputs, questions):
            if candidate is None:
                continue
            try:
                data = json.loads(candidate.read_text("utf-8-sig"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("task"), str) and name is None:
                name = data["task"]
            elif (
                isinstance(data, list)
                and data
                and isinstance(data[0], dict)
                and isinstance(data[0].get("profile"), list)
                and data[0]["profile"]
                and isinstance(data[0]["profile"][0], dict)
                and sample is None
            ):
                sample = data[0]["profile"][0]
    if name is None:
        raise lamp_error(
            "cannot tell which task these files belong to", where=str(path), fix="Pass --task, e.g. --task lamp-5."
        )
    return task_for_official_name(name, sample_item=sample)


def _is_outputs_file(path: Path) -> bool:
    """Whether a single file is checked as an outputs file: by its official name, else by its
    top level (an object with ``task`` or ``golds``)."""
    import json

    if path.name.endswith("_outputs.json") or path.name.endswith("_questions.json"):
        return path.name.endswith("_outputs.json")
    try:
        top = json.loads(path.read_text("utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(top, dict) and ("task" in top or "golds" in top)


@data_app.command("validate")
def validate(
    path: Path = typer.Argument(
        ...,
        help="A {split}_questions.json or {split}_outputs.json file, or a "
        "folder holding them (every split found is checked, questions against "
        "golds).",
    ),
    task: str = typer.Option(
        None,
        "--task",
        "-t",
        help='The task the files are for, e.g. --task lamp-5. [default: read from the outputs file\'s "task" field]',
    ),
    show: int = typer.Option(_SHOW, "--show", min=1, help=f"How many problems to list per split. [default: {_SHOW}]"),
) -> None:
    """Check files against the official LaMP format and the task: JSON syntax, shape, required and
    typed fields, duplicate ids, questions without golds, labels. Prints OK with counts, or each
    problem on one line (file, record, field, what to do) and exits with code 2. Example:
    lamp data validate ./LaMP_5/dev --task lamp-5"""
    import sys

    from rich.console import Console

    from lamp_harness.base.errors import LampError
    from lamp_harness.inputs.data import validate_split
    from lamp_harness.plugin.registry import host

    pairs = _pairs(path)
    if path.is_file():
        pairs = [(path.name, None, path) if _is_outputs_file(path) else (path.name, path, None)]
    t = host().registry.create("task", task) if task else _infer_task(pairs, path)
    console = Console()
    reports = [(label, questions, outputs, validate_split(t, questions, outputs)) for label, questions, outputs in pairs]
    bad = [r for *_, r in reports if not r.ok]
    if len(bad) == 1 and bad[0].problem_count == 1 and len(pairs) == 1:
        raise LampError(bad[0].problems[0])  # a single problem: the one line says it all
    total = 0
    for label, questions, outputs, report in reports:
        if report.ok:
            parts = []
            if questions is not None:
                p = report.profile
                parts.append(
                    f"{report.questions} questions, profiles {p.min}-{p.max} items (mean {p.mean:.1f}, median {p.median:g})"
                )
            if outputs is not None:
                parts.append(f"{report.golds} golds ({report.official_name})")
            console.print(f"[green]OK[/] {t.name} {label}: {'; '.join(parts)}", soft_wrap=True, highlight=False)
            continue
        total += report.problem_count
        for line in report.problems[: max(show, 1)]:
            print(f"Error: {line}", file=sys.stderr)
        hidden = report.problem_count - min(len(report.problems), max(show, 1))
        if hidden > 0:
            print(f"... and {hidden} more problem(s) in {label} (use --show N to list more)", file=sys.stderr)
    if total:
        # A LampError (not typer.Exit) so that `main` exits with code 2.
        raise LampError(f"{total} problem(s) found in {path} for task {t.name}")


@data_app.command("info")
def info(
    task: str = typer.Argument(
        None,
        help="A task for details (files, sizes, profile-length statistics), "
        "e.g. lamp-7. [default: an overview of every task]",
    ),
) -> None:
    """Show the data sources and which splits are on this machine (official cache, demo). With a task:
    every cached split's files, sizes, question counts and profile lengths, plus notes (e.g. how to
    provide LaMP-6, which is not public). Example: lamp data info lamp-6"""
    from rich.console import Console
    from rich.table import Table

    from lamp_harness.inputs.data import get_source, validate_split
    from lamp_harness.plugin.registry import host

    registry = host().registry
    context = _context()
    console = Console()
    sources = []
    for component in registry.components("data_source"):
        try:
            sources.append(get_source(component.name, context))
        except Exception as exc:  # a broken third-party source must not hide the others
            console.print(f"[red]data source {component.name} failed to load[/]: {exc}", soft_wrap=True)
    if task is None:
        table = Table(title="data sources")
        for column in ("name", "provided by", "summary"):
            table.add_column(column, overflow="fold")
        for component in registry.components("data_source"):
            table.add_row(component.name, component.provider, component.summary)
        console.print(table)
        overview = Table(title="splits on this machine")
        overview.add_column("task")
        for source in sources:
            overview.add_column(source.name)
        for name in registry.names("task"):
            t = registry.create("task", name)
            cells = []
            for source in sources:
                found = source.cached(t)
                cells.append(", ".join(f"{scheme}:{split}" for scheme, split, _ in found) or "-")
            overview.add_row(name, *cells)
        console.print(overview)
        console.print("Details of one task: lamp data info TASK. Local files: --data-dir DIR.")
        return
    t = registry.create("task", task)
    console.print(
        f"[bold]{t.name}[/] ({t.official_name}, {t.kind}); profile fields: "
        f"{', '.join(t.profile_fields)}" + (f"; {len(t.labels)} labels" if t.labels else ""),
        highlight=False,
    )
    table = Table(title=f"{t.name} splits on this machine")
    for column in ("source", "scheme", "split", "size", "questions", "golds", "profile min/mean/median/max", "status"):
        table.add_column(column, overflow="fold")
    rows = 0
    for source in sources:
        for note in source.notes(t):
            console.print(f"[cyan]{source.name}[/]: {note}", soft_wrap=True, highlight=False)
        for scheme, split, files in source.cached(t):
            report = validate_split(t, files.questions, files.outputs)
            size = sum(p.stat().st_size for p in (files.questions, files.outputs) if p is not None)
            p = report.profile
            status = (
                "ok"
                if report.ok
                else f"{report.problem_count} problem(s): lamp data validate {files.questions.parent} --task {t.name}"
            )
            table.add_row(
                source.name,
                scheme,
                split,
                _size(size),
                str(report.questions),
                str(report.golds) if files.outputs else "withheld",
                f"{p.min}/{p.mean:.1f}/{p.median:g}/{p.max}",
                status,
            )
            rows += 1
    if rows:
        console.print(table)
    else:
        console.print(
            f"No {t.name} split is on this machine yet (see the notes above): run with "
            f"--data-dir DIR or --data demo, or fetch it with lamp data download --task {t.name} "
            "where the server has it.",
            highlight=False,
        )
