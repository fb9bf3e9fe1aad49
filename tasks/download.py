"""The official LaMP download server as a data source, through a local cache.

URL layout of the official LaMP download server, below ``https://ciir.cs.umass.edu/downloads/LaMP/`` (override with the
environment variable ``LAMP_DATA_URL``, e.g. a mirror or a local test server)::

    LaMP_{N}/{split}/{split}_questions.json           user-based split
    LaMP_2/new/{split}/...                            movie tagging (today's LaMP-2)
    LaMP_2/{split}/...                                the superseded news categorization
    time/<the same>                                   time-based split

LaMP-6 is not public (Avocado corpus): the source explains how to provide it with ``--data-dir``.

Files land in ``$LAMP_HOME/data/lamp/{scheme}/{task}/`` with a ``checksums.json`` (sha256, size,
URL) beside them. Downloads stream into ``NAME.part`` with a progress bar, resume with an HTTP
``Range`` request after an interruption, are rejected when the body is not JSON (the server answers
some wrong paths with ``200`` and an HTML page), and are renamed into place only when complete.
Only ``urllib`` is used.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from filelock import FileLock

from lamp_harness import (
    DataSource,
    LampError,
    RunContext,
    SplitFiles,
    Task,
    __version__,
    atomic_write_json,
    check_scheme,
    check_split_name,
    file_matches,
    file_sha256,
    lamp_error,
    split_file_names,
    warn,
)

DEFAULT_URL = "https://ciir.cs.umass.edu/downloads/LaMP/"
CHECKSUMS = "checksums.json"
_CHUNK = 1 << 16
_ATTEMPTS = 4

# The server's folder of each task; a task missing here has no official download.
REMOTE_FOLDERS = {
    "lamp-1": "LaMP_1",
    "lamp-2": "LaMP_2/new",
    "lamp-2-news": "LaMP_2",
    "lamp-3": "LaMP_3",
    "lamp-4": "LaMP_4",
    "lamp-5": "LaMP_5",
    "lamp-7": "LaMP_7",
}

LAMP6_NOTE = (
    "LaMP-6 (email subject generation) is built on the Avocado Research Email Collection, which is "
    "licensed (LDC2015T03) and not redistributable: the LaMP authors publish only the ids of its "
    "questions and profile items. With an Avocado licence, build {split}_questions.json and "
    "{split}_outputs.json from those ids (profile items: id, title = subject, text = body) and pass "
    "the folder with --data-dir DIR (check it with: lamp data validate DIR --task lamp-6)."
)


def base_url() -> str:
    """The server's base URL (``$LAMP_DATA_URL`` or the official one), ending in ``/``."""
    url = os.environ.get("LAMP_DATA_URL", "").strip() or DEFAULT_URL
    return url if url.endswith("/") else url + "/"


def remote_folder(task: Task, split: str, scheme: str) -> str:
    """The folder URL of a task's split on the server; a one-line error for tasks it lacks."""
    check_split_name(split)
    check_scheme(scheme)
    if task.name == "lamp-6":
        raise lamp_error(
            "LaMP-6 data is not public (Avocado email corpus), so it cannot be downloaded",
            where=task.name,
            fix="With an Avocado licence, build the files from the published ids and pass "
            "the folder with --data-dir DIR (details: lamp data info lamp-6).",
        )
    folder = REMOTE_FOLDERS.get(task.name)
    if folder is None:
        raise lamp_error(
            f"the official LaMP server has no data for task {task.name!r}", fix="Pass its files with --data-dir DIR."
        )
    prefix = "time/" if scheme == "time" else ""
    return f"{base_url()}{prefix}{folder}/{split}/"


@dataclass(frozen=True)
class Downloaded:
    """A completed download."""

    path: Path
    url: str
    sha256: str
    size: int


class NotFound(LampError):
    """The server has no file at that URL (HTTP 404)."""


def _offline_error(url: str, reason: object) -> LampError:
    return lamp_error(
        f"cannot download {url} ({reason})",
        fix="Check the connection (or LAMP_DATA_URL); or pass local files with "
        "--data-dir DIR; or try the synthetic dataset with --data demo.",
    )


def download_file(url: str, dest: Path, *, progress: bool = True, timeout: float = 60.0) -> Downloaded:
    """Stream ``url`` to ``dest`` through ``dest.part``: resumed with ``Range`` after an
    interruption (retried a few times while bytes keep coming), rejected unless the body is JSON,
    renamed into place only when complete."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        attempt += 1
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"lamp-harness/{__version__}", "Accept": "application/json"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        received = 0
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=timeout) as response:
                received = _stream(response, url, part, offset, progress)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                part.unlink(missing_ok=True)  # our partial file does not fit the server's: restart
                if attempt < _ATTEMPTS:
                    continue
            if exc.code == 404:
                message = lamp_error(
                    "not found on the server (HTTP 404)",
                    where=url,
                    fix="Check the task, split and scheme, or LAMP_DATA_URL.",
                )
                raise NotFound(str(message)) from None
            raise lamp_error(
                f"the server answered HTTP {exc.code} {exc.reason}",
                where=url,
                fix="Try again later, or pass local files with --data-dir DIR.",
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, _Truncated) as exc:
            reason = getattr(exc, "reason", None) or exc
            have = part.stat().st_size if part.exists() else 0
            # Retry only a transfer that was making progress (a dropped connection); a server that
            # cannot be reached at all is reported at once.
            if have > offset and attempt < _ATTEMPTS:
                time.sleep(0.2 * attempt)
                continue
            if have:
                reason = f"{reason}; {have} bytes kept in {part.name}, run the command again to resume"
            raise _offline_error(url, reason) from None
    del received
    raw = part.read_bytes()
    try:
        json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        part.unlink(missing_ok=True)
        raise lamp_error(
            "the server's answer is not JSON (an error page?)",
            where=url,
            fix="Check the task, split and scheme (or LAMP_DATA_URL), then try again.",
        ) from None
    os.replace(part, dest)
    return Downloaded(dest, url, file_sha256(dest), len(raw))


class _Truncated(Exception):
    """The connection closed before Content-Length bytes arrived."""


def _stream(response, url: str, part: Path, offset: int, progress: bool) -> int:
    status = getattr(response, "status", 200)
    if offset and status == 206:
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {offset}-"):
            offset = 0  # a range we did not ask for: start over
    else:
        offset = 0
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    content_type = response.headers.get("Content-Type", "")
    first = response.read(_CHUNK)
    if offset == 0 and ("html" in content_type.lower() or first.lstrip()[:1] == b"<"):
        part.unlink(missing_ok=True)
        raise lamp_error(
            "the server answered with an HTML page instead of JSON (a wrong path?)",
            where=url,
            fix="Check the task, split and scheme (or LAMP_DATA_URL).",
        )
    written = 0
    with open(part, "ab" if offset else "wb") as handle, _bar(url, progress, offset, expected) as advance:
        chunk = first
        while chunk:
            handle.write(chunk)
            written += len(chunk)
            advance(len(chunk))
            try:
                chunk = response.read(_CHUNK)
            except http.client.IncompleteRead as exc:
                handle.write(exc.partial)
                written += len(exc.partial)
                raise _Truncated(f"connection closed after {offset + written} bytes") from None
        handle.flush()
        os.fsync(handle.fileno())
    if expected is not None and written < expected:
        raise _Truncated(f"connection closed after {offset + written} of {offset + expected} bytes")
    return written


class _bar:
    """A rich progress bar for one file (a no-op when ``progress`` is false)."""

    def __init__(self, url: str, progress: bool, offset: int, expected: int | None) -> None:
        self.enabled = progress
        self.url, self.offset, self.expected = url, offset, expected

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        total = self.offset + self.expected if self.expected is not None else None
        name = self.url.rstrip("/").rsplit("/", 3)
        task_id = self.progress.add_task("/".join(name[-3:]), total=total, completed=self.offset)
        return lambda n: self.progress.advance(task_id, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


class LampServerSource(DataSource):
    """The official LaMP files, downloaded on demand into ``$LAMP_HOME/data/lamp/`` and reused."""

    name: ClassVar[str] = "lamp"
    description: ClassVar[str] = "the official LaMP benchmark files"

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.root = Path(context.lamp_home) / "data" / "lamp"

    def folder(self, task: Task, scheme: str) -> Path:
        """The cache folder of a task's scheme."""
        return self.root / scheme / task.name

    def _files(self, task: Task, split: str, scheme: str) -> SplitFiles | None:
        folder = self.folder(task, scheme)
        questions_name, outputs_name = split_file_names(split)
        recorded = _read_checksums(folder)
        questions = folder / questions_name
        if not _intact(questions, recorded):
            return None
        outputs = folder / outputs_name
        return SplitFiles(questions, outputs if _intact(outputs, recorded) else None, source=f"lamp:{scheme}")

    def locate(self, task: Task, split: str, scheme: str = "user", *, download: bool = True) -> SplitFiles:
        check_split_name(split)
        check_scheme(scheme)
        files = self._files(task, split, scheme)
        if files is not None and (files.outputs is not None or split == "test"):
            return files
        remote_folder(task, split, scheme)  # a task without a download fails here, before anything
        if not download:
            raise lamp_error(
                f"the {scheme}-based {split} split of {task.name} is not in the cache ({self.folder(task, scheme)})",
                fix=f"Run: lamp data download --task {task.name} --scheme {scheme} "
                f"--split {split}; or pass --data-dir DIR, or --data demo.",
            )
        return self.fetch(task, split, scheme)

    def fetch(
        self, task: Task, split: str, scheme: str = "user", *, force: bool = False, progress: bool = True
    ) -> SplitFiles:
        """Download a split into the cache (questions, and golds except for ``test``, whose golds
        the LaMP authors withhold); files already complete are kept unless ``force``."""
        url = remote_folder(task, split, scheme)
        folder = self.folder(task, scheme)
        names = split_file_names(split)
        wanted = names[:1] if split == "test" else names
        folder.parent.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            # Concurrent downloaders of one file take turns; the second finds it done.
            # (Lock files live beside the folder, so a failed download leaves the folder empty.)
            with FileLock(str(folder.parent / f".{folder.name}.{name}.lock")):
                recorded = _read_checksums(folder)
                if not force and _intact(folder / name, recorded):
                    continue
                done = download_file(url + name, folder / name, progress=progress)
            with FileLock(str(folder.parent / f".{folder.name}.{CHECKSUMS}.lock")):
                recorded = _read_checksums(folder)
                recorded[name] = {
                    "sha256": done.sha256,
                    "bytes": done.size,
                    "url": done.url,
                    "mtime_ns": (folder / name).stat().st_mtime_ns,
                    "downloaded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
                atomic_write_json(folder / CHECKSUMS, dict(sorted(recorded.items())))
        files = self._files(task, split, scheme)
        assert files is not None
        return files

    def cached(self, task: Task) -> list[tuple[str, str, SplitFiles]]:
        found = []
        for scheme in self.schemes:
            for split in ("train", "dev", "test"):
                files = self._files(task, split, scheme)
                if files is not None:
                    found.append((scheme, split, files))
        return found

    def notes(self, task: Task) -> list[str]:
        if task.name == "lamp-6":
            return [LAMP6_NOTE]
        if task.name not in REMOTE_FOLDERS:
            return [f"The official server has no files for {task.name}; pass them with --data-dir DIR."]
        return [
            f"Downloads from {base_url()}[time/]{REMOTE_FOLDERS[task.name]}/{{split}}/ "
            f"into {self.root}/{{user|time}}/{task.name}/."
        ]


def _read_checksums(folder: Path) -> dict[str, dict]:
    try:
        data = json.loads((folder / CHECKSUMS).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _intact(path: Path, recorded: dict[str, dict]) -> bool:
    """A cached file counts only when its download completed and it is unchanged since (the size
    and SHA-256 recorded). A damaged one is named in a warning and downloaded again."""
    entry = recorded.get(path.name)
    if not isinstance(entry, dict) or not path.is_file():
        return False
    if file_matches(path, entry.get("bytes"), entry.get("sha256"), entry.get("mtime_ns")):
        return True
    warn(f"cached download {path} is damaged (size or checksum differs from {CHECKSUMS}); it will be downloaded again")
    return False
