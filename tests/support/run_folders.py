"""Fabricated run folders (the run store's on-disk layout) for leaderboard and export tests.

Writes what ``lamp run`` writes per cell (config.json, predictions.jsonl, metrics.json,
timing.json) without running anything, so table layout and export rules can be pinned exactly.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"

# (personalizer, retriever, k): three methods, in the runner's label style.
METHODS = (("none", None, None), ("ipa", "bm25", 1), ("ipa", "bm25", 4))

# task -> metric -> (higher_is_better, {method index: (value, ci_low, ci_high)})
VALUES: dict[str, dict[str, tuple[bool, dict[int, tuple[float, float, float]]]]] = {
    "lamp-1": {
        "accuracy": (True, {0: (0.5, 0.40, 0.60), 1: (0.6, 0.50, 0.70), 2: (0.65, 0.55, 0.75)}),
        "f1": (True, {0: (0.45, 0.35, 0.55), 1: (0.58, 0.48, 0.68), 2: (0.5801, 0.48, 0.68)}),
    },
    "lamp-3": {
        "MAE": (False, {0: (0.4, 0.30, 0.50), 1: (0.3, 0.20, 0.40), 2: (0.35, 0.25, 0.45)}),
        "RMSE": (False, {0: (0.7, 0.60, 0.80), 1: (0.65, 0.55, 0.75), 2: (0.6, 0.50, 0.70)}),
    },
}


def label(personalizer: str, retriever: str | None, k: int | None, model: str = MODEL) -> str:
    parts = [personalizer] + ([retriever, f"k={k}"] if retriever else []) + [model]
    return " / ".join(parts)


def write_cell(
    root: Path,
    *,
    task: str,
    personalizer: str,
    retriever: str | None = None,
    k: int | None = None,
    split: str = "dev",
    scheme: str | None = "user",
    model: str = MODEL,
    metrics: Sequence[dict[str, Any]] = (),
    outputs: Sequence[tuple[str, str]] = (),
    with_label: bool = True,
    cell_id: str | None = None,
    mtime: float | None = None,
) -> Path:
    """One finished cell folder under ``root``; returns its path."""
    slug = "_".join(x for x in (task, personalizer, retriever or "", f"k{k}" if retriever else "") if x)
    cell_id = cell_id or f"{slug}-{split}-{zlib.crc32(f'{model}|{scheme}'.encode()):08x}"
    cell = Path(root) / cell_id
    cell.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "cell_id": cell_id,
        "task": task,
        "split": split,
        "data": {"source": "fabricated", "checksums": {}, "fingerprint": "0" * 16},
        "personalizer": {"name": personalizer},
        "retriever": {"name": retriever} if retriever else None,
        "k": k if retriever else 1,
        "generator": {"name": "hf", "model": f"/models/{model}", "plugin": "hf"},
        "preset": "offline",
        "seed": 0,
        "limit": None,
        "versions": {},
    }
    if scheme is not None:
        config["scheme"] = scheme
    if with_label:
        config["label"] = label(personalizer, retriever, k, model)
    (cell / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (cell / "predictions.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "example_id": i,
                    "output": o,
                    "raw": o,
                    "prompt": "",
                    "retrieved": [],
                    "prompt_tokens": 3,
                    "generated_tokens": 1,
                }
            )
            + "\n"
            for i, o in outputs
        ),
        encoding="utf-8",
    )
    n = max((m.get("n", 0) for m in metrics), default=0)
    (cell / "metrics.json").write_text(
        json.dumps({"task": task, "split": split, "n": n, "metrics": list(metrics)}), encoding="utf-8"
    )
    (cell / "timing.json").write_text(
        json.dumps(
            {
                "wall_s": 1.0,
                "examples_per_s": 2.0,
                "mean_prompt_tokens": 3.0,
                "generated_tokens": 2,
                "examples": len(outputs),
            }
        ),
        encoding="utf-8",
    )
    if mtime is not None:
        os.utime(cell / "metrics.json", (mtime, mtime))
    return cell


def fabricate_runs(root: Path, *, split: str = "dev", offset: float = 0.0) -> Path:
    """Two tasks x three methods with the values of :data:`VALUES` (``offset`` added to each);
    the ``none`` cells carry no ``label`` so the leaderboard must build it."""
    for task, metrics in VALUES.items():
        for index, (personalizer, retriever, k) in enumerate(METHODS):
            entries = [
                {
                    "name": name,
                    "value": values[index][0] + offset,
                    "higher_is_better": higher,
                    "ci_low": values[index][1],
                    "ci_high": values[index][2],
                    "n": 2,
                }
                for name, (higher, values) in metrics.items()
            ]
            outputs = [(f"{task}-q{j}", f"{personalizer}-{retriever}-{k}-{j}") for j in range(2)]
            write_cell(
                root,
                task=task,
                personalizer=personalizer,
                retriever=retriever,
                k=k,
                split=split,
                metrics=entries,
                outputs=outputs,
                with_label=personalizer != "none",
            )
    return Path(root)


def rewrite_config(cell: Path, change) -> None:
    """Apply ``change`` to a real cell's ``config.json`` as if the cell had been run that way:
    ``metrics.json`` records the checksum of the configuration its results belong to, so it is
    updated too (an edit alone makes the cell inconsistent, which is what the run store checks)."""
    from lamp_harness.run.store import scores_digest

    config = json.loads((cell / "config.json").read_text(encoding="utf-8"))
    change(config)
    (cell / "config.json").write_text(json.dumps(config), encoding="utf-8")
    metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
    if "config" in metrics:
        metrics["config"]["sha256"] = scores_digest(config)
        (cell / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
