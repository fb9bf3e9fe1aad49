"""The retrieval-augmented baseline personalizers of the LaMP paper: ``none`` and ``ipa``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lamp_harness import (
    Example,
    GenerationRequest,
    Generator,
    NoOptions,
    Personalizer,
    ProfileItem,
    RunContext,
    Task,
    prompt_options,
)


class NonPersonalized(Personalizer):
    """``none``: the bare task input, no profile (the non-personalized baseline)."""

    name = "none"
    needs_retriever = False
    accepts_retriever = False
    options = NoOptions

    def __init__(self, context: RunContext, **args: str) -> None:
        NoOptions.parse(args, f"personalizer {self.name!r}")

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        self._tokens = generator.tokens
        self.max_input_tokens = generator.max_input_tokens
        self._budget = prompt_options(context)

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        prompt = task.prompt(example, (), self._tokens, self.max_input_tokens, **self._budget)
        return GenerationRequest(example.id, prompt, choices=task.choices(example), max_new_tokens=task.max_new_tokens)

    def describe(self) -> Mapping[str, Any]:
        return {"name": self.name}


class InPromptAugmentation(NonPersonalized):
    """``ipa``: the top-k retrieved profile items, each as its PPEP, in the prompt (LaMP's AIP)
    with the official token-budget truncation."""

    name = "ipa"
    needs_retriever = True
    accepts_retriever = True

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        return self._request(task, example, tuple(retrieved))

    def _request(self, task: Task, example: Example, items: tuple[ProfileItem, ...]) -> GenerationRequest:
        """The request with ``items`` in the prompt, noting the share of a long context the task's
        budget cut (``Task.truncated_share``) when the task reports one."""
        prompt = task.prompt(example, items, self._tokens, self.max_input_tokens, **self._budget)
        share_of = getattr(task, "truncated_share", None)  # tasks written before the hook lack it
        share = share_of(example, items, self._tokens, self.max_input_tokens) if share_of else None
        notes = {} if share is None else {"notes": {"truncated_share": round(float(share), 4)}}
        return GenerationRequest(
            example.id, prompt, choices=task.choices(example), max_new_tokens=task.max_new_tokens, metadata=notes
        )


class FullProfile(InPromptAugmentation):
    """``full``: the whole profile in the prompt, in profile order (for a long-context task, the
    entire history up to the question), fitted to the generator's input budget by the task's
    prompt (PersonaMem cuts the oldest context first, and each prediction records the share cut).
    Needs no retriever."""

    name = "full"
    needs_retriever = False
    accepts_retriever = False

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        return self._request(task, example, tuple(example.profile))
