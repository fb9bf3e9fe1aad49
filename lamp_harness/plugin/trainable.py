"""The trainable-generator mixin: training a personalizer by fine-tuning the generator itself.

Public plugin API (``from lamp_harness import GeneratorFineTuning``). A personalizer that mixes in
:class:`GeneratorFineTuning` becomes :class:`~lamp_harness.plugin.contracts.Trainable` with no training
code of its own: ``lamp train`` (and ``lamp run`` before its cell) fine-tunes the generator's model
on the gold outputs of the requests the personalizer builds. This module sits below the trainer
(:mod:`lamp_harness.train.training`) and imports only the contracts and the errors, so it costs nothing
to import and a plugin can subclass it without loading the training machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lamp_harness.base.errors import lamp_error
from lamp_harness.plugin.contracts import Example, ProfileItem, Task


class GeneratorFineTuning:
    """Mixin for personalizers whose training fine-tunes the generator itself (FiD, fine-tuned
    IPA). Needs ``self.generator`` (set in ``setup``) and ``self.personalize``.

    Override :meth:`trained_parameters` to train only part of the model.
    """

    fine_tunes_generator: ClassVar[bool] = True
    generator: Any

    def _llm(self) -> Any:
        if getattr(self, "generator", None) is None:
            raise RuntimeError(f"{type(self).__name__}.setup(task, generator, context) must be called first")
        # Asked once: a generator may unfreeze or detach its model from shared caches on the call.
        if getattr(self, "_llm_generator", None) is not self.generator:
            self._llm_module = self.generator.trainable_module()
            self._llm_generator = self.generator
        return self._llm_module

    def trained_parameters(self, module: Any) -> list[Any]:
        """The generator weights that train (default: all of them)."""
        return list(module.parameters())

    def _trained_ids(self, module: Any) -> set[int]:
        return {id(p) for p in self.trained_parameters(module)}

    def trainable_modules(self) -> list[Any]:
        """The generator's model (for the no-decay groups of AdamW)."""
        return [self._llm()]

    def parameters(self) -> list[Any]:
        """The generator weights that are trained."""
        module = self._llm()
        trained = self.trained_parameters(module)
        ids = {id(p) for p in trained}
        for param in module.parameters():
            param.requires_grad_(id(param) in ids)
        return trained

    def training_loss(self, task: Task, examples: Sequence[Example], retrieved: Sequence[Sequence[ProfileItem]]) -> Any:
        """The generator's loss on the gold outputs of the wrapped personalizer's requests."""
        requests = [
            self.personalize(task, ex, items)  # type: ignore[attr-defined]
            for ex, items in zip(examples, retrieved, strict=True)
        ]
        return self.generator.loss(requests, [ex.gold or "" for ex in examples])

    def set_training(self, mode: bool) -> None:
        """Switch the generator's module between training and evaluation mode."""
        self._llm().train(mode)

    def state_dict(self) -> dict[str, Any]:
        """The trained generator weights, by name."""
        module = self._llm()
        ids = self._trained_ids(module)
        return {name: p.detach().cpu().contiguous() for name, p in module.named_parameters() if id(p) in ids}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load trained generator weights."""
        module = self._llm()
        # named_parameters() names a tied tensor once (SmolLM2's lm_head is its input embeddings),
        # as state_dict() above saved it; loading it fills the alias too. Weights that did not
        # train (FiD's train=decoder) are not in the checkpoint and keep the model's values.
        names = {name for name, _ in module.named_parameters()}
        unknown = sorted(set(state) - names)
        if unknown:
            raise lamp_error(
                f"the checkpoint has {len(unknown)} tensors this generator does not (e.g. {unknown[0]!r})",
                where=type(self).__name__,
                fix="Load the checkpoint with the generator model it was trained with.",
            )
        ids = self._trained_ids(module)
        missing = sorted(name for name, p in module.named_parameters() if id(p) in ids and name not in state)
        if missing:
            raise lamp_error(
                f"the checkpoint lacks {len(missing)} trained tensors of this generator (e.g. {missing[0]!r})",
                where=type(self).__name__,
                fix="Load the checkpoint with the generator model it was trained with.",
            )
        module.load_state_dict(dict(state), strict=False)
