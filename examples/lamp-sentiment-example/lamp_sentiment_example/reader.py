"""The ``prior-reader`` generator: no model; it reads what the personalizer and the retriever
sent (``GenerationRequest.metadata`` and ``GenerationRequest.retrieved``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lamp_harness import DecodeMode, Generation, GenerationRequest, Generator, RunContext, lamp_error, reject_unknown_args


class _Words:
    """Whitespace tokens: enough for prompt budgets of a model-free generator."""

    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[: max(0, max_tokens)])


class PriorReader(Generator):
    """Answers, for each request: the label with the best ``metadata["label_scores"]``; else the
    most frequent ``label`` among the retrieved items; else the first choice (or the prompt's
    last word). Run-level settings it can use are declared: ``batch_size`` only, so
    ``--num-beams`` is noted as unused instead of failing."""

    name = "prior-reader"

    def __init__(self, context: RunContext, batch_size: str | int = 32, **args: str) -> None:
        reject_unknown_args(args, (), f"generator {self.name!r}")
        self.batch_size = int(batch_size)
        self._tokens = _Words()

    @property
    def tokens(self) -> _Words:
        return self._tokens

    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        if any(r.is_fusion for r in requests):
            raise lamp_error("generator 'prior-reader' cannot fuse passages", fix="Use it with ipa, none or user-prior.")
        out = []
        for request in requests:
            scores = request.metadata.get("label_scores") or {}
            votes = Counter(item.get("label") for item in request.retrieved if item.get("label"))
            if scores:
                text = max(sorted(scores), key=lambda label: scores[label])
            elif votes:
                text = sorted(votes, key=lambda label: (-votes[label], label))[0]
            elif request.choices:
                text = request.choices[0]
            else:
                text = (request.prompt.split() or [""])[-1]
            out.append(Generation(text, self._tokens.count(request.prompt), 1))
        return out

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "batch_size": self.batch_size}
