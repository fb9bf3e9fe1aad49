"""Shared helpers of the experiment-tracker reporters (MLflow, W&B): what a finished cell says."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from lamp_harness import LampError, lamp_error

# core-internal: the tracker reporters upload a cell's files by name, until hooks hand them typed cell records.
from lamp_harness.run.store import CONFIG, METRICS, PREDICTIONS, SCORES, TIMING, CellStore

ARTIFACTS = (CONFIG, METRICS, PREDICTIONS, SCORES, TIMING)


def require(module: str, extra: str, package: str) -> None:
    """A one-line error with the install command when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise lamp_error(
            f"the {extra} reporter needs the {package} package, which is not installed",
            fix=f"pip install 'lamp-harness[{extra}]' (or pip install {package}).",
        )


def cell_config(cell: Any) -> dict[str, Any]:
    """The cell's ``config.json`` (its :class:`~lamp_harness.run.records.CellRecord`, read through the
    run store), secrets masked (a folder written before they were: see :mod:`lamp_harness.base.secrets`);
    empty when it cannot be read: a reporter never stops a run."""
    try:
        return CellStore(Path(cell.dir)).read_record().to_json()
    except (LampError, OSError, ValueError):
        return {}


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as flat ``a.b.c`` keys with text values (what trackers take as params)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, ensure_ascii=False)
        else:
            flat[name] = "" if value is None else str(value)
    return flat


def metric_values(metrics: list[Any], timing: Mapping[str, Any]) -> dict[str, float]:
    """Each metric with its interval (``NAME``, ``NAME.ci_low``, ``NAME.ci_high``) and the numeric
    timing figures (``timing.wall_s``...)."""
    values: dict[str, float] = {}
    for m in metrics:
        m = asdict(m) if is_dataclass(m) else dict(m)
        values[m["name"]] = float(m["value"])
        for bound in ("ci_low", "ci_high"):
            if m.get(bound) is not None:
                values[f"{m['name']}.{bound}"] = float(m[bound])
    for key, value in timing.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[f"timing.{key}"] = float(value)
    return values


def artifacts(cell: Any) -> list[Path]:
    """The cell's files worth attaching: config, predictions, metrics, per-example scores, timing."""
    return CellStore(Path(cell.dir)).files(ARTIFACTS)
