"""Loading and validating LaMP data files, and the data-source contract.

A split of a task is two files in the official format, as the LaMP benchmark distributes them::

    {split}_questions.json   [{"id": str, "input": str, "profile": [{"id": str, ...fields}]}]
    {split}_outputs.json     {"task": "LaMP_N", "golds": [{"id": str, "output": str}]}

Every problem a user can cause (malformed JSON, a wrong shape, a missing or wrongly typed field,
duplicate ids, questions without golds, an outputs file of another task, a label outside the
task's label set) becomes ONE line naming the file, the record (index and id), the field, and
what to do. :func:`validate_split` collects all problems of a split (``lamp data validate``);
:func:`load_split` raises the first one as a :class:`~lamp_harness.base.errors.LampError`.

Where the files come from is a :class:`DataSource`'s business (a local folder, the official
server through a local cache, the synthetic demo). :func:`resolve_dataset` is what the runner
calls. This module knows no concrete task: everything task-specific comes from the
:class:`~lamp_harness.plugin.contracts.Task` (``official_name``, ``profile_fields``, ``validate_gold``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import statistics
import tempfile
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.base.io import broken_link
from lamp_harness.plugin.contracts import (  # the split vocabulary lives with Dataset, below the cells module
    SCHEME_ALIASES,  # noqa: F401  (re-exported: data's names)
    SCHEMES,
    SPLIT_ALIASES,  # noqa: F401
    SPLITS,  # noqa: F401
    Dataset,
    Example,
    ProfileItem,
    RunContext,
    Task,
    check_scheme,
    check_split_name,
)
from lamp_harness.plugin.registry import normalize

DEFAULT_SOURCE = "lamp"
MAX_PROBLEMS = 200
"""How many problem lines a validation keeps (all are counted)."""

_SCALAR = (str, int, float)


# ---------------------------------------------------------------------------------------------
# Files of a split and the data-source contract
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitFiles:
    """Where one split of one task lies on disk. ``outputs`` is ``None`` when golds are withheld
    (the official test split) or absent. ``source`` is the label recorded in ``config.json``."""

    questions: Path
    outputs: Path | None
    source: str


def split_file_names(split: str) -> tuple[str, str]:
    """The official file names of a split: ``({split}_questions.json, {split}_outputs.json)``."""
    return f"{split}_questions.json", f"{split}_outputs.json"


class DataSource(ABC):
    """Where the files of a task's split come from (official server, demo generator, a mirror...).

    Registered with ``registry.add_data_source(name, Factory)``; the factory is called as
    ``Factory(context: RunContext)``. Sources must be cheap to construct: network or generation
    work happens in :meth:`locate`.
    """

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]] = SCHEMES
    """The split schemes the source offers (``user``: user-based, ``time``: time-based)."""
    description: ClassVar[str] = ""
    """What the data is, in a few words, for the header of every leaderboard of results on it
    (``"synthetic data in LaMP's format, not the benchmark"``); empty: nothing is said."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    @abstractmethod
    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        """The files of ``task``'s ``split``, fetching or generating them when allowed
        (``download``). A one-line :class:`LampError` when they cannot be had, naming the
        alternatives (``--data-dir``, ``--data demo``)."""

    def fetch(self, task: Task, split: str, scheme: str = "user", *, force: bool = False) -> SplitFiles:
        """Make a split available on this machine (``lamp data download``); ``force`` fetches it
        again. Default: :meth:`locate` with downloads allowed."""
        return self.locate(task, split, scheme, download=True)

    def cached(self, task: Task) -> list[tuple[str, str, SplitFiles]]:
        """``(scheme, split, files)`` for every split already on this machine (no network)."""
        return []

    def notes(self, task: Task) -> list[str]:
        """Extra facts for ``lamp data info`` (e.g. that a task's data is not public)."""
        return []

    def from_folder(self, task: Task, folder: Path, split: str, scheme: str = "user") -> SplitFiles | None:
        """For a task whose data comes in a layout of its own: the split's files from ``folder``
        (``--data-dir``) in that layout, converted when needed. ``None`` (the default): the folder
        holds the harness's ``{split}_questions.json`` / ``{split}_outputs.json``."""
        return None


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileStats:
    """Profile-length statistics of a questions file."""

    questions: int
    items: int
    min: int
    max: int
    mean: float
    median: float

    @classmethod
    def of(cls, sizes: Sequence[int]) -> ProfileStats:
        """Count, mean, median, min and max of profile ``sizes``."""
        if not sizes:
            return cls(0, 0, 0, 0, 0.0, 0.0)
        return cls(len(sizes), sum(sizes), min(sizes), max(sizes), sum(sizes) / len(sizes), float(statistics.median(sizes)))


@dataclass(frozen=True)
class ValidationReport:
    """Everything :func:`validate_split` found: counts, checksums and one-line problems."""

    task: str
    files: tuple[Path, ...]
    questions: int
    golds: int
    problems: tuple[str, ...]
    problem_count: int
    profile: ProfileStats
    checksums: Mapping[str, str] = field(default_factory=dict)
    official_name: str | None = None
    """The ``task`` field of the outputs file, when one was read."""

    @property
    def ok(self) -> bool:
        """Whether the split has no problem."""
        return self.problem_count == 0

    def first_error(self, hint: str = "") -> LampError:
        """The first problem as a one-line error, counting the others."""
        text = self.problems[0]
        if self.problem_count > 1:
            more = self.problem_count - 1
            text += f" ({more} more problem{'s' if more > 1 else ''} in these files{hint})"
        return LampError(text)


class _Problems:
    """Collects one-line problems of a file (keeps the first ``MAX_PROBLEMS``, counts all)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def add(
        self,
        path: Path,
        what: str,
        *,
        index: int | None = None,
        rid: Any = None,
        field_name: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.count += 1
        if len(self.lines) < MAX_PROBLEMS:
            self.lines.append(str(lamp_error(what, where=_where(path, index, rid, field_name), fix=fix)))


def _where(path: Path, index: int | None, rid: Any, field_name: str | None) -> str:
    parts = [str(path)]
    if index is not None:
        record = f"record {index}"
        if isinstance(rid, str):
            record += f" (id {rid!r})"
        parts.append(record)
    if field_name:
        parts.append(f"field {field_name!r}")
    return ", ".join(parts)


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def read_json(path: Path) -> tuple[Any, str]:
    """Parse a JSON file; returns ``(object, sha256)``. Missing, unreadable, non-UTF-8, empty and
    malformed files are one-line errors (malformed: with line and column)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else (broken_link(path) or "does not exist")
        raise lamp_error(
            what, where=str(path), fix="Check the path (files are named {split}_questions.json and {split}_outputs.json)."
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise lamp_error(
            f"cannot be read ({exc.strerror or exc})", where=str(path), fix="Check the file's permissions."
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise lamp_error(
            f"is not UTF-8 text (bad byte at offset {exc.start})", where=str(path), fix="Save the file as UTF-8 JSON."
        ) from None
    if not text.strip():
        raise lamp_error("is empty", where=str(path), fix="Download or write the file again (an interrupted copy?).")
    try:
        return json.loads(text), digest
    except json.JSONDecodeError as exc:
        lead = text.lstrip()[:1]
        fix = (
            "This looks like an HTML page (an error page saved instead of the data?): download the file again."
            if lead == "<"
            else "Fix the JSON at that position (a truncated or hand-edited file?), or download it again."
        )
        raise lamp_error(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", where=str(path), fix=fix
        ) from None


def _check_questions(task: Task, path: Path, data: Any, problems: _Problems) -> tuple[list[Example], list[int]]:
    """Examples (without golds) and profile sizes; problems are recorded, bad records skipped."""
    if not isinstance(data, list):
        hint = (
            "This is an outputs file ({'task', 'golds'}); pass the questions file."
            if isinstance(data, dict) and "golds" in data
            else 'A questions file is a JSON list of {"id", "input", "profile"} objects.'
        )
        problems.add(path, f"expected a JSON list of questions at the top level, found {_type_name(data)}", fix=hint)
        return [], []
    if not data:
        problems.add(path, "holds no questions (an empty list)", fix="Use a complete {split}_questions.json file.")
    examples: list[Example] = []
    sizes: list[int] = []
    seen: dict[str, int] = {}
    required = tuple(task.profile_fields)
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            problems.add(
                path,
                f"a question must be an object, found {_type_name(record)}",
                index=index,
                fix='Each question is {"id": str, "input": str, "profile": [...]}.',
            )
            continue
        rid = record.get("id")
        ok = True
        if "id" not in record:
            problems.add(path, "missing", index=index, field_name="id", fix="Give every question a unique string id.")
            ok = False
        elif not isinstance(rid, str):
            problems.add(
                path,
                f"must be a string, found {_type_name(rid)}",
                index=index,
                field_name="id",
                fix=f'Write the id in quotes, e.g. "{rid}".',
            )
            ok = False
        elif rid in seen:
            problems.add(
                path,
                f"duplicate question id (also record {seen[rid]})",
                index=index,
                rid=rid,
                field_name="id",
                fix="Question ids must be unique within a file.",
            )
            ok = False
        else:
            seen[rid] = index
        text = record.get("input")
        if "input" not in record:
            problems.add(
                path, "missing", index=index, rid=rid, field_name="input", fix="Every question needs the task's input text."
            )
            ok = False
        elif not isinstance(text, str):
            problems.add(
                path,
                f"must be a string, found {_type_name(text)}",
                index=index,
                rid=rid,
                field_name="input",
                fix="Write the input as a JSON string.",
            )
            ok = False
        elif not text.strip():
            problems.add(
                path, "is empty", index=index, rid=rid, field_name="input", fix="Every question needs the task's input text."
            )
            ok = False
        profile = record.get("profile")
        if "profile" not in record:
            problems.add(
                path,
                "missing",
                index=index,
                rid=rid,
                field_name="profile",
                fix="Every question needs the user's profile: a list of items.",
            )
            continue
        if not isinstance(profile, list):
            problems.add(
                path,
                f"must be a list of items, found {_type_name(profile)}",
                index=index,
                rid=rid,
                field_name="profile",
                fix="Write the profile as a JSON list of objects.",
            )
            continue
        if not profile:
            problems.add(
                path,
                "is empty",
                index=index,
                rid=rid,
                field_name="profile",
                fix="Personalization needs at least one profile item; drop the question or add the user's items.",
            )
            continue
        items: list[ProfileItem] = []
        # Item problems are grouped per record and field, so that a file of another task gives one
        # line per question instead of one per item.
        item_problems: dict[tuple[str, str, str], list[int]] = {}
        for position, item in enumerate(profile):
            bad = _item_problems(item, required, task.name)
            if bad:
                for key in bad:
                    item_problems.setdefault(key, []).append(position)
                continue
            fields = {k: v for k, v in item.items() if k != "id"}
            items.append(ProfileItem(id=item.get("id", str(position)), position=position, fields=fields))
        for (name, what, fix), positions in item_problems.items():
            ok = False
            if len(positions) == 1:
                field_name = f"profile[{positions[0]}]{name}"
            else:
                field_name = f"profile[*]{name}"
                shown = ", ".join(str(p) for p in positions[:5]) + (", ..." if len(positions) > 5 else "")
                what = f"{what} in {len(positions)} of {len(profile)} items (positions {shown})"
            problems.add(path, what, index=index, rid=rid, field_name=field_name, fix=fix)
        sizes.append(len(profile))
        if ok and isinstance(rid, str) and isinstance(text, str):  # ok: both were checked above
            examples.append(Example(id=rid, input=text, profile=tuple(items)))
    return examples, sizes


def _item_problems(item: Any, required: Sequence[str], task_name: str) -> list[tuple[str, str, str]]:
    """``(field suffix, what, fix)`` for each problem of one profile item."""
    if not isinstance(item, dict):
        return [
            (
                "",
                f"a profile item must be an object, found {_type_name(item)}",
                f"Each item is an object with {', '.join(required)}.",
            )
        ]
    found = []
    if "id" in item and not isinstance(item["id"], str):
        found.append(
            (".id", f"must be a string, found {_type_name(item['id'])}", "Write item ids in quotes, or leave them out.")
        )
    for name in required:
        if name not in item:
            found.append(
                (
                    f".{name}",
                    "missing",
                    f"Every {task_name} profile item needs {', '.join(required)} (is this file for another task?).",
                )
            )
        elif not isinstance(item[name], _SCALAR) or isinstance(item[name], bool):
            found.append(
                (f".{name}", f"must be a string, found {_type_name(item[name])}", "Write the field as a JSON string.")
            )
    date = item.get("date")
    if date is not None and (not isinstance(date, _SCALAR) or isinstance(date, bool)):
        found.append((".date", f"must be a string, found {_type_name(date)}", "Write dates as strings, or leave them out."))
    return found


def _check_outputs(
    task: Task | None, path: Path, data: Any, problems: _Problems, *, check_labels: bool
) -> tuple[str | None, dict[str, str]]:
    """``(task field, {id: output})``; problems are recorded, bad records skipped."""
    if not isinstance(data, dict):
        hint = (
            "This is a questions file; pass the outputs file ({split}_outputs.json)."
            if isinstance(data, list)
            else 'An outputs file is {"task": "LaMP_N", "golds": [{"id", "output"}]}.'
        )
        problems.add(path, f"expected a JSON object with 'task' and 'golds', found {_type_name(data)}", fix=hint)
        return None, {}
    name = data.get("task")
    expected = task.official_name if task is not None else None
    if "task" not in data:
        problems.add(path, "missing", field_name="task", fix=f'Add "task": "{expected or "LaMP_N"}" at the top level.')
        name = None
    elif not isinstance(name, str):
        problems.add(
            path,
            f"must be a string, found {_type_name(name)}",
            field_name="task",
            fix=f'Write e.g. "task": "{expected or "LaMP_N"}".',
        )
        name = None
    elif task is not None and normalize(name) != normalize(task.official_name):
        problems.add(
            path,
            f"the file is for {name} but the task is {task.name} ({task.official_name})",
            field_name="task",
            fix=f"Pass --task {normalize(name)}, or use the {task.official_name} files.",
        )
    golds = data.get("golds")
    if "golds" not in data:
        problems.add(path, "missing", field_name="golds", fix='Add "golds": [{"id": ..., "output": ...}] at the top level.')
        return name, {}
    if not isinstance(golds, list):
        problems.add(
            path,
            f"must be a list, found {_type_name(golds)}",
            field_name="golds",
            fix='Write golds as a JSON list of {"id", "output"} objects.',
        )
        return name, {}
    if not golds:
        problems.add(
            path, "is an empty list", field_name="golds", fix="Use a complete outputs file (one entry per question)."
        )
    outputs: dict[str, str] = {}
    seen: dict[str, int] = {}
    for index, record in enumerate(golds):
        where = f"golds[{index}]"
        if not isinstance(record, dict):
            problems.add(
                path,
                f"an entry must be an object, found {_type_name(record)}",
                field_name=where,
                fix='Each entry is {"id": str, "output": str}.',
            )
            continue
        rid = record.get("id")
        if "id" not in record:
            problems.add(
                path, "missing", index=index, field_name=f"{where}.id", fix="Give every entry the id of its question."
            )
            continue
        if not isinstance(rid, str):
            problems.add(
                path,
                f"must be a string, found {_type_name(rid)}",
                index=index,
                field_name=f"{where}.id",
                fix=f'Write the id in quotes, e.g. "{rid}".',
            )
            continue
        if rid in seen:
            problems.add(
                path,
                f"duplicate id (also golds[{seen[rid]}])",
                index=index,
                rid=rid,
                field_name=f"{where}.id",
                fix="Keep exactly one entry per question id.",
            )
            continue
        seen[rid] = index
        output = record.get("output")
        if "output" not in record:
            problems.add(
                path,
                "missing",
                index=index,
                rid=rid,
                field_name=f"{where}.output",
                fix="Every entry needs an output string.",
            )
            continue
        if not isinstance(output, str):
            problems.add(
                path,
                f"must be a string, found {_type_name(output)}",
                index=index,
                rid=rid,
                field_name=f"{where}.output",
                fix=f'Write the output in quotes, e.g. "{output}".',
            )
            continue
        if check_labels and task is not None:
            message = task.validate_gold(output)
            if message:
                problems.add(
                    path,
                    message,
                    index=index,
                    rid=rid,
                    field_name=f"{where}.output",
                    fix=f"Is this the {task.official_name} outputs file of the right task ({task.name})?",
                )
                continue
        outputs[rid] = output
    return name, outputs


def _cross_check(
    questions_path: Path, outputs_path: Path, question_ids: Iterable[str], gold_ids: Iterable[str], problems: _Problems
) -> None:
    questions = list(question_ids)
    golds = set(gold_ids)
    qset = set(questions)
    without = [q for q in questions if q not in golds]
    orphans = sorted(g for g in golds if g not in qset)
    if without:
        problems.add(
            outputs_path,
            f"{len(without)} question id(s) of {questions_path.name} have no gold (e.g. {_sample(without)})",
            fix="Use the outputs file of the same split, or drop those questions.",
        )
    if orphans:
        problems.add(
            outputs_path,
            f"{len(orphans)} gold id(s) match no question in {questions_path.name} (e.g. {_sample(orphans)})",
            fix="Use the questions file of the same split, or drop those golds.",
        )


def _sample(ids: Sequence[str], n: int = 5) -> str:
    return ", ".join(repr(i) for i in ids[:n]) + (", ..." if len(ids) > n else "")


def _read_split(
    task: Task, questions_path: Path | None, outputs_path: Path | None
) -> tuple[list[Example], dict[str, str] | None, ValidationReport]:
    problems = _Problems()
    checksums: dict[str, str] = {}
    examples: list[Example] = []
    sizes: list[int] = []
    question_ids: list[str] = []
    golds: dict[str, str] | None = None
    official: str | None = None
    questions_ok = False  # cross-check ids only against a questions file of the right shape
    files = tuple(p for p in (questions_path, outputs_path) if p is not None)
    if questions_path is not None:
        data, digest = _read_or_record(questions_path, problems)
        if digest is not None:
            checksums[Path(questions_path).name] = digest
            examples, sizes = _check_questions(task, Path(questions_path), data, problems)
            question_ids = _ids(data)
            questions_ok = isinstance(data, list)
    if outputs_path is not None:
        data, digest = _read_or_record(outputs_path, problems)
        if digest is not None:
            checksums[Path(outputs_path).name] = digest
            official, golds = _check_outputs(task, Path(outputs_path), data, problems, check_labels=True)
            if questions_ok and questions_path is not None:
                _cross_check(
                    Path(questions_path),
                    Path(outputs_path),
                    question_ids,
                    _ids(data.get("golds") if isinstance(data, dict) else None),
                    problems,
                )
    report = ValidationReport(
        task=task.name,
        files=files,
        questions=len(question_ids),
        golds=len(golds or {}),
        problems=tuple(problems.lines),
        problem_count=problems.count,
        profile=ProfileStats.of(sizes),
        checksums=checksums,
        official_name=official,
    )
    return examples, golds, report


def _read_or_record(path: Path, problems: _Problems) -> tuple[Any, str | None]:
    try:
        return read_json(path)
    except LampError as exc:
        problems.count += 1
        problems.lines.append(str(exc))
        return None, None


def _ids(records: Any) -> list[str]:
    if not isinstance(records, list):
        return []
    return [r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), str)]


def validate_split(task: Task, questions_path: Path | None, outputs_path: Path | None = None) -> ValidationReport:
    """Check a split's files against the official format and ``task``; collects every problem
    (the first :data:`MAX_PROBLEMS` as one-line messages). Never raises for bad data."""
    if questions_path is None and outputs_path is None:
        raise ValueError("validate_split needs a questions file, an outputs file, or both")
    return _read_split(task, questions_path, outputs_path)[2]


def load_split(task: Task, questions_path: Path, outputs_path: Path | None, *, split: str, source: str) -> Dataset:
    """Read ``{split}_questions.json`` (and ``{split}_outputs.json`` when given) into a
    :class:`Dataset` of frozen :class:`Example` objects with golds attached.

    Raises the first problem as a one-line :class:`LampError` (with the count of the others);
    ``lamp data validate`` lists them all. ``Dataset.checksums`` holds the files' sha256.
    """
    examples, golds, report = _read_split(
        task, Path(questions_path), Path(outputs_path) if outputs_path is not None else None
    )
    if not report.ok:
        target = Path(questions_path).parent
        raise report.first_error(f"; list them with: lamp data validate {target} --task {task.name}")
    if golds is not None:
        examples = [Example(e.id, e.input, e.profile, golds[e.id]) for e in examples]
    return Dataset(task=task.name, split=split, examples=tuple(examples), source=source, checksums=dict(report.checksums))


def read_outputs(
    path: Path, task: Task | None = None, *, check_labels: bool = False, label: str | None = None
) -> tuple[str, dict[str, str]]:
    """Read an outputs file in the official gold format (golds or predictions):
    ``(its "task" field, {id: output})``.

    With ``task`` the ``task`` field must name it; ``check_labels`` additionally rejects outputs
    outside the task's label set (right for golds; predictions outside it simply score as wrong).
    ``label`` names the file in messages (e.g. ``ZIP!member``). Problems are one-line :class:`LampError`\\ s.
    """
    path = Path(path)
    problems = _Problems()
    try:
        data, _ = read_json(path)
    except LampError as exc:
        raise LampError(str(exc).replace(str(path), label)) if label else exc from None
    shown = Path(label) if label else path
    name, outputs = _check_outputs(task, shown, data, problems, check_labels=check_labels)
    if problems.count:
        raise ValidationReport(
            task=task.name if task else "",
            files=(path,),
            questions=0,
            golds=len(outputs),
            problems=tuple(problems.lines),
            problem_count=problems.count,
            profile=ProfileStats.of([]),
        ).first_error()
    assert name is not None
    return name, outputs


def write_outputs(path: Path, official_name: str, outputs: Mapping[str, str]) -> None:
    """Write ``{id: output}`` as an official outputs file (atomically)."""
    from lamp_harness.base.io import atomic_write_json

    atomic_write_json(Path(path), {"task": official_name, "golds": [{"id": i, "output": o} for i, o in outputs.items()]})


# ---------------------------------------------------------------------------------------------
# Resolution: --data-dir / --data SOURCE -> Dataset
# ---------------------------------------------------------------------------------------------


def local_split_files(data_dir: Path, split: str, scheme: str = "user") -> SplitFiles:
    """The split's files in a local folder: ``DIR/{split}_questions.json`` (or, for a folder laid
    out per scheme, ``DIR/{scheme}/{split}_questions.json``); the outputs file is optional."""
    data_dir = Path(data_dir).expanduser()
    questions_name, outputs_name = split_file_names(split)
    if not data_dir.is_dir():
        what = broken_link(data_dir) or ("does not exist" if not data_dir.exists() else "is not a folder")
        raise lamp_error(
            what, where=f"--data-dir {data_dir}", fix=f"Pass the folder that holds {questions_name} (and {outputs_name})."
        )
    folder = data_dir
    if not (folder / questions_name).is_file() and (data_dir / scheme / questions_name).is_file():
        folder = data_dir / scheme
    questions = folder / questions_name
    if not questions.is_file() and broken_link(questions):
        raise lamp_error(
            str(broken_link(questions)),
            where=f"--data-dir {data_dir}",
            fix=f"Point {questions_name} at the real file, or copy the file in its place.",
        )
    if not questions.is_file():
        present = sorted(p.name for p in data_dir.glob("*_questions.json"))
        have = f" (it has {', '.join(present)})" if present else ""
        raise lamp_error(
            f"has no {questions_name}{have}",
            where=f"--data-dir {data_dir}",
            fix=f"Pass the folder that holds the {split} split, or choose another --split.",
        )
    outputs = folder / outputs_name
    return SplitFiles(questions, outputs if outputs.is_file() else None, source=f"local:{folder.resolve()}")


def task_for_official_name(name: str, *, sample_item: Mapping[str, Any] | None = None) -> Task:
    """The registered task whose official name is ``name`` (``LaMP_3`` -> lamp-3). When several
    share it (movie tagging and the superseded news LaMP-2 are both ``LaMP_2``), the one whose
    profile fields ``sample_item`` has, else the one registered under that very name."""
    from lamp_harness.plugin.registry import host

    registry = host().registry
    matches = []
    for component in registry.components("task"):
        try:
            task = registry.create("task", component.name)
        except Exception:  # a task that cannot be built is reported by `lamp plugins`
            continue
        if normalize(task.official_name) == normalize(name):
            matches.append(task)
    if not matches:
        raise lamp_error(
            f"no registered task has the official name {name!r}",
            fix='Check the file\'s "task" field (e.g. "LaMP_3"), or pass --task; `lamp plugins` lists the tasks.',
        )
    if sample_item is not None and len(matches) > 1:
        fitting = [t for t in matches if all(f in sample_item for f in t.profile_fields)]
        if len(fitting) == 1:
            return fitting[0]
    for task in matches:
        if task.name == normalize(name):
            return task
    return matches[0]


def get_source(name: str, context: RunContext) -> DataSource:
    """The registered data source ``name``, constructed with ``context``."""
    from lamp_harness.plugin.registry import host

    return host().registry.create("data_source", name, context)


def resolve_dataset(
    task: Task,
    *,
    data: str | None,
    data_dir: Path | None,
    split: str,
    scheme: str = "user",
    context: RunContext,
    download: bool = True,
) -> Dataset:
    """The dataset a run uses: ``data_dir`` (a local folder) wins; else the registered data
    source ``data``, else the task's own :attr:`~lamp_harness.plugin.contracts.Task.data_source`, else
    ``"lamp"`` (the official server through the cache under ``$LAMP_HOME``, downloading on
    demand unless ``download`` is false).

    Loaded datasets are kept in ``context.shared`` (keyed by the files' paths, sizes and
    modification times), so cells of a matrix that share a split parse it once.
    """
    check_split_name(split)
    scheme = check_scheme(scheme)
    if data_dir is not None:
        own = get_source(task.data_source, context) if task.data_source else None
        folder_files = own.from_folder(task, Path(data_dir), split, scheme) if own is not None else None
        files = folder_files or local_split_files(Path(data_dir), split, scheme)
    else:
        source = get_source(data or task.data_source or DEFAULT_SOURCE, context)
        if scheme not in source.schemes:
            raise lamp_error(
                f"data source {source.name!r} has no {scheme!r} split scheme",
                fix=f"Use --scheme {' or '.join(source.schemes)}.",
            )
        files = source.locate(task, split, scheme, download=download)
    key = (
        "dataset",
        task.name,
        split,
        files.source,
        _stamp(files.questions),
        _stamp(files.outputs) if files.outputs else None,
    )
    cached = context.shared.get(key)
    if cached is None:
        cached = load_split(task, files.questions, files.outputs, split=split, source=files.source)
        context.shared[key] = cached
    return cached


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


# ---------------------------------------------------------------------------------------------
# Collections of outputs files (a submission, a folder of golds): a folder, a zip, or one file
# ---------------------------------------------------------------------------------------------

_ZIP_LIMIT = 4 << 30
"""Largest total uncompressed size a zip may declare (guards against zip bombs)."""


@dataclass(frozen=True)
class OutputsFile:
    """One outputs file of a collection: its ``task`` field, where it is readable now, and how
    to name it to the user (``ZIP!member`` for zip entries)."""

    task: str
    path: Path
    label: str


@contextmanager
def outputs_files(path: Path) -> Iterator[dict[str, OutputsFile]]:
    """``{task field: file}`` for every outputs file (``{"task", "golds"}``) in ``path``: a folder
    (searched recursively), a ``.zip`` (extracted into a temporary folder that is removed
    afterwards; entries with absolute paths, ``..`` or links are rejected before anything is
    written), or a single file. As in the official scorer, file names do not matter: the ``task``
    field identifies each file. JSON lists (questions files) are skipped; two files of the same
    task are a one-line error."""
    path = Path(path)
    if not path.exists():
        raise lamp_error("does not exist", where=str(path), fix="Pass a folder, a .zip, or an outputs .json file.")
    if path.is_file() and (zipfile.is_zipfile(path) or _looks_zipped(path)):
        with tempfile.TemporaryDirectory(prefix="lamp-zip-") as tmp:
            _safe_extract(path, Path(tmp))
            yield _index_outputs(Path(tmp), label=path)
        return
    yield _index_outputs(path, label=path)


def _looks_zipped(path: Path) -> bool:
    """A ``.zip`` name or the zip signature: such a file is reported as a damaged zip, not as
    malformed JSON, when ``zipfile`` cannot open it."""
    if path.suffix.lower() == ".zip":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _safe_extract(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                name = info.filename
                parts = name.replace("\\", "/").split("/")
                if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
                    raise lamp_error(
                        f"entry {name!r} has an absolute path or '..' (it could write outside "
                        "the extraction folder); nothing was extracted",
                        where=str(archive),
                        fix="Build the zip with relative paths, e.g. `cd DIR && zip ../submission.zip *.json`.",
                    )
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise lamp_error(
                        f"entry {name!r} is a symbolic link; nothing was extracted",
                        where=str(archive),
                        fix="Put plain files in the zip.",
                    )
            if sum(i.file_size for i in infos) > _ZIP_LIMIT:
                raise lamp_error(
                    "declares more than 4 GiB of content; nothing was extracted",
                    where=str(archive),
                    fix="Zip only the outputs .json files.",
                )
            for info in infos:
                if info.is_dir() or not info.filename.lower().endswith(".json"):
                    continue
                dest = target.joinpath(*[p for p in info.filename.replace("\\", "/").split("/") if p])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise lamp_error(
            f"is a damaged zip ({' '.join(str(exc).split()) or type(exc).__name__})",
            where=str(archive),
            fix="Create or download the zip again.",
        ) from None


def _index_outputs(root: Path, *, label: Path) -> dict[str, OutputsFile]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if p.is_file())
    found: dict[str, OutputsFile] = {}
    for file in files:
        # Files extracted from a zip are shown as ZIP!member, never by their temporary path.
        shown = str(file) if root == label or file.is_relative_to(label) else f"{label}!{file.relative_to(root).as_posix()}"
        try:
            data, _ = read_json(file)
        except LampError as exc:
            raise LampError(str(exc).replace(str(file), shown)) from None
        if isinstance(data, list):
            continue  # a questions file beside the golds
        if not isinstance(data, dict) or not isinstance(data.get("task"), str) or "golds" not in data:
            raise lamp_error(
                'is not an outputs file (expected {"task": "LaMP_N", "golds": [...]})',
                where=shown,
                fix="Remove it, or write it in the official outputs format.",
            )
        key = normalize(data["task"])
        if key in found:
            raise lamp_error(
                f"two files for {data['task']}: {found[key].label} and {shown}",
                where=str(label),
                fix="Keep exactly one outputs file per task.",
            )
        found[key] = OutputsFile(data["task"], file, shown)
    if not found:
        raise lamp_error(
            'holds no outputs file ({"task": ..., "golds": [...]})',
            where=str(label),
            fix="Pass the folder or zip with one LaMP_N outputs .json file per task.",
        )
    return {f.task: f for f in found.values()}
