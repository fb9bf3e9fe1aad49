"""The ``hub`` data source: datasets on the Hugging Face hub (LongLaMP, PersonaMem), downloaded with
``huggingface_hub`` and converted into the harness's question and output files.

Why ``huggingface_hub`` rather than ``datasets``: the harness needs the release's files, not an
Arrow table. ``snapshot_download`` fetches only the files of one configuration and split
(``allow_patterns``), keeps them in its content-addressed cache under ``$LAMP_HOME/hub``, resumes
an interrupted file (its ``.incomplete`` part and an HTTP ``Range`` request), and works offline
once cached (``HF_HUB_OFFLINE=1``); ``datasets`` would add its own Arrow cache and a second copy
of everything. Parquet files are read with ``pyarrow`` (which ``datasets`` itself uses).

Layouts read (the releases' own):

- LongLaMP (``LongLaMP/LongLaMP``): ``{configuration}/{split}-*.parquet`` (or ``.json`` /
  ``.jsonl`` in the same place), rows with ``input``, ``output`` and ``profile``; the harness's
  ``dev`` split is the release's ``val``.
- PersonaMem (``bowen-upenn/PersonaMem``): ``questions_{size}.csv`` and
  ``shared_contexts_{size}.jsonl``; the release has one split per size, served as ``test``.

Converted files land in ``$LAMP_HOME/data/hub/{scheme}/{task}/`` (``{split}_questions.json``,
``{split}_outputs.json``), written atomically, with ``source.json`` naming the repository,
revision and files they came from. ``$LAMP_HUB_URL`` (or ``HF_ENDPOINT``) points at another
endpoint, e.g. a mirror or a local test server. A malformed row is one line naming the file,
the row and the field.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from lamp_harness import (
    DataSource,
    LampError,
    RunContext,
    SplitFiles,
    Task,
    atomic_write_bytes,
    atomic_write_json,
    check_scheme,
    check_split_name,
    lamp_error,
    split_file_names,
)

HUB_URL_ENV = "LAMP_HUB_URL"
LONGLAMP_SPLITS = {"train": "train", "dev": "val", "test": "test"}
CONVERTER_VERSION = 1


def hub_endpoint() -> str | None:
    """The hub endpoint to use (``$LAMP_HUB_URL``, else ``huggingface_hub``'s own default)."""
    url = os.environ.get(HUB_URL_ENV, "").strip()
    return url.rstrip("/") or None


def _kind(task: Task) -> str:
    if hasattr(task, "hub_files"):
        return "personamem"
    if hasattr(task, "hub_config"):
        return "longlamp"
    return ""


class HubSource(DataSource):
    """Hub datasets through the cache under ``$LAMP_HOME`` (see the module docs)."""

    name: ClassVar[str] = "hub"
    schemes: ClassVar[tuple[str, ...]] = ("user", "time")

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.root = Path(context.lamp_home) / "data" / "hub"
        self.cache = Path(context.lamp_home) / "hub"

    # -- the contract -----------------------------------------------------------------------------
    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        check_split_name(split)
        check_scheme(scheme)
        self._check(task, split, scheme)
        folder = self.root / scheme / task.name
        q_name, o_name = split_file_names(split)
        if not (folder / q_name).is_file():
            if not download:
                raise lamp_error(
                    f"{task.name} {split} ({scheme}) is not downloaded yet",
                    fix=f"Run: lamp data download --task {task.name} --split {split} --scheme {scheme}",
                )
            self.convert(task, split, scheme, self.download(task, split, scheme))
        return SplitFiles(folder / q_name, folder / o_name, source=f"hub:{task.hub_repo}")

    def fetch(self, task: Task, split: str, scheme: str = "user", *, force: bool = False) -> SplitFiles:
        if force:
            for name in split_file_names(split):
                (self.root / scheme / task.name / name).unlink(missing_ok=True)
        return self.locate(task, split, scheme, download=True)

    def cached(self, task: Task) -> list[tuple[str, str, SplitFiles]]:
        found = []
        for scheme in self.schemes:
            folder = self.root / scheme / task.name
            for split in ("train", "dev", "test"):
                q_name, o_name = split_file_names(split)
                if (folder / q_name).is_file():
                    found.append(
                        (scheme, split, SplitFiles(folder / q_name, folder / o_name, f"hub:{getattr(task, 'hub_repo', '')}"))
                    )
        return found

    def notes(self, task: Task) -> list[str]:
        kind = _kind(task)
        if kind == "longlamp":
            return [
                f"Hugging Face dataset {task.hub_repo}, configuration {task.hub_config('user')} "
                f"(--scheme user) or {task.hub_config('time')} (--scheme time); splits train, dev "
                "(the release's val) and test. Licence: see the dataset card."
            ]
        if kind == "personamem":
            questions, contexts = task.hub_files()
            return [
                f"Hugging Face dataset {task.hub_repo}: {questions} and {contexts}, served as the test split (MIT licence)."
            ]
        return [f"The hub source has no data for {task.name}."]

    # -- download ---------------------------------------------------------------------------------
    def _check(self, task: Task, split: str, scheme: str) -> None:
        kind = _kind(task)
        if not kind:
            raise lamp_error(
                f"the hub data source has no data for task {task.name!r}",
                fix="Use --data lamp for the LaMP tasks, or --data-dir DIR.",
            )
        if kind == "personamem":
            if split != "test":
                raise lamp_error(
                    f"PersonaMem has a single split, served as 'test' (asked: {split!r})",
                    fix="Pass --split test (or --data demo for its synthetic dev split).",
                )
            if scheme != "user":
                raise lamp_error("PersonaMem has no time-based split", fix="Use --scheme user.")

    def patterns(self, task: Task, split: str, scheme: str) -> list[str]:
        """The repository files a split needs (``allow_patterns`` of the download)."""
        if _kind(task) == "personamem":
            return list(task.hub_files())
        config, remote = task.hub_config(scheme), LONGLAMP_SPLITS[split]
        return [f"{config}/{remote}-*", f"{config}/{remote}.*"]

    def download(self, task: Task, split: str, scheme: str) -> list[Path]:
        """The split's files from the hub's cache (downloaded or resumed when missing)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        patterns = self.patterns(task, split, scheme)
        try:
            folder = Path(
                snapshot_download(
                    task.hub_repo,
                    repo_type="dataset",
                    allow_patterns=patterns,
                    cache_dir=str(self.cache),
                    endpoint=hub_endpoint(),
                )
            )
        except LocalEntryNotFoundError:
            raise lamp_error(
                f"{task.hub_repo} is not in the cache and the hub cannot be reached "
                "(offline, HF_HUB_OFFLINE=1, or no connection)",
                where=task.name,
                fix=f"Connect once and run: lamp data download --task {task.name} --split {split}; or try --data demo.",
            ) from None
        except (HfHubHTTPError, OSError) as exc:
            raise lamp_error(
                f"cannot download {task.hub_repo} ({str(exc).splitlines()[0]})",
                where=task.name,
                fix=f"Check the connection (or {HUB_URL_ENV}) and run the command again: "
                "finished files are kept and a partial one resumes.",
            ) from None
        files = sorted(p for pattern in patterns for p in folder.glob(pattern) if p.is_file())
        if not files:
            raise lamp_error(
                f"{task.hub_repo} has no files matching {', '.join(patterns)}",
                where=task.name,
                fix=f"Check the split and scheme (`lamp data info {task.name}`).",
            )
        return files

    # -- conversion -------------------------------------------------------------------------------
    def convert(self, task: Task, split: str, scheme: str, files: list[Path]) -> None:
        """Write the split's question and output files from the release's ``files``."""
        if _kind(task) == "personamem":
            questions, golds = personamem_records(task, files)
        else:
            questions, golds = longlamp_records(task, split, files)
        folder = self.root / scheme / task.name
        q_name, o_name = split_file_names(split)
        render = lambda obj: (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")  # noqa: E731
        atomic_write_bytes(folder / o_name, render({"task": task.official_name, "golds": golds}))
        atomic_write_bytes(folder / q_name, render(questions))  # last: its presence means "converted"
        atomic_write_json(
            folder / f"{split}_source.json",
            {
                "repository": task.hub_repo,
                "files": [f.name for f in files],
                "snapshot": files[0].parent.name if files else None,
                "converter": CONVERTER_VERSION,
            },
        )


# ---------------------------------------------------------------------------------------------
# Reading the releases' files
# ---------------------------------------------------------------------------------------------


def _bad(path: Path, row: int, field: str, what: str, fix: str) -> LampError:
    return lamp_error(what, where=f"{path.name}: row {row}, field {field!r}", fix=fix)


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a parquet, JSON (a list of objects) or JSON-lines file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise lamp_error(
                "reading the hub's parquet files needs pyarrow",
                where=str(path),
                fix="Install it: .venv/bin/pip install -c constraints.txt pyarrow",
            ) from None
        yield from pq.read_table(path).to_pylist()
        return
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _bad(
                        path,
                        number,
                        "(line)",
                        f"is not JSON ({exc.msg})",
                        "Download the file again (lamp data download --force).",
                    ) from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise lamp_error(
            f"is not JSON ({exc.msg} at line {exc.lineno})",
            where=str(path),
            fix="Download the file again (lamp data download --force).",
        ) from None
    yield from (data if isinstance(data, list) else [data])


def longlamp_records(task: Any, split: str, files: list[Path]) -> tuple[list[dict], list[dict]]:
    """Question records and golds of a LongLaMP split, with a one-line error for a bad row."""
    questions, golds = [], []
    for path in files:
        for number, row in enumerate(read_rows(path), start=1):
            for field, kind in (("input", str), ("output", str), ("profile", list)):
                value = row.get(field) if isinstance(row, Mapping) else None
                if not isinstance(value, kind):
                    what = "is missing" if value is None else f"is a {type(value).__name__}, not a {kind.__name__}"
                    raise _bad(
                        path, number, field, what, "The file is not a LongLaMP release file; download it again (--force)."
                    )
            for position, item in enumerate(row["profile"]):
                missing = [f for f in task.profile_fields if not isinstance(item, Mapping) or f not in item]
                if missing:
                    raise _bad(
                        path,
                        number,
                        f"profile[{position}].{missing[0]}",
                        "is missing",
                        f"{task.name} profile items need {', '.join(task.profile_fields)}.",
                    )
            qid = f"{split}-{len(questions)}"
            question, gold = task.record(row, qid)
            questions.append(question)
            golds.append({"id": qid, "output": gold})
    return questions, golds


def personamem_records(task: Any, files: list[Path]) -> tuple[list[dict], list[dict]]:
    """Question records and golds of a PersonaMem size, grouped by shared context and in timeline
    order; each question's profile holds only the sessions before its end index."""
    from lamp_tasks.personamem import render_input, sessions

    questions_name, contexts_name = task.hub_files()
    by_name = {p.name: p for p in files}
    contexts_path, questions_path = by_name[contexts_name], by_name[questions_name]
    contexts: dict[str, list] = {}
    for number, row in enumerate(read_rows(contexts_path), start=1):
        if not isinstance(row, Mapping) or len(row) != 1:
            raise _bad(
                contexts_path,
                number,
                "(line)",
                "is not one {context_id: [messages]} object",
                "Download the file again (lamp data download --force).",
            )
        ((cid, messages),) = row.items()
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) and "content" in m for m in messages):
            raise _bad(
                contexts_path,
                number,
                cid,
                "is not a list of {role, content} messages",
                "Download the file again (lamp data download --force).",
            )
        contexts[str(cid)] = messages
    rows = []
    with open(questions_path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            rows.append((number, row))
    parsed = []
    for number, row in rows:

        def need(field: str, row=row, number=number) -> str:
            value = row.get(field)
            if value is None or value == "":
                raise _bad(
                    questions_path,
                    number,
                    field,
                    "is missing or empty",
                    "The file is not a PersonaMem questions table; download it again (--force).",
                )
            return value

        cid = need("shared_context_id")
        if cid not in contexts:
            raise _bad(
                questions_path,
                number,
                "shared_context_id",
                f"names no context of {contexts_name} ({cid})",
                "Download both files of the same size again (--force).",
            )
        try:
            end = int(float(need("end_index_in_shared_context")))
        except ValueError:
            raise _bad(
                questions_path,
                number,
                "end_index_in_shared_context",
                "is not a number",
                "Download the file again (--force).",
            ) from None
        options = _options(need("all_options"))
        if not options:
            raise _bad(
                questions_path, number, "all_options", "holds no (a)..(d) options", "Download the file again (--force)."
            )
        answer = need("correct_answer").strip().lower().strip("() ")
        if answer not in "abcd" or len(answer) != 1:
            raise _bad(
                questions_path,
                number,
                "correct_answer",
                f"is not an option letter ({answer!r})",
                "Download the file again (--force).",
            )
        qtype = need("question_type").strip().replace(":", "_")
        qid = f"{qtype}:{need('question_id')}"
        parsed.append((cid, end, number, qid, need("user_question_or_message"), options, f"({answer})"))
    order = {cid: i for i, cid in enumerate(contexts)}
    parsed.sort(key=lambda r: (order[r[0]], r[1], r[2]))
    questions, golds = [], []
    for cid, end, _number, qid, question, options, answer in parsed:
        questions.append({"id": qid, "input": render_input(question, options), "profile": sessions(contexts[cid], end)})
        golds.append({"id": qid, "output": answer})
    return questions, golds


def _options(value: str) -> list[str]:
    """The option strings of an ``all_options`` cell: a Python or JSON list literal, or lines."""
    text = value.strip()
    if text.startswith("["):
        try:
            found = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            found = None
        if isinstance(found, list):
            return [" ".join(str(o).split()) for o in found if str(o).strip()]
    return [line.strip() for line in text.splitlines() if line.strip().startswith("(")]
