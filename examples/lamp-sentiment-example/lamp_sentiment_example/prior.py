"""The trainable ``user-prior`` personalizer: a small logistic model, trained by ``lamp train``
(or by ``lamp run`` before its cell), that scores each label from the user's labelling habit and
the input's words, and hands the scores to the generator in ``GenerationRequest.metadata``."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lamp_harness import (
    Example,
    GenerationRequest,
    Generator,
    Personalizer,
    ProfileItem,
    RunContext,
    Task,
    reject_unknown_args,
)

BUCKETS = 32  # hashed input words


class UserPrior(Personalizer):
    """Features: the share of the user's profile items carrying each label, and the input's words
    hashed into buckets; one linear layer gives a score per label. The prompt is the task's own,
    with the retrieved items; ``metadata["label_scores"]`` carries the probabilities."""

    name = "user-prior"
    needs_retriever = False  # the profile's label shares need no retrieval; retrieved items go in the prompt
    trainable = True

    def __init__(self, context: RunContext, **args: str) -> None:
        reject_unknown_args(args, (), f"personalizer {self.name!r}")
        self.context = context
        self.labels: tuple[str, ...] = ()
        self.layer: torch.nn.Linear | None = None
        self.generator: Generator | None = None

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        if not task.labels:
            from lamp_harness import lamp_error

            raise lamp_error(
                f"personalizer 'user-prior' needs a task with labels; {task.name!r} has none",
                fix="Use it with classification tasks such as toy-sentiment.",
            )
        self.generator = generator
        if self.labels != tuple(task.labels):
            self.labels = tuple(task.labels)
            self.layer = torch.nn.Linear(len(self.labels) + BUCKETS, len(self.labels))
            torch.nn.init.zeros_(self.layer.weight)  # deterministic start: every label equally likely
            torch.nn.init.zeros_(self.layer.bias)

    # -- the model ------------------------------------------------------------------------------
    def features(self, task: Task, example: Example) -> torch.Tensor:
        """Label shares over the profile, then hashed input words (each bucket 0 or 1)."""
        shares = [0.0] * len(self.labels)
        labelled = [item.get("label") for item in example.profile if item.get("label") in self.labels]
        for label in labelled:
            shares[self.labels.index(label)] += 1.0 / len(labelled)
        words = [0.0] * BUCKETS
        for word in task.query(example).lower().split():
            words[zlib.crc32(word.encode()) % BUCKETS] = 1.0
        return torch.tensor(shares + words)

    def logits(self, task: Task, examples: Sequence[Example]) -> torch.Tensor:
        assert self.layer is not None, "setup() must run first"
        return self.layer(torch.stack([self.features(task, e) for e in examples]))

    # -- Personalizer ---------------------------------------------------------------------------
    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        assert self.generator is not None, "setup() must run first"
        with torch.no_grad():
            probs = torch.softmax(self.logits(task, [example])[0], dim=-1).tolist()
        prompt = task.prompt(example, retrieved, self.generator.tokens, self.generator.max_input_tokens)
        scores = {label: round(p, 6) for label, p in zip(self.labels, probs, strict=True)}
        return GenerationRequest(
            example.id,
            prompt,
            choices=tuple(task.labels),
            max_new_tokens=task.max_new_tokens,
            metadata={"label_scores": scores},
        )

    def describe(self) -> Mapping[str, Any]:
        return {"name": self.name, "buckets": BUCKETS}

    # -- Trainable ------------------------------------------------------------------------------
    def parameters(self) -> list[torch.nn.Parameter]:
        assert self.layer is not None, "setup() must run first"
        return list(self.layer.parameters())

    def training_loss(
        self, task: Task, examples: Sequence[Example], retrieved: Sequence[Sequence[ProfileItem]]
    ) -> torch.Tensor:
        targets = torch.tensor([self.labels.index(str(e.gold).strip()) for e in examples])
        return torch.nn.functional.cross_entropy(self.logits(task, examples), targets)

    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.layer is not None, "setup() must run first"
        return {name: value.detach().cpu().clone() for name, value in self.layer.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert self.layer is not None, "setup() must run first"
        self.layer.load_state_dict(dict(state))
