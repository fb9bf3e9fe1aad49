"""The two caches every run shares: profile-item embeddings and full profile rankings.

**Embedding cache** (:class:`EmbeddingCache`): vectors of texts under one encoder identity (model,
revision, pooling, normalisation, max length, document or query role), kept in
``$LAMP_HOME/embeddings/<model>-<identity hash>/`` as append-only shard files (``.npz`` holding
the first 16 bytes of each text's SHA-256 and its float16 vector, plus a SHA-256 of both arrays).
Shards are written atomically, so an interrupted run keeps what it finished; many small shards are
merged into one when the cache is opened. A shard that is truncated or whose checksum does not
match is reported in one warning line naming the file, deleted, and its texts are encoded again:
corrupt vectors are never used. Vectors come back as float32 rounded through float16 whether
they were just computed or read from disk, so a cached rerun gives the same scores as the first
run. The dense retrievers and PPlug share the same cache for the same encoder settings.

**Ranking cache** (:func:`rank_examples`): each question's FULL profile ranking, computed once per
(task, ``retriever.cache_key()``, dataset fingerprint) and stored as JSON under
``$LAMP_HOME/rankings/``; every k and every personalizer reuses it. Each entry carries a digest of
the question's query and document texts, so a changed task definition or dataset recomputes the
affected questions instead of reusing stale rankings. Only missing questions are ranked, in
batches through ``retriever.rank``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from lamp_harness.base.errors import lamp_error, warn
from lamp_harness.base.io import atomic_write_bytes, atomic_write_json, lamp_home, stable_hash

if TYPE_CHECKING:
    import numpy as np

    from lamp_harness.plugin.contracts import Example, Ranking, Retriever, RunContext, Task

KEY_BYTES = 16
"""Bytes of a text's SHA-256 that identify it in the embedding cache."""
MAX_SHARDS = 32
"""More shard files than this are merged into one when a cache is opened."""
FLUSH_ROWS = 8192
"""New vectors are written to disk (one shard) at least every this many texts."""


def text_key(text: str) -> str:
    """The key of a text in the embedding cache: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _home(where: RunContext | Path | str | None) -> Path:
    if where is None:
        return lamp_home()
    if isinstance(where, (str, Path)):
        return Path(where)
    return Path(where.lamp_home)


# ---------------------------------------------------------------------------------------------
# Encoder identity
# ---------------------------------------------------------------------------------------------


def model_revision(resolved: Any) -> str | None:
    """``resolved.revision``, or for a local folder without one a fingerprint of its files (names,
    sizes, modification times), so that replacing the weights invalidates cached vectors."""
    if getattr(resolved, "revision", None):
        return str(resolved.revision)
    folder = Path(getattr(resolved, "path", "") or "")
    if not folder.is_dir():
        return None
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return "files-" + stable_hash(entries, 16)


def encoder_identity(
    resolved: Any, *, pooling: str, normalize: bool, max_tokens: int, role: str = "document", query_prefix: str = ""
) -> dict[str, Any]:
    """Everything that changes an encoder's vectors for a text (the embedding cache's key).

    ``resolved`` is a :class:`~lamp_harness.inputs.models.ResolvedModel`. ``role`` is ``"document"`` for
    profile items and ``"query"`` for queries (whose ``query_prefix`` is part of the identity).
    """
    identity = {
        "model": str(getattr(resolved, "source", "") or getattr(resolved, "name", "")),
        "revision": model_revision(resolved),
        "pooling": pooling,
        "normalize": bool(normalize),
        "max_tokens": int(max_tokens),
        "role": role,
    }
    if role == "query":
        identity["query_prefix"] = query_prefix
    return identity


# ---------------------------------------------------------------------------------------------
# Embedding cache
# ---------------------------------------------------------------------------------------------


class EmbeddingCache:
    """Vectors of texts for one encoder identity, on disk under ``$LAMP_HOME/embeddings/``.

    ``where`` is a :class:`~lamp_harness.plugin.contracts.RunContext`, a LAMP_HOME folder, or ``None``
    (``$LAMP_HOME``). Use :meth:`get_or_encode` for texts, or :meth:`get_many` / :meth:`put_many`
    with :func:`text_key` keys.
    """

    def __init__(self, where: RunContext | Path | str | None, identity: Mapping[str, Any]) -> None:
        self.identity = dict(identity)
        name = "".join(
            c if c.isalnum() or c in "-._" else "-" for c in str(self.identity.get("model", "encoder")).rsplit("/", 1)[-1]
        )[:40]
        self.root = _home(where) / "embeddings" / f"{name or 'encoder'}-{stable_hash(self.identity, 16)}"
        self.dim: int | None = None
        self.encoded = 0
        """Texts encoded (cache misses) through :meth:`get_or_encode` by this object."""
        self._rows: dict[bytes, tuple[int, int]] | None = None
        self._blocks: list[np.ndarray] = []
        self._seen: set[str] = set()

    @classmethod
    def for_model(
        cls,
        context: RunContext | Path | str | None,
        resolved: Any,
        *,
        pooling: str,
        normalize: bool,
        max_tokens: int,
        role: str = "document",
        query_prefix: str = "",
    ) -> EmbeddingCache:
        """The cache of ``resolved``'s vectors with these settings (see :func:`encoder_identity`)."""
        return cls(
            context,
            encoder_identity(
                resolved, pooling=pooling, normalize=normalize, max_tokens=max_tokens, role=role, query_prefix=query_prefix
            ),
        )

    # -- reading -----------------------------------------------------------------------------------
    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._rows is not None:
            return self._rows
        self._rows = {}
        shards = sorted(self.root.glob("shard-*.npz")) if self.root.is_dir() else []
        good: list[Path] = []
        for path in shards:
            self._seen.add(path.name)
            loaded = self._read_shard(path)
            if loaded is None:
                continue
            keys, vectors = loaded
            self._add_block(keys, vectors)
            good.append(path)
        if len(good) > MAX_SHARDS:
            self._merge(good)
        return self._rows

    def _refresh(self) -> None:
        """Index the shards other processes wrote since this cache was opened."""
        self._load()
        for path in sorted(self.root.glob("shard-*.npz")) if self.root.is_dir() else []:
            if path.name not in self._seen:
                self._seen.add(path.name)
                loaded = self._read_shard(path)
                if loaded is not None:
                    self._add_block(*loaded)

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors, checksum = data["keys"], data["vectors"], data["checksum"]
            problem = None
            if (
                keys.ndim != 2
                or keys.shape[1] != KEY_BYTES
                or vectors.ndim != 2
                or vectors.shape[0] != keys.shape[0]
                or vectors.dtype != np.float16
            ):
                problem = "unexpected array shapes"
            elif self.dim is not None and vectors.shape[1] != self.dim:
                problem = f"vectors of width {vectors.shape[1]}, expected {self.dim}"
            elif bytes(checksum.tobytes()).hex() != _checksum(keys, vectors):
                problem = "checksum mismatch"
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except Exception as exc:  # truncated zip, bad CRC, missing member...
            problem = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        if problem is not None:
            warn(f"embedding cache file {path} is corrupt ({problem}); deleting it, its texts will be encoded again")
            path.unlink(missing_ok=True)
            return None
        return keys, vectors

    def _add_block(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        assert self._rows is not None
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        block = len(self._blocks)
        self._blocks.append(vectors)
        for row, key in enumerate(keys):
            self._rows[key.tobytes()] = (block, row)

    def _merge(self, shards: Sequence[Path]) -> None:
        import numpy as np

        rows = self._rows or {}
        keys = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, KEY_BYTES)
        vectors = np.stack([self._blocks[b][r] for b, r in rows.values()]) if rows else None
        if vectors is None:
            return
        self._write_shard(keys, vectors)
        for path in shards:
            path.unlink(missing_ok=True)
        self._rows, self._blocks = {}, []
        self._add_block(keys, vectors)

    def __len__(self) -> int:
        return len(self._load())

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The float32 vector of each :func:`text_key` key, or ``None`` where it is not cached."""
        rows = self._load()
        found: list[np.ndarray | None] = []
        for key in keys:
            where = rows.get(bytes.fromhex(key)[:KEY_BYTES])
            found.append(None if where is None else self._blocks[where[0]][where[1]].astype("float32"))
        return found

    # -- writing -----------------------------------------------------------------------------------
    def put_many(self, vectors: Mapping[str, Any]) -> None:
        """Store vectors (``{text_key: array}``; numpy arrays or CPU tensors) in one new shard."""
        import numpy as np

        if not vectors:
            return
        keys = np.frombuffer(b"".join(bytes.fromhex(k)[:KEY_BYTES] for k in vectors), dtype=np.uint8).reshape(-1, KEY_BYTES)
        matrix = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors.values()])
        self._store(keys, matrix)

    def _store(self, keys: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Write a shard and index it; returns the float16-rounded vectors as float32."""
        import numpy as np

        self._load()
        if self.dim is not None and matrix.shape[1] != self.dim:
            raise ValueError(
                f"embedding cache {self.root}: vectors of width {matrix.shape[1]}, the cache holds width {self.dim}"
            )
        half = matrix.astype(np.float16)
        if not np.all(np.isfinite(half)):
            raise ValueError(f"embedding cache {self.root}: non-finite vectors (float16 overflow?)")
        self._write_shard(keys, half)
        self._add_block(keys, half)
        return half.astype(np.float32)

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        import numpy as np

        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        vectors = np.ascontiguousarray(vectors, dtype=np.float16)
        checksum = np.frombuffer(bytes.fromhex(_checksum(keys, vectors)), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys, vectors=vectors, checksum=checksum)
        if not (self.root / "identity.json").is_file():
            atomic_write_json(self.root / "identity.json", self.identity)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        self._seen.add(name)
        atomic_write_bytes(self.root / name, buffer.getvalue())

    def get_or_encode(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """float32 vectors ``[len(texts), dim]``: cached ones read, the others encoded with
        ``encode(list_of_texts) -> array`` (each distinct text once) and stored before returning.
        """
        import numpy as np

        rows = self._load()
        digests = [hashlib.sha256(t.encode("utf-8")).digest()[:KEY_BYTES] for t in texts]

        def missing() -> list[tuple[bytes, str]]:
            found: dict[bytes, str] = {}
            for digest, text in zip(digests, texts, strict=True):
                if digest not in rows and digest not in found:
                    found[digest] = text
            return list(found.items())

        if missing():
            from filelock import FileLock

            # Processes encoding for the same cache take turns; each reuses what the others wrote.
            self.root.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.root / ".lock")):
                self._refresh()
                pending = missing()
                for start in range(0, len(pending), FLUSH_ROWS):
                    part = pending[start : start + FLUSH_ROWS]
                    matrix = np.asarray(encode([text for _, text in part]), dtype=np.float32)
                    if matrix.ndim != 2 or matrix.shape[0] != len(part):
                        raise ValueError(f"encoder returned shape {matrix.shape} for {len(part)} texts")
                    keys = np.frombuffer(b"".join(d for d, _ in part), dtype=np.uint8).reshape(-1, KEY_BYTES)
                    self._store(keys, matrix)
                    self.encoded += len(part)
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        out = np.empty((len(texts), self.dim or 0), dtype=np.float32)
        for i, digest in enumerate(digests):
            block, row = rows[digest]
            out[i] = self._blocks[block][row]
        return out


def _checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    digest = hashlib.sha256(keys.tobytes())
    digest.update(str(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Ranking cache
# ---------------------------------------------------------------------------------------------


def rank_query(task: Task, example: Example) -> Any:
    """The :class:`~lamp_harness.plugin.contracts.RankQuery` of one example under ``task``."""
    from lamp_harness.plugin.contracts import RankQuery

    return RankQuery(
        example.id, task.query(example), tuple(task.document(item) for item in example.profile), example.profile
    )


def _digest(query: Any) -> str:
    digest = hashlib.sha256(query.query.encode("utf-8"))
    for document in query.documents:
        digest.update(b"\x00")
        digest.update(document.encode("utf-8"))
    return digest.hexdigest()[:20]


def ranking_path(
    context: RunContext | Path | str | None, task_name: str, key: Mapping[str, Any], dataset_fingerprint: str
) -> Path:
    """Where the rankings of one (task, retriever configuration, dataset) live."""
    retriever = "".join(c if c.isalnum() or c in "-._+" else "-" for c in str(key.get("name", "r")))
    return (
        _home(context) / "rankings" / task_name / f"{retriever}-{stable_hash(dict(key), 16)}" / f"{dataset_fingerprint}.json"
    )


def _read_rankings(path: Path, key: Mapping[str, Any]) -> dict[str, list[Any]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("retriever") != json.loads(json.dumps(dict(key), default=str)):
            raise ValueError("written for another retriever configuration")
        entries = data["rankings"]
        if not isinstance(entries, dict):
            raise ValueError("'rankings' is not an object")
        if "sha256" in data and data["sha256"] != _rankings_checksum(entries):
            raise ValueError("checksum mismatch")
        return entries
    except (OSError, ValueError, KeyError) as exc:
        warn(
            f"ranking cache file {path} is unreadable ({' '.join(str(exc).split())[:120]}); "
            "the rankings will be computed again"
        )
        return {}


def _rankings_checksum(entries: Mapping[str, Any]) -> str:
    text = json.dumps(entries, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _valid_ranking(entry: Any, digest: str, size: int) -> TypeGuard[list[Any]]:
    """A cached entry is used only when it is ``[digest, permutation of range(size)]``."""
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == digest and isinstance(entry[1], list)):
        return False
    positions = entry[1]
    return len(positions) == size and all(type(p) is int for p in positions) and sorted(positions) == list(range(size))


def rank_examples(
    retriever: Retriever,
    task: Task,
    dataset_fingerprint: str,
    examples: Iterable[Example],
    context: RunContext,
    progress: bool = True,
    *,
    batch_size: int = 512,
    save_every_s: float = 20.0,
) -> dict[str, Ranking]:
    """Every example's full profile ranking (positions into ``example.profile``, best first).

    Rankings already cached for this (task, ``retriever.cache_key()``, dataset fingerprint) and
    whose query/document texts are unchanged are reused; the others are computed in batches of
    ``batch_size`` through ``retriever.rank`` and saved (atomically, at least every
    ``save_every_s`` seconds, and when done or interrupted). An empty ``cache_key()`` disables
    caching. Empty profiles rank to ``()`` without calling the retriever.

    The file carries a SHA-256 of its entries and each entry must be a permutation of its
    profile's positions: a damaged file or entry is reported in one warning line and recomputed,
    never used. Processes computing the same file take turns on a file lock, so the second one
    reuses what the first computed.
    """
    examples = list(examples)
    key = dict(retriever.cache_key())
    path = ranking_path(context, task.name, key, dataset_fingerprint) if key else None
    stored = _read_rankings(path, key) if path is not None else {}
    result, todo = _cached(task, examples, stored, path)
    if todo and path is not None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            stored = _read_rankings(path, key)  # another process may have computed them meanwhile
            result, todo = _cached(task, examples, stored, None)
            if todo:
                _compute(
                    retriever,
                    todo,
                    result,
                    stored,
                    path,
                    key,
                    task.name,
                    dataset_fingerprint,
                    progress,
                    batch_size,
                    save_every_s,
                )
    elif todo:
        _compute(
            retriever, todo, result, stored, path, key, task.name, dataset_fingerprint, progress, batch_size, save_every_s
        )
    return {example.id: result[example.id] for example in examples}


def _cached(
    task: Task, examples: Sequence[Example], stored: Mapping[str, Any], path: Path | None
) -> tuple[dict[str, Ranking], list[tuple[Any, str]]]:
    """The rankings ``stored`` holds validly, and the (query, digest) pairs still to compute."""
    result: dict[str, Ranking] = {}
    todo: list[tuple[Any, str]] = []
    corrupt = 0
    for example in examples:
        if example.id in result:
            continue
        if not example.profile:
            result[example.id] = ()
            continue
        query = rank_query(task, example)
        digest = _digest(query)
        entry = stored.get(example.id)
        if _valid_ranking(entry, digest, len(example.profile)):
            result[example.id] = tuple(entry[1])
        else:
            if isinstance(entry, list) and len(entry) == 2 and entry[0] == digest:
                corrupt += 1
            todo.append((query, digest))
    if corrupt and path is not None:
        warn(
            f"ranking cache file {path}: {corrupt} damaged entr{'y' if corrupt == 1 else 'ies'} "
            "(not a ranking of the profile); computing them again"
        )
    return result, todo


def _compute(
    retriever: Retriever,
    todo: list[tuple[Any, str]],
    result: dict[str, Ranking],
    stored: dict[str, list[Any]],
    path: Path | None,
    key: Mapping[str, Any],
    task_name: str,
    fingerprint: str,
    progress: bool,
    batch_size: int,
    save_every_s: float,
) -> None:
    def save() -> None:
        if path is not None:
            atomic_write_json(
                path,
                {
                    "task": task_name,
                    "dataset": fingerprint,
                    "retriever": json.loads(json.dumps(key, default=str)),
                    "rankings": stored,
                    "sha256": _rankings_checksum(stored),
                },
            )

    from rich.progress import Progress

    last_save = time.monotonic()
    show = progress and len(todo) > batch_size
    with Progress(transient=True, disable=not show) as bar:
        task_id = bar.add_task(f"Ranking profiles ({key.get('name', retriever.name)})", total=len(todo))
        try:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                rankings = retriever.rank([q for q, _ in batch])
                if len(rankings) != len(batch):
                    raise lamp_error(
                        f"retriever {retriever.name!r} returned {len(rankings)} rankings for {len(batch)} questions",
                        fix="Fix the retriever plugin: rank() returns one ranking per query.",
                    )
                for (query, digest), ranking in zip(batch, rankings, strict=True):
                    positions = [int(p) for p in ranking]
                    if sorted(positions) != list(range(len(query.items))):
                        raise lamp_error(
                            f"retriever {retriever.name!r} returned {positions[:8]} for a "
                            f"profile of {len(query.items)} items, not a full ranking",
                            where=f"example {query.example_id}",
                            fix="Fix the retriever plugin: rankings must be permutations.",
                        )
                    result[query.example_id] = tuple(positions)
                    stored[query.example_id] = [digest, positions]
                bar.advance(task_id, len(batch))
                if time.monotonic() - last_save > save_every_s:
                    save()
                    last_save = time.monotonic()
        finally:
            save()
