"""LaMP-QA data: the official files (hub or ``--data-dir``) read, validated and converted.

The official ``utils/download_datasets.py`` writes one JSON list of records per category and split,
``{Category}_{split}.json`` (``Art_and_Entertainment_validation.json``...). This source reads that
layout from ``--data-dir DIR``, or from ``$LAMP_HOME/data/lamp-qa/hub/`` where it puts the files
it downloads from the Hugging Face dataset ``alireza7/LaMP-QA`` (through ``huggingface_hub``;
``HF_ENDPOINT`` picks a mirror; offline once cached). The download finds a category's files as
``datasets.load_dataset("alireza7/LaMP-QA", category, split=...)`` in the official script does: the
dataset card's ``configs`` (one configuration per category, each split's ``data_files`` pattern)
matched against the repository's files at ``main``, read with ``pyarrow`` (Parquet) or as JSON;
when the card names no such configuration, the hub's own Parquet conversion (revision
``refs/convert/parquet``, ``{configuration}/{split}/0000.parquet``...). Every record is checked; a bad one is one
line naming the file, the record and the field. The records are then written as the harness's
split files (question and profile as the input, the evaluation-only ``narrative`` and
``rubric_aspects`` as the gold) under ``$LAMP_HOME/data/lamp-qa/converted/``, keyed by the
official file's checksum, so they are converted once.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from lamp_harness import (
    DataSource,
    LampError,
    RunContext,
    SplitFiles,
    Task,
    atomic_write_bytes,
    file_sha256,
    lamp_error,
    split_file_names,
)

REPO = "alireza7/LaMP-QA"
MAIN = "main"
"""The revision whose dataset card and files are read first."""
PARQUET_REVISION = "refs/convert/parquet"
"""The hub revision holding every dataset's Parquet conversion (``{config}/{split}/0000.parquet``)."""
OFFICIAL_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
"""The harness's split names -> the benchmark's."""


def _category(task: Task) -> str:
    category = getattr(task, "category", "")
    if not category:
        raise lamp_error(
            f"the lamp-qa data source has no data for task {task.name!r}",
            fix="Use it with lamp-qa-arts, lamp-qa-lifestyle or lamp-qa-society.",
        )
    return category


def official_file(task: Task, split: str) -> str:
    """``{Category}_{split}.json``, the official file name of ``task``'s ``split``."""
    return f"{_category(task)}_{OFFICIAL_SPLITS[split]}.json"


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of an official file, every one checked: a bad record is a one-line error
    naming the file, the record and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise lamp_error(
            f"cannot read JSON ({type(exc).__name__}: {exc})",
            where=str(path),
            fix="Download it again with the official utils/download_datasets.py.",
        ) from None
    if not isinstance(data, list):
        raise lamp_error(
            f"expected a JSON list of records, found {type(data).__name__}",
            where=str(path),
            fix="Pass the folder that utils/download_datasets.py wrote.",
        )
    seen: set[str] = set()
    for index, record in enumerate(data):

        def bad(field: str, what: str, fix: str, rid: Any = None, index: int = index) -> LampError:
            who = f"record {index}" + (f" (id {rid!r})" if rid is not None else "")
            return lamp_error(f"{who}: field {field!r} {what}", where=str(path), fix=fix)

        if not isinstance(record, dict):
            raise bad("record", f"is a {type(record).__name__}, not an object", "Each record is a JSON object.")
        rid = record.get("id")
        if not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid) in seen:
            raise bad("id", "is missing, not a string, or a duplicate", "Give every record a unique id.", rid)
        seen.add(str(rid))
        for field in ("question", "narrative"):
            if not isinstance(record.get(field), str) or (field == "question" and not record[field].strip()):
                raise bad(field, "is missing or not a (non-empty) string", f"Every record needs its {field}.", rid)
        aspects = record.get("rubric_aspects")
        if not isinstance(aspects, list) or not aspects:
            raise bad(
                "rubric_aspects",
                "is missing or not a non-empty list",
                "Every record needs its rubric aspects (aspect, reason, evidence).",
                rid,
            )
        for j, aspect in enumerate(aspects):
            for key in ("aspect", "reason", "evidence"):
                if not isinstance(aspect, dict) or not isinstance(aspect.get(key), str):
                    raise bad(
                        f"rubric_aspects[{j}].{key}",
                        "is missing or not a string",
                        "Each aspect has aspect, reason and evidence strings.",
                        rid,
                    )
        profile = record.get("profile")
        if not isinstance(profile, list):
            raise bad("profile", "is missing or not a list", "Every record needs the asker's profile.", rid)
        for j, item in enumerate(profile):
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise bad(f"profile[{j}].text", "is missing or not a string", "Each profile item has a text.", rid)
    return data


def convert(records: list[dict[str, Any]], task: Task) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The harness's ``(questions, outputs)`` of official records: the question and profile go
    to the input side, ``narrative`` and ``rubric_aspects`` only to the gold."""
    from lamp_tasks.lamp_qa import gold_record

    questions, golds = [], []
    for record in records:
        rid = str(record["id"])
        profile = [
            {"id": str(item["id"]) if "id" in item else str(j), "text": item["text"]}
            for j, item in enumerate(record["profile"])
        ]
        questions.append({"id": rid, "input": record["question"], "profile": profile})
        golds.append({"id": rid, "output": gold_record(record["narrative"], record["rubric_aspects"])})
    return questions, {"task": task.official_name, "golds": golds}


class LampQASource(DataSource):
    """``--data lamp-qa``: the official LaMP-QA files from the hub, cached under ``$LAMP_HOME``."""

    name: ClassVar[str] = "lamp-qa"
    schemes: ClassVar[tuple[str, ...]] = ("user",)

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.root = Path(context.lamp_home) / "data" / "lamp-qa"
        self.revision = "hub"  # the folder of the files downloaded from the hub

    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        folder = self.root / self.revision
        name = official_file(task, split)
        if not (folder / name).is_file():
            if not download:
                raise lamp_error(f"{name} is not cached in {folder}", fix=f"Run: lamp data download --task {task.name}.")
            self._download(task, split, folder / name)
        files = self.from_folder(task, folder, split, scheme)
        return SplitFiles(files.questions, files.outputs, source=f"lamp-qa:{self.revision}")

    def fetch(self, task: Task, split: str, scheme: str = "user", *, force: bool = False) -> SplitFiles:
        if force:
            (self.root / self.revision / official_file(task, split)).unlink(missing_ok=True)
        return self.locate(task, split, scheme)

    def cached(self, task: Task) -> list[tuple[str, str, SplitFiles]]:
        if not getattr(task, "category", ""):
            return []  # not a LaMP-QA task
        found = []
        for split in OFFICIAL_SPLITS:
            if (self.root / self.revision / official_file(task, split)).is_file():
                found.append(("user", split, self.locate(task, split, download=False)))
        return found

    def notes(self, task: Task) -> list[str]:
        if not getattr(task, "category", ""):
            return ["The lamp-qa source serves only the LaMP-QA tasks."]
        return [
            f"Hugging Face dataset {REPO}, configuration {_category(task)} (splits train, validation = "
            "dev, test); or --data-dir with the official {Category}_{split}.json files."
        ]

    def from_folder(self, task: Task, folder: Path, split: str, scheme: str = "user") -> SplitFiles:
        """The split's files from a folder in the official layout (``--data-dir``), converted once."""
        folder = Path(folder).expanduser()
        path = folder / official_file(task, split)
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
            have = f" (it has {', '.join(present[:6])})" if present else ""
            raise lamp_error(
                f"has no {path.name}{have}",
                where=f"--data-dir {folder}",
                fix="Pass the folder the official utils/download_datasets.py wrote, or choose "
                "another --split (train, validation, test).",
            )
        digest = file_sha256(path)
        target = self.root / "converted" / f"{path.stem}-{digest[:16]}"
        q_name, o_name = split_file_names(split)
        if not (target / o_name).is_file():
            questions, outputs = convert(read_records(path), task)
            target.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target / q_name, json.dumps(questions, ensure_ascii=False).encode())
            atomic_write_bytes(target / o_name, json.dumps(outputs, ensure_ascii=False).encode())
        return SplitFiles(target / q_name, target / o_name, source=f"local:{folder.resolve()}")

    def _download(self, task: Task, split: str, dest: Path) -> None:
        """The split's records from the hub, written as the official file: the files the dataset
        card's configuration for the category lists for the split (:func:`card_data_files`), or,
        when the card has none, the hub's Parquet conversion in the ``refs/convert/parquet``
        revision, laid out as ``{configuration}/{split}/0000.parquet``, ``0001.parquet``...; the
        files are read in order."""
        try:
            from huggingface_hub import HfApi, hf_hub_download
            from huggingface_hub.errors import EntryNotFoundError
        except ImportError:
            raise lamp_error(
                "huggingface_hub is not installed",
                fix="pip install huggingface_hub, or pass --data-dir with the official files.",
            ) from None
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise lamp_error(
                "reading the hub's Parquet files needs pyarrow",
                where=f"--data lamp-qa ({REPO})",
                fix='Install it (pip install "lamp-harness[hub]"), or pass --data-dir with '
                "the files the official utils/download_datasets.py wrote.",
            ) from None
        category, wanted = _category(task), OFFICIAL_SPLITS[split]
        endpoint = os.environ.get("HF_ENDPOINT") or None
        records: list[Any] = []
        cache = str(self.root / "hub-cache")
        try:
            try:
                card = Path(
                    hf_hub_download(
                        REPO, "README.md", repo_type="dataset", revision=MAIN, cache_dir=cache, endpoint=endpoint
                    )
                ).read_text(encoding="utf-8")
            except EntryNotFoundError:
                card = ""
            patterns = card_data_files(card, category, wanted)
            if patterns:
                names = sorted(
                    f
                    for f in HfApi(endpoint=endpoint).list_repo_files(REPO, repo_type="dataset", revision=MAIN)
                    if any(fnmatch.fnmatchcase(f, p) for p in patterns)
                )
                if not names:
                    raise lamp_error(
                        f"the hub dataset {REPO} has no file matching {', '.join(patterns)}",
                        fix="Download it with the official utils/download_datasets.py and pass --data-dir.",
                    )
                for name in names:
                    local = hf_hub_download(
                        REPO, name, repo_type="dataset", revision=MAIN, cache_dir=cache, endpoint=endpoint
                    )
                    records += _read_data_file(Path(local), name)
            else:  # the card does not say: the hub's Parquet conversion
                for part in range(10_000):
                    name = f"{category}/{wanted}/{part:04d}.parquet"
                    try:
                        local = hf_hub_download(
                            REPO, name, repo_type="dataset", revision=PARQUET_REVISION, cache_dir=cache, endpoint=endpoint
                        )
                    except EntryNotFoundError:
                        if part == 0:
                            raise lamp_error(
                                f"the hub dataset {REPO} has no {name} in {PARQUET_REVISION}, and "
                                f"its card names no configuration {category!r}",
                                fix="Download it with the official utils/download_datasets.py and pass --data-dir.",
                            ) from None
                        break
                    records += parquet.read_table(local).to_pylist()
        except LampError:
            raise
        except Exception as exc:  # network, HTTP and hub errors: one line
            first = (str(exc).splitlines() or [""])[0][:200]
            raise lamp_error(
                f"cannot download {REPO} ({type(exc).__name__}: {first})",
                fix="Check the network or HF_ENDPOINT; or pass --data-dir with the files the "
                "official utils/download_datasets.py wrote.",
            ) from None
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, json.dumps(records, ensure_ascii=False, indent=1).encode())


def card_data_files(card: str, config: str, split: str) -> list[str]:
    """The ``data_files`` patterns of ``config``'s ``split`` in a dataset card's YAML header
    (``configs: [{config_name, data_files: [{split, path}]}]``, ``path`` a pattern or a list of
    them, as the ``datasets`` library reads it); ``[]`` when the card does not name them."""
    import yaml

    if not card.startswith("---"):
        return []
    header = card[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        return []
    for entry in meta.get("configs") or [] if isinstance(meta, dict) else []:
        if not isinstance(entry, dict) or entry.get("config_name") != config:
            continue
        files = entry.get("data_files")
        if isinstance(files, dict):  # {split: pattern(s)}
            files = [{"split": k, "path": v} for k, v in files.items()]
        for item in files if isinstance(files, list) else []:
            if isinstance(item, dict) and item.get("split") == split:
                paths = item.get("path")
                return [str(p) for p in (paths if isinstance(paths, list) else [paths]) if p]
    return []


def _read_data_file(path: Path, name: str) -> list[Any]:
    """The records of one data file of the hub repository (Parquet, a JSON list, or JSON Lines)."""
    if name.endswith(".parquet"):
        import pyarrow.parquet as parquet

        return parquet.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if name.endswith(".json") and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
