"""PersonaMem: questions about one user, answered from their long multi-session history with a
chatbot by choosing among options (accuracy, with the official per-question-type breakdown).

A task plugin written against the plugin API only (:mod:`lamp_harness.plugin.contracts`,
:mod:`lamp_harness.inputs.metrics`, :mod:`lamp_harness.base.errors`).

**Data.** The official release (Hugging Face ``bowen-upenn/PersonaMem``) has, per context size
(32k, 128k, 1M tokens), a questions table (``questions_{size}.csv``) and the shared contexts
(``shared_contexts_{size}.jsonl``: one line ``{context_id: [message, ...]}``, each message a
``{"role", "content"}`` chat turn). Many questions point into one context: a question sees the
messages before its ``end_index_in_shared_context`` only. The ``hub`` data source converts a size
into the harness's files: one question per row, its profile the context's **sessions up to the
question's point in the timeline** (a session starts at each ``system`` message; an item holds
the session's messages, ``start`` and ``end`` message indices, and never a message at or after the
question's end index), its gold the correct option (``(a)`` to ``(d)``). Questions are written
grouped by shared context and in timeline order, so consecutive requests share the longest
prompt prefix (prefix caches reuse it). The question id is ``{question_type}:{question_id}``: the
type is what the per-type breakdown groups by.

**Prompt** (the official one): the context's messages as ``role: content`` lines, then the
question, the official instruction and the options block. The profile abstraction carries the
context: ``ipa`` puts the top-k retrieved sessions (any retriever) in the prompt in timeline
order, ``full`` puts all of them; either way the context is cut **from the oldest end** to the
generator's input budget, so the question and options always survive, and the share of context
tokens dropped is returned by :meth:`PersonaMem.truncated_share`. ``none`` asks with no context.

**Answering**, both official ways: ``--decode labels`` (discriminative) scores each option's text
as a continuation and picks the likeliest (:meth:`choices`); ``--decode generate`` lets the model
answer and extracts the option as the official script does (:meth:`parse`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lamp_harness import Example, ExampleScores, MetricResult, ProfileItem, Task, TokenCounter, metrics

INSTRUCTION = (
    "Find the most appropriate model response and give your final answer (a), (b), (c), or (d) "
    "after the special token <final_answer>."
)
LETTERS = ("a", "b", "c", "d")
_OPTION = re.compile(r"\(([a-d])\)")
_BARE = re.compile(r"\b([a-d])\b")
INVALID = "(none)"


def extract_option(text: str) -> str:
    """The option a free-text answer gives, as the official evaluation script reads it: after the
    last ``<final_answer>`` (and without a closing tag), the letters in parentheses, else bare
    letters; the answer counts only when exactly one letter is found (else :data:`INVALID`); when
    the part after the tag has none, the whole response is tried."""
    full = text
    answer = text.strip()
    if "<final_answer>" in answer:
        answer = answer.split("<final_answer>")[-1].strip()
    answer = answer.removesuffix("</final_answer>").strip()
    for candidate in (answer, full):
        lowered = candidate.lower()
        found = set(_OPTION.findall(lowered)) or set(_BARE.findall(lowered))
        if len(found) == 1:
            return f"({found.pop()})"
    return INVALID


def question_type(example_id: str) -> str:
    """The question type a PersonaMem id carries (``{type}:{question id}``)."""
    return example_id.split(":", 1)[0] if ":" in example_id else "unknown"


class PersonaMem(Task):
    """PersonaMem multiple choice over a user's long shared conversation history."""

    benchmark: ClassVar[str | None] = "PersonaMem"

    kind = "classification"
    labels = tuple(f"({letter})" for letter in LETTERS)
    profile_fields = ("text", "start", "end")
    max_new_tokens = 64
    data_source = "hub"
    hub_repo: ClassVar[str] = "bowen-upenn/PersonaMem"
    size: ClassVar[str]

    # -- the hub layout ---------------------------------------------------------------------------
    def hub_files(self) -> tuple[str, str]:
        """The questions table and the shared contexts of this size, as named in the release."""
        return f"questions_{self.size}.csv", f"shared_contexts_{self.size}.jsonl"

    # -- retrieval --------------------------------------------------------------------------------
    def query(self, example: Example) -> str:
        return self.question(example)

    def document(self, item: ProfileItem) -> str:
        return item.get("text")

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        return item.get("text") if free_text is None else free_text

    # -- prompt -----------------------------------------------------------------------------------
    @staticmethod
    def question(example: Example) -> str:
        """The user's question or message (the input before the instruction)."""
        return example.input.split("\n\n" + INSTRUCTION, 1)[0].strip()

    @staticmethod
    def options(example: Example) -> tuple[str, ...]:
        """The option lines of the input (``(a) ...`` to ``(d) ...``)."""
        block = example.input.split(INSTRUCTION, 1)[-1]
        found = [line.strip() for line in block.splitlines() if _OPTION.match(line.strip())]
        return tuple(found)

    def choices(self, example: Example) -> tuple[str, ...]:
        return self.options(example) or tuple(self.labels)

    def context_text(self, items: Sequence[ProfileItem]) -> str:
        """The sessions of ``items`` in timeline order (by their start index), one after another."""
        ordered = sorted(items, key=_start)
        return "\n\n".join(item.get("text") for item in ordered)

    def prompt(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int = 256, **_: Any
    ) -> str:
        context, _share = self.fitted_context(example, items, tokens, max_tokens)
        return f"{context}\n\n{example.input}" if context else example.input

    def fitted_context(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> tuple[str, float]:
        """The context of ``items`` cut from its oldest end so that it and the question fit in
        ``max_tokens``, and the share of the context's tokens that was cut (0 to 1). The last
        answer is remembered: the prompt and its truncated share cost one fit."""
        if not items:
            return "", 0.0
        key = (example.id, example.input, tuple(item.id for item in items), max_tokens, id(tokens))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self._last = (key, self._fit_context(example, items, tokens, max_tokens))
        return self._last[1]

    _last: tuple[Any, tuple[str, float]] | None = None

    def _fit_context(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> tuple[str, float]:
        context = self.context_text(items)
        total = tokens.count(context)
        room = max_tokens - tokens.count(example.input) - 2
        if total <= room:
            return context, 0.0
        if room <= 0:
            return "", 1.0
        # Keep the newest `room` tokens: truncate the reversed problem by cutting words from the front.
        words = context.split(" ")
        low, high = 0, len(words)
        while low < high:  # the fewest leading words to drop so that the rest fits
            middle = (low + high) // 2
            if tokens.count(" ".join(words[middle:])) <= room:
                high = middle
            else:
                low = middle + 1
        kept = " ".join(words[low:])
        return kept, 1.0 - tokens.count(kept) / total if total else 0.0

    def truncated_share(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> float:
        """The share of the context's tokens :meth:`prompt` drops for this budget."""
        return self.fitted_context(example, items, tokens, max_tokens)[1]

    # -- answers and scoring ----------------------------------------------------------------------
    def parse(self, text: str) -> str:
        return extract_option(text)

    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        ids = metrics.shared_ids(self.name, predictions, golds)
        preds = [extract_option(str(predictions[i])) for i in ids]
        gold = [str(golds[i]).strip() for i in ids]
        scores = [metrics.accuracy_scores(preds, gold, ids)]
        for kind in sorted({question_type(i) for i in ids}):
            # Over every question (the breakdowns share the examples' ids): [correct and of this
            # type, of this type], whose ratio is the type's accuracy.
            rows = [
                [float(question_type(i) == kind and p == g), float(question_type(i) == kind)]
                for i, p, g in zip(ids, preds, gold, strict=True)
            ]
            scores.append(
                metrics.example_scores(f"accuracy:{kind}", rows, statistic="ratio", higher_is_better=True, ids=ids)
            )
        return scores

    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        return [metrics.summarize(s, seed=seed) for s in self.example_scores(predictions, golds)]

    def validate_gold(self, output: str) -> str | None:
        if output.strip() not in self.labels:
            return f"answer {output!r} is not one of the options {', '.join(self.labels)}"
        return None


class PersonaMem32k(PersonaMem):
    """PersonaMem with 32k-token shared contexts."""

    name = "personamem-32k"
    official_name = "PersonaMem_32k"
    size = "32k"


class PersonaMem128k(PersonaMem):
    """PersonaMem with 128k-token shared contexts."""

    name = "personamem-128k"
    official_name = "PersonaMem_128k"
    size = "128k"


def _start(item: ProfileItem) -> tuple[int, int]:
    """Where a session item starts in the timeline (its ``start`` index; else its position)."""
    try:
        return int(float(item.fields.get("start", item.position))), item.position
    except (TypeError, ValueError):
        return item.position, item.position


def sessions(messages: Sequence[Mapping[str, Any]], end: int) -> list[dict[str, Any]]:
    """The profile items of a question whose point in the timeline is message ``end``: the
    context's messages before ``end`` grouped into sessions (a ``system`` message opens one), each
    ``{"id", "text", "start", "end"}`` with ``end`` exclusive and never past the question's."""
    items: list[dict[str, Any]] = []
    current: list[str] = []
    start = 0
    for index, message in enumerate(messages[: max(end, 0)]):
        if message.get("role") == "system" and current:
            items.append({"id": str(len(items)), "text": "\n".join(current), "start": start, "end": index})
            current, start = [], index
        current.append(f"{message.get('role', 'user')}: {message.get('content', '')}")
    if current:
        items.append({"id": str(len(items)), "text": "\n".join(current), "start": start, "end": min(end, len(messages))})
    return items


def render_input(question: str, options: Sequence[str]) -> str:
    """The official user turn: the question, the instruction, then the options, one per line."""
    return f"{question}\n\n{INSTRUCTION}\n\n" + "\n".join(options)
