"""The prediction loop, one floor below the runner and the trainer.

``lamp run`` (:mod:`lamp_harness.run.runner`) and the evaluation at the end of ``lamp train``
(:mod:`lamp_harness.train.training`) both predict, score and time through these functions, so both
write the same ``predictions.jsonl``, ``metrics.json`` and ``timing.json``. This module imports
only contracts and the run store: the runner imports the trainer, and neither is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from lamp_harness.plugin.contracts import (
    Example,
    GenerationRequest,
    Generator,
    MetricResult,
    Personalizer,
    Prediction,
    ProfileItem,
    Task,
)
from lamp_harness.report.scores import score_cell
from lamp_harness.run.store import CellStore

DEFAULT_CHUNK = 16


def predict(
    task: Task,
    personalizer: Personalizer,
    generator: Generator,
    examples: Sequence[Example],
    store: CellStore,
    *,
    chunk: int,
    retrieved: Callable[[Example], Sequence[ProfileItem]],
    decode: str = "generate",
    on_batch: Callable[[Sequence[Example], Sequence[Prediction]], None] | None = None,
    max_new_tokens: int | None = None,
) -> list[Prediction]:
    """Predict ``examples`` batch by batch (``chunk`` at a time), appending each batch to ``store``
    before the next starts; returns the new predictions. Shared by ``lamp run`` and the
    evaluation at the end of ``lamp train``. ``max_new_tokens`` (the cell's budget, see
    :func:`lamp_harness.run.cells.generation_budget`) is put on every request, whatever the
    personalizer set, so the budget recorded is the one the generator gets."""
    predictions: list[Prediction] = []
    for start in range(0, len(examples), chunk):
        batch = examples[start : start + chunk]
        items = [tuple(retrieved(ex)) for ex in batch]
        requests = [
            with_budget(with_retrieved(personalizer.personalize(task, ex, it), it), max_new_tokens)
            for ex, it in zip(batch, items, strict=True)
        ]
        check_adapters(generator, requests)
        generations = generator.generate(requests, decode=decode)  # type: ignore[arg-type]
        new = [
            Prediction(
                ex.id,
                task.parse(gen.text),
                gen.text,
                req.prompt,
                tuple(i.id for i in it),
                gen.prompt_tokens,
                gen.generated_tokens,
                dict(req.metadata.get("notes") or {}),
            )
            for ex, req, gen, it in zip(batch, requests, generations, items, strict=True)
        ]
        store.append_predictions(new)
        predictions.extend(new)
        if on_batch is not None:
            on_batch(batch, new)
    return predictions


def check_adapters(generator: Generator, requests: Sequence[GenerationRequest]) -> None:
    """A one-line error when a request names a LoRA adapter and ``generator`` cannot serve one."""
    if not getattr(generator, "serves_adapters", False) and any(r.adapter for r in requests):
        from lamp_harness.base.errors import lamp_error

        raise lamp_error(
            f"generator {generator.name!r} cannot answer with per-user LoRA adapters",
            fix="Use the 'hf' generator (or 'vllm', which serves them with multi-LoRA).",
        )


def with_retrieved(request: GenerationRequest, items: Sequence[ProfileItem]) -> GenerationRequest:
    """``request`` carrying the retrieved ``items`` (unless its personalizer already set them),
    so every generator can see what was retrieved without parsing the prompt."""
    if request.retrieved or not items:
        return request
    return replace(request, retrieved=tuple(items))


def with_budget(request: GenerationRequest, max_new_tokens: int | None) -> GenerationRequest:
    """``request`` with the cell's generation budget (unchanged when ``max_new_tokens`` is ``None``)."""
    if max_new_tokens is None or request.max_new_tokens == max_new_tokens:
        return request
    return replace(request, max_new_tokens=max_new_tokens)


def chunk_size(generator: Generator) -> int:
    """How many examples one batch holds: the generator's ``batch_size``, else :data:`DEFAULT_CHUNK`."""
    size = getattr(generator, "batch_size", None)
    return size if isinstance(size, int) and size > 0 else DEFAULT_CHUNK


def top_k(example: Example, rankings: Mapping[str, Any], k: int) -> tuple[ProfileItem, ...]:
    """The ``k`` best profile items of ``example`` by ``rankings`` (indices per example id)."""
    if not rankings or k <= 0:
        return ()
    return tuple(example.profile[i] for i in rankings[example.id][:k])


def score_predictions(
    task: Task, examples: Sequence[Example], predictions: Sequence[Prediction], seed: int
) -> list[MetricResult]:
    """The metrics of ``predictions`` (empty on a split without golds); see
    :func:`lamp_harness.report.scores.score_cell`, which also gives the per-example scores behind them."""
    return score_cell(task, examples, predictions, seed=seed).metrics


def timing_summary(predictions: Sequence[Prediction], new: int, wall: float) -> dict[str, Any]:
    """``timing.json``: wall time and speed of the ``new`` predictions, token counts of all."""
    n = len(predictions)
    return {
        "wall_s": round(wall, 3),
        "examples": n,
        "examples_this_run": new,
        "examples_per_s": round(new / wall, 3) if wall > 0 and new else None,
        "mean_prompt_tokens": round(sum(p.prompt_tokens for p in predictions) / n, 2) if n else 0,
        "prompt_tokens": sum(p.prompt_tokens for p in predictions),
        "generated_tokens": sum(p.generated_tokens for p in predictions),
    }
