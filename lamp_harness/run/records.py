"""What a cell puts on disk and hands to reporters, as types: :class:`CellRecord` (its
``config.json``), :class:`Timing` (its ``timing.json``) and :class:`CellResult` (the summary of a
run's cell, the payload of ``lamp_run_finished``).

This module sits below the runner, the trainer and the reports: it imports only the contracts.
The run store (:mod:`lamp_harness.run.store`) is the only code that reads or writes these files; every
other module receives these types from it.

Files outlive the code that wrote them: a record read from disk remembers the keys its file had, in
their order, and any key this version does not know, so that writing it back gives the same bytes
(``CellRecord.from_json(data).to_json() == data``, key order included). A key the file lacks reads
as ``None`` and is not written back; a record built by the runner writes the keys of today's format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from lamp_harness.plugin.contracts import MetricResult


class _Document(Mapping[str, Any]):
    """A record of a JSON object: known keys as fields, the others in ``extra``, the file's key
    order in ``order``. Also readable as the JSON object it stands for (``record["label"]``,
    ``record.get(...)``, ``dict(record)``), which is how code written against the plain dicts
    keeps working."""

    OPTIONAL: tuple[str, ...] = ()
    """Known keys that a new record writes only when set (the others are always written)."""

    extra: Mapping[str, Any]
    order: tuple[str, ...] | None

    @classmethod
    def _known(cls) -> tuple[str, ...]:
        known = cls.__dict__.get("_KNOWN")
        if known is None:
            known = tuple(f.name for f in fields(cls) if f.name not in ("extra", "order"))  # type: ignore[arg-type]
            cls._KNOWN = known  # type: ignore[attr-defined]
        return known

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record of a JSON object (a file's content), keys and their order kept."""
        known = set(cls._known())
        values = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**values, extra=extra, order=tuple(data))  # type: ignore[call-arg]  # the subclasses are dataclasses with these fields

    def to_json(self) -> dict[str, Any]:
        """The JSON object to write: the file's keys in its order (a record read from disk), or
        today's keys in the writer's order (a new one); keys set since are added after them."""
        known = self._known()
        if self.order is not None:
            keys = list(self.order)
        else:
            keys = [k for k in known if k not in self.OPTIONAL or getattr(self, k) is not None]
        present = set(keys)
        keys += [k for k in known if k not in present and getattr(self, k) is not None]
        keys += [k for k in self.extra if k not in present]
        out = {}
        for key in keys:
            if key in self.extra and key not in known:
                out[key] = self.extra[key]
            elif key in known:
                out[key] = _plain(getattr(self, key))
        return out

    def with_(self, **changes: Any) -> Self:
        """A copy with ``changes`` (keys the file did not have are written after its own)."""
        order = self.order
        if order is not None:
            order += tuple(k for k in changes if k not in order)
        return replace(self, **changes, order=order)  # type: ignore[type-var]

    # -- the JSON object's view (built once: the record is frozen) -----------------------------
    @cached_property
    def _view(self) -> dict[str, Any]:
        return self.to_json()

    def __getitem__(self, key: str) -> Any:
        return self._view[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)


def _plain(value: Any) -> Any:
    """A field's value as JSON holds it (a nested record as its object, a tuple as a list)."""
    if isinstance(value, _Document):
        return value.to_json()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, eq=True)
class CellRecord(_Document):
    """A cell's ``config.json``: every resolved setting, the data, the versions.

    - ``cell_id``, ``label``, ``task``, ``split``, ``scheme``: the cell and what it is run on;
    - ``data``: ``{"source", "checksums", "fingerprint", "examples"}``: the data it read;
    - ``limit``: ``--limit`` (``None`` for the whole split);
    - ``personalizer``, ``retriever``, ``generator``: each component's ``describe()`` with its
      arguments (``retriever`` is ``None`` without retrieval), ``k`` the items retrieved;
    - ``generation``: the generation budget and where it comes from; ``task_args``: the task's
      options; ``decode``, ``prompt_budget``, ``preset``, ``preset_notes``, ``seed``;
    - ``checkpoint``: the weights used (``--checkpoint`` or trained before the cell), ``training``:
      how they were trained, ``stale_weights``: what made them stale when kept by ``--allow-stale``;
    - ``versions`` (every loaded distribution), ``component_versions`` (those of the cell's
      components) and ``base_id`` (the cell id without the versions);
    - ``judges``: the judge of each judged metric, for tasks that have some.

    Files of older versions lack some keys (``None`` here); a training evaluation folder
    (``lamp train --eval``) holds other keys, kept in :attr:`extra`.
    """

    cell_id: str | None = None
    label: str | None = None
    task: str | None = None
    split: str | None = None
    scheme: str | None = None
    data: Mapping[str, Any] | None = None
    limit: int | None = None
    personalizer: Mapping[str, Any] | None = None
    retriever: Mapping[str, Any] | None = None
    k: int | None = None
    generator: Mapping[str, Any] | None = None
    generation: Mapping[str, Any] | None = None
    task_args: Mapping[str, str] | None = None
    decode: str | None = None
    prompt_budget: str | None = None
    preset: str | None = None
    preset_notes: Sequence[str] | None = None
    seed: int | None = None
    checkpoint: str | None = None
    versions: Mapping[str, str] | None = None
    component_versions: Mapping[str, str] | None = None
    base_id: str | None = None
    judges: Sequence[Mapping[str, Any]] | None = None
    training: Mapping[str, Any] | None = None
    stale_weights: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Keys this version does not know, kept as read."""
    order: tuple[str, ...] | None = field(default=None, compare=False)
    """The file's keys in its order (``None`` for a record built by a writer)."""

    OPTIONAL = ("judges", "training")

    def section(self, name: str) -> Mapping[str, Any]:
        """The component or part ``name`` (``generator``, ``data``...) when the file holds an
        object there, else an empty mapping (an old or hand-edited file)."""
        value = getattr(self, name) if name in self._known() else self.extra.get(name)
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, eq=True)
class Timing(_Document):
    """A cell's ``timing.json``: wall time and speed of the predictions made by this run, token
    counts of all of them, what the generator and the judges used, and for a data-parallel run the
    world size and each rank's figures. ``skipped`` (a cell finished earlier) and ``stale`` (kept
    by ``--allow-stale``) are set on what the reporters receive, never written."""

    wall_s: float | None = None
    examples: int | None = None
    examples_this_run: int | None = None
    examples_per_s: float | None = None
    mean_prompt_tokens: float | None = None
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    world_size: int | None = None
    ranks: Sequence[Mapping[str, Any]] | None = None
    usage: Mapping[str, Any] | None = None
    judging: Mapping[str, Any] | None = None
    skipped: bool | None = None
    stale: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    order: tuple[str, ...] | None = field(default=None, compare=False)

    OPTIONAL = (
        "wall_s",
        "examples",
        "examples_this_run",
        "examples_per_s",
        "mean_prompt_tokens",
        "prompt_tokens",
        "generated_tokens",
        "world_size",
        "ranks",
        "usage",
        "judging",
        "skipped",
        "stale",
    )
    """A new timing writes the figures it has (the runner's, read from ``timing_summary``, keep
    their keys and order, ``null`` included)."""


@dataclass(frozen=True, eq=True)
class CellResult(Mapping[str, Any]):
    """What a run did with one cell, one per cell in ``lamp_run_finished(results=...)`` and in the
    list :func:`~lamp_harness.run.runner.run_matrix` returns.

    ``cell_id`` is the folder it was read from (another cell's when ``stale``: one computed by other
    versions and kept by ``--allow-stale``); ``skipped`` says it was finished by an earlier run;
    ``timing`` is what this run measured (``None`` when it computed nothing). Also readable as the
    summary dict of earlier versions (``result["cell_id"]``, ``result.get("timing")``)."""

    cell_id: str
    label: str
    task: str
    metrics: tuple[MetricResult, ...]
    skipped: bool
    dir: Path
    timing: Timing | None = None
    stale: bool = False

    def to_json(self) -> dict[str, Any]:
        """The summary as a dict: the keys of earlier versions (``timing`` only when measured,
        ``stale`` only when set), ``dir`` as text."""
        out: dict[str, Any] = {
            "cell_id": self.cell_id,
            "label": self.label,
            "task": self.task,
            "metrics": list(self.metrics),
            "skipped": self.skipped,
        }
        if self.stale:
            out["stale"] = True
        out["dir"] = str(self.dir)
        if self.timing is not None:
            out["timing"] = self.timing
        return out

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


@dataclass(frozen=True)
class FinishedCell:
    """A finished cell as the reports read it from its folder (:meth:`CellStore.read_finished
    <lamp_harness.run.store.CellStore.read_finished>`): its ``config.json``, its ``metrics.json``
    values, the task and split ``metrics.json`` names (``None`` when it names none) and when it
    was written (the newer of two reruns wins)."""

    record: CellRecord
    metrics: tuple[MetricResult, ...]
    task: str | None
    split: str | None
    mtime: float
