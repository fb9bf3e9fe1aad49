"""Small filesystem helpers every module shares: atomic writes, checksums, the cache home."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def lamp_home() -> Path:
    """``$LAMP_HOME`` (default ``~/.cache/lamp-harness``): downloads, converted models, caches.

    A ``LAMP_HOME`` that is a file (or lies under one) is a one-line error."""
    home = Path(os.environ.get("LAMP_HOME") or Path.home() / ".cache" / "lamp-harness").expanduser()
    blocker = _file_in_the_way(home)
    if blocker is not None:
        from lamp_harness.base.errors import lamp_error

        what = "is a file" if blocker == home else f"lies under the file {blocker}"
        raise lamp_error(
            f"the cache folder LAMP_HOME={home} {what}",
            fix="Point LAMP_HOME at a folder (or unset it for ~/.cache/lamp-harness).",
        )
    return home


def _file_in_the_way(path: Path) -> Path | None:
    """``path`` or its nearest existing ancestor when that is not a folder (so no folder can be
    created there); ``None`` when the way is clear."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
        if candidate.is_symlink():  # a dangling link: mkdir would fail
            return candidate
    return None


def writable_dir(path: Path, option: str) -> Path:
    """Create ``path`` (a folder the command writes into) and prove it writable, before any work.

    An ``--out`` that is a file, lies under a file, or cannot be written is a one-line error naming
    ``option``."""
    from lamp_harness.base.errors import lamp_error

    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        what = "is a file, not a folder" if blocker == path else f"lies under {blocker}, which is not a folder"
        raise lamp_error(f"{option} {path} {what}", fix=f"Pass a folder path to {option}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise lamp_error(
            f"{option} {path} is not writable ({exc.strerror or exc})",
            fix=f"Pass a folder you can write to {option}, or fix its permissions.",
        ) from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """Check that the file ``path`` can be written (its folder is created and writable, and it is
    not itself a folder), before any work."""
    from lamp_harness.base.errors import lamp_error

    path = Path(path)
    if path.is_dir():
        raise lamp_error(f"{option} {path} is a folder", fix=f"Pass a file path to {option}, e.g. {path}/out.json.")
    writable_dir(path.parent if str(path.parent) else Path("."), option)
    return path


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name ``path`` in an OS error raised while writing it: a write to an open file (a full disk,
    a quota, a file-size limit) raises an ``OSError`` without a file name, which the CLI could not
    turn into its one line naming the path."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with writing(path), os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def staging_dir(target: Path) -> Path:
    """A new empty folder beside ``target`` (``.NAME.xxxxxxxx``) to write a whole folder into
    before renaming it to ``target``, so that ``target`` is complete or absent. ``mkdtemp`` makes
    it private; it is opened to 0755, as everything the harness writes is meant to be shared (a
    ``$LAMP_HOME`` may serve a team)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short hash of a JSON-able object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def folder_manifest(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "sha256"}}`` of every file under ``folder`` (except ``skip``
    names and lock files): recorded when a cache entry is built, checked by :func:`check_manifest`."""
    folder = Path(folder)
    manifest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in skip and not path.name.endswith(".lock"):
            stat = path.stat()
            manifest[path.relative_to(folder).as_posix()] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": file_sha256(path),
            }
    return manifest


_VERIFIED: dict[tuple[str, int, int], str] = {}


def check_manifest(folder: Path, manifest: Any, *, hashes: bool = True) -> str | None:
    """``None`` when every file of ``manifest`` is in ``folder`` with its size and SHA-256, else
    what is wrong (the first problem). A file already verified by this process and unchanged
    since (same size and modification time) is not hashed again; ``hashes=False`` checks sizes
    only (for quick listings)."""
    if not isinstance(manifest, dict) or not manifest:
        return "no manifest of its files"
    for name, expected in manifest.items():
        path = Path(folder) / name
        try:
            stat = path.stat()
        except OSError:
            return f"{name} is missing"
        if not isinstance(expected, dict) or stat.st_size != expected.get("size"):
            return f"{name} has the wrong size"
        if hashes and not file_matches(path, expected.get("size"), expected.get("sha256"), expected.get("mtime_ns")):
            return f"{name} does not match its checksum"
    return None


def file_matches(path: Path, size: Any, sha256: Any, mtime_ns: Any = None) -> bool:
    """Whether ``path`` has this size and SHA-256.

    Hashing a 500 MB model on every start would cost seconds, so a file whose size and
    modification time still equal those recorded with its checksum (``mtime_ns``), or that this
    process already hashed and that is unchanged since, is not hashed again: any write to the file
    (a truncation, a partial copy, an edit) changes its modification time and gets it hashed."""
    try:
        stat = Path(path).stat()
    except OSError:
        return False
    if stat.st_size != size:
        return False
    if mtime_ns is not None and stat.st_mtime_ns == mtime_ns:
        return True
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(key) == sha256:
        return True
    digest = file_sha256(path)
    if digest != sha256:
        return False
    _VERIFIED[key] = digest
    return True


def broken_link(path: Path) -> str | None:
    """What is wrong with ``path`` when it is a symbolic link that leads nowhere (a loop, or a
    dangling link), for messages more precise than "does not exist"; ``None`` otherwise."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if not candidate.is_symlink():
            continue
        try:
            candidate.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports loops this way
            return f"{candidate} is a symbolic link loop"
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                return f"{candidate} is a symbolic link loop"
            return f"{candidate} is a dangling symbolic link (to {os.readlink(candidate)})"
    return None
