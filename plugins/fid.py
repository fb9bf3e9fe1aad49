"""FiD (fusion-in-decoder) personalizer for encoder-decoder generators (LaMP paper).

Each of the k retrieved items becomes one passage that the encoder reads on its own; the decoder
cross-attends to the concatenation of all k encoder outputs.

Passage format: passage ``i`` is the task's aggregated input prompt (the IPA prompt) built with that
one item, under the same token budget as IPA (``generator.max_input_tokens``, the input at most 60%
of it, the item's free text truncated to the rest). So each passage is exactly the IPA k=1 prompt
for that item, and FiD with k=1 is the plain model on the IPA k=1 prompt. With no retrieved items
(an empty profile) the single passage is the bare input.

FiD is trainable: ``lamp train`` fine-tunes the generator itself (as the LaMP paper fine-tunes
FlanT5-base with FiD, k=16). ``train=all`` (default) trains every weight; ``train=decoder`` only
the decoder (plus the LM head), a cheaper variant for small machines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lamp_harness import (
    Example,
    GenerationRequest,
    Generator,
    GeneratorFineTuning,
    Options,
    Personalizer,
    ProfileItem,
    RunContext,
    Task,
    lamp_error,
    option,
    prompt_options,
)


@dataclass(frozen=True)
class FiDOptions(Options):
    """FiD's options (``--personalizer-arg``)."""

    train: str = option("all", "what fine-tuning trains: the whole model (all) or its decoder", choices=("all", "decoder"))


class FusionInDecoder(GeneratorFineTuning, Personalizer):
    """``fid``: one passage per retrieved item (input + that item's PPEP), fused in the decoder."""

    name = "fid"
    needs_retriever = True
    accepts_retriever = True
    requires_encoder_decoder = True
    trainable = True
    options = FiDOptions

    def __init__(self, context: RunContext, **args: str) -> None:
        self.train_part = FiDOptions.parse(args, f"personalizer {self.name!r}").train
        self.generator: Generator | None = None

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        if not generator.is_encoder_decoder:
            described = generator.describe()
            model = described.get("model") or described.get("name") or generator.name
            raise lamp_error(
                f"FiD needs an encoder-decoder generator, but {model!r} is decoder-only",
                where=f"personalizer {self.name!r}",
                fix="Use an encoder-decoder model (e.g. --generator flan-t5-base), or the ipa personalizer.",
            )
        self.generator = generator
        self._tokens = generator.tokens
        self.max_input_tokens = generator.max_input_tokens
        self._budget = prompt_options(context)

    def passages(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> tuple[str, ...]:
        """One passage per retrieved item (the IPA k=1 prompt of that item); the bare input when
        there is none."""
        if not retrieved:
            return (task.prompt(example, (), self._tokens, self.max_input_tokens, **self._budget),)
        return tuple(
            task.prompt(example, (item,), self._tokens, self.max_input_tokens, **self._budget) for item in retrieved
        )

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        if self.generator is None:
            raise RuntimeError("FusionInDecoder.setup(task, generator, context) must be called first")
        bare = task.prompt(example, (), self._tokens, self.max_input_tokens, **self._budget)
        return GenerationRequest(
            example.id,
            bare,
            passages=self.passages(task, example, retrieved),
            choices=task.choices(example),
            max_new_tokens=task.max_new_tokens,
        )

    def trained_parameters(self, module: Any) -> list[Any]:
        """All generator weights, or only the decoder's (``train=decoder``)."""
        if self.train_part == "all":
            return list(module.parameters())
        decoder = module.get_decoder() if hasattr(module, "get_decoder") else None
        if decoder is None:
            raise lamp_error(
                "train=decoder needs a model with a separate decoder",
                where=f"personalizer {self.name!r}",
                fix="Use train=all.",
            )
        params = {id(p): p for p in decoder.parameters()}
        head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
        if head is not None:
            params.update({id(p): p for p in head.parameters()})
        return list(params.values())

    def describe(self) -> Mapping[str, Any]:
        return {"name": self.name, "train": self.train_part}
