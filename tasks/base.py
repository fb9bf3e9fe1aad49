"""What every LaMP task shares: retrieval query extraction, the PPEP/AIP prompt with the official
token budget, and id alignment for scoring.

The prompt budget transcribes the official LaMP prompt code (LaMP-Benchmark/LaMP,
``LaMP/prompts/prompts.py``) as it ran under its pinned environment (transformers 4.27.1 with a
fast tokenizer). With L the maximum prompt length (default 256) and every count taken the way
the official code takes it, ``len(tokenizer(text)["input_ids"])``, i.e. **with** the special
tokens the tokenizer adds (T5's ``</s>``):

1. ``budget = L - min(count(input), int(factor * L))`` with ``factor = 0.6`` at first.
2. ``share = (budget - separators - suffix) // k`` where ``separators = 1 + 2 * (k - 1)`` (LaMP-1:
   ``2 * (k - 1)``) and ``suffix`` is the count of the fixed text LaMP-5 and LaMP-7 reserve
   (``Following the given patterns``; LaMP-7: ``are written by user. Following the given
   patterns``, the official text, although the prompt then says ``a person``).
3. Items are handled in retrieval order. Item i's free text goes through the official tokenizer
   call ``tokenizer(text, max_length=share + saved - fixed_i, truncation=True)``, where
   ``fixed_i`` counts the item's PPEP with its free text replaced by ``" "`` (LaMP-7: ``""``;
   LaMP-5: the official ``"{title}" is a title " " ``, without ``for``; LaMP-1: the constant 2).
   The kept ids are decoded with ``skip_special_tokens=True`` and transformers 4.27.1's clean-up
   (:func:`lamp_harness.base.tokens.clean_up_tokenization`), and ``saved += share - n_i - fixed_i``
   with ``n_i`` the number of ids the call returned (special tokens included).
4. The call behaves as the fast tokenizer's: a negative ``max_length`` raises, which lowers the
   factor by 0.1 (float arithmetic as in the official loop: 0.6, 0.5, ..., 0.1 and ~3e-17) and
   rebuilds everything, and below 0 the bare input is used; ``max_length`` 0 does not raise: a
   tokenizer that adds no special tokens keeps an empty text, and one that adds k > 0 of them
   keeps the whole text whenever ``max_length < k`` (its unsigned ``max_length - k`` wraps around).
5. The prompt string is not cut: the generator's tokenizer truncates it to L tokens, as the
   official training and evaluation scripts do.

``budget="strict"`` (``lamp run --prompt-budget strict``) is the harness's stricter variant, a
deliberate deviation recorded in each run's ``config.json``, cell id and label: counts exclude
special tokens; LaMP-1 reserves ``2 * k`` separator tokens (one ``", and "`` per title); LaMP-5's
fixed part is its real PPEP and LaMP-7's suffix the text actually appended; an allowance ``<= 0``
is a failure; and the whole prompt is finally cut to L tokens, re-checked so that it never
exceeds L even when a tokenizer's decode/encode round trip is not exact.

When an input lacks the marker its query is taken after (``description:``...), the whole
stripped input is the query (the official code returns ``None`` and crashes in BM25).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from lamp_harness import (
    Example,
    ExampleScores,
    HFTokenCounter,
    MetricResult,
    ProfileItem,
    Task,
    TokenCounter,
    lamp_error,
    prompt_budget,
)

INITIAL_FACTOR = 0.6
FACTOR_STEP = 0.1
JOINER = ", and "
INVALID = "\0invalid"


class _NoRoom(Exception):
    """The official tokenizer call got a negative ``max_length`` (it raises there)."""


def official_count(tokens: TokenCounter, text: str) -> int:
    """``len(tokenizer(text)["input_ids"])``, special tokens included (a counter without an
    ``official_count`` of its own adds none)."""
    counter = getattr(tokens, "official_count", None)
    return int(counter(text)) if counter is not None else tokens.count(text)


def official_call(tokens: TokenCounter, text: str, max_length: int) -> tuple[str, int]:
    """The official truncating tokenizer call and decode: the kept text and the number of ids
    (see :meth:`lamp_harness.base.tokens.HFTokenCounter.official_call`). Raises :class:`_NoRoom` for a
    negative ``max_length``, where the official call raises."""
    if max_length < 0:
        raise _NoRoom
    call = getattr(tokens, "official_call", None)
    if call is not None:
        return call(text, max_length)
    keep = min(tokens.count(text), max_length)
    return tokens.truncate(text, keep), keep


def text_after(text: str, marker: str) -> str | None:
    """The stripped text after the first ``marker``, or ``None`` when it does not occur."""
    index = text.find(marker)
    if index == -1:
        return None
    return text[index + len(marker) :].strip()


def fit_to_budget(tokens: TokenCounter, text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens, verified by counting the result (a decode can
    re-encode to a few more tokens than were kept, so the cut is tightened until it fits)."""
    if tokens.count(text) <= max_tokens:
        return text
    keep = max_tokens
    while True:
        cut = tokens.truncate(text, keep)
        over = tokens.count(cut) - max_tokens
        if over <= 0 or keep <= 0:
            return cut
        keep = max(0, keep - over)


def _decoded(tokens: TokenCounter, text: str, max_tokens: int) -> str:
    """``text`` cut to ``max_tokens`` and decoded as the official code decodes (with
    transformers 4.27.1's clean-up when the counter is a real tokenizer)."""
    if isinstance(tokens, HFTokenCounter):
        return tokens.truncate(text, max_tokens, clean_up=True)
    return tokens.truncate(text, max_tokens)


class LampTask(Task):
    """Base of the LaMP tasks: subclasses declare their fields and templates; this class runs the
    official token budget and the id alignment for scoring."""

    benchmark: ClassVar[str | None] = "LaMP"
    free_field: ClassVar[str]
    """The profile field truncated to fit the budget (abstract / description / text; LaMP-1: title)."""
    document_fields: ClassVar[tuple[str, ...]]
    """Fields joined with a space into an item's retrieval document."""
    query_marker: ClassVar[str] = ":"
    """The query is the input text after the first occurrence of this marker."""
    fixed_placeholder: ClassVar[str] = " "
    """What replaces the free text when counting the fixed part of a PPEP."""
    input_separator: ClassVar[str] = ". "
    """Text between the joined PPEPs and the input."""
    budget_suffix: ClassVar[str] = ""
    """Fixed text (besides separators) the AIP adds, whose tokens the strict budget reserves."""
    official_suffix: ClassVar[str] = ""
    """The text whose tokens the official code reserves for the suffix (LaMP-7's differs from
    what it appends)."""

    # -- retrieval ------------------------------------------------------------------------------
    def query(self, example: Example) -> str:
        found = text_after(example.input, self.query_marker)
        return example.input.strip() if found is None else found

    def document(self, item: ProfileItem) -> str:
        return " ".join(item.get(name) for name in self.document_fields)

    # -- prompt ---------------------------------------------------------------------------------
    def aggregate(self, example: Example, ppeps: Sequence[str]) -> str:
        """The aggregated input prompt from already-budgeted PPEPs."""
        return f"{JOINER.join(ppeps)}{self.input_separator}{example.input}"

    def separator_tokens(self, k: int) -> int:
        """Tokens the strict budget reserves for the separators around ``k`` PPEPs."""
        return 1 + 2 * (k - 1)

    def official_separator_tokens(self, k: int) -> int:
        """Tokens the official code reserves for the separators around ``k`` PPEPs."""
        return 1 + 2 * (k - 1)

    def fixed_tokens(self, item: ProfileItem, tokens: TokenCounter) -> int:
        """Tokens of ``item``'s PPEP other than its free text (strict budget)."""
        return tokens.count(self.ppep(item, self.fixed_placeholder))

    def official_fixed_text(self, item: ProfileItem) -> str:
        """The text whose token count the official code takes as ``item``'s fixed part."""
        return self.ppep(item, self.fixed_placeholder)

    def official_fixed_tokens(self, item: ProfileItem, tokens: TokenCounter) -> int:
        """The official fixed part of ``item``'s PPEP, special tokens included."""
        return official_count(tokens, self.official_fixed_text(item))

    def prompt(
        self,
        example: Example,
        items: Sequence[ProfileItem],
        tokens: TokenCounter,
        max_tokens: int = 256,
        *,
        budget: str = "official",
    ) -> str:
        if max_tokens <= 0:
            raise lamp_error(
                f"the prompt budget must be a positive number of tokens, got {max_tokens}",
                fix="Set the generator's maximum input length to at least 1 (LaMP uses 256).",
            )
        budget = prompt_budget(budget)
        items = tuple(items)
        text = example.input
        if items:
            if budget == "official":
                ppeps = self.official_ppeps(example, items, tokens, max_tokens)
            else:
                ppeps = self.budgeted_ppeps(example, items, tokens, max_tokens)
            if ppeps is not None:
                text = self.aggregate(example, ppeps)
        if budget == "official":
            return text  # the generator's tokenizer cuts it to L tokens, as the official scripts do
        return fit_to_budget(tokens, text, max_tokens)

    def official_ppeps(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> list[str] | None:
        """The PPEPs of ``items`` exactly as the official prompt code builds them, or ``None``
        when every factor fails (the bare input is used then)."""
        k = len(items)
        input_tokens = official_count(tokens, example.input)
        reserved = self.official_separator_tokens(k) + (
            official_count(tokens, self.official_suffix) if self.official_suffix else 0
        )
        texts = [item.get(self.free_field) for item in items]
        fixed = [self.official_fixed_tokens(item, tokens) for item in items]
        factor = INITIAL_FACTOR
        # Same float arithmetic as the official loop: it decides how many retries happen.
        while factor >= 0:
            share = (max_tokens - min(input_tokens, int(factor * max_tokens)) - reserved) // k
            saved = 0
            ppeps = []
            try:
                for item, text, fixed_part in zip(items, texts, fixed, strict=True):
                    kept, used = official_call(tokens, text, share + saved - fixed_part)
                    saved += share - used - fixed_part
                    ppeps.append(self.ppep(item, kept))
            except _NoRoom:
                factor -= FACTOR_STEP
                continue
            return ppeps
        return None

    def budgeted_ppeps(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> list[str] | None:
        """The PPEPs of ``items`` with their free texts cut to the strict budget, or ``None``
        when no factor leaves every item a positive allowance (the bare input is used then)."""
        k = len(items)
        input_tokens = tokens.count(example.input)
        reserved = self.separator_tokens(k) + (tokens.count(self.budget_suffix) if self.budget_suffix else 0)
        texts = [item.get(self.free_field) for item in items]
        text_tokens = [tokens.count(text) for text in texts]
        fixed = [self.fixed_tokens(item, tokens) for item in items]
        factor = INITIAL_FACTOR
        while factor >= 0:
            budget = max_tokens - min(input_tokens, int(factor * max_tokens))
            allowances = self._allowances((budget - reserved) // k, text_tokens, fixed)
            if allowances is not None:
                return [
                    self.ppep(item, _decoded(tokens, text, allowance))
                    for item, text, allowance in zip(items, texts, allowances, strict=True)
                ]
            factor -= FACTOR_STEP
        return None

    @staticmethod
    def _allowances(share: int, text_tokens: Sequence[int], fixed: Sequence[int]) -> list[int] | None:
        allowances = []
        saved = 0
        for length, fixed_part in zip(text_tokens, fixed, strict=True):
            allowance = share + saved - fixed_part
            if allowance <= 0:
                return None
            allowances.append(allowance)
            saved += share - min(length, allowance) - fixed_part
        return allowances

    # -- scoring --------------------------------------------------------------------------------
    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        """Each metric of :meth:`example_scores` with its bootstrap interval."""
        from lamp_harness import metrics

        return [metrics.summarize(s, seed=seed) for s in self.example_scores(predictions, golds)]

    @staticmethod
    def aligned_ids(predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[str]:
        """The ids :meth:`aligned` scores, in the same (gold) order."""
        return [i for i in golds if i in predictions]

    def aligned(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """Stripped predictions and golds (official post-processing) for the ids in both, in gold
        order."""
        from lamp_harness import metrics

        ids = metrics.shared_ids(self.name, predictions, golds)
        return [str(predictions[i]).strip() for i in ids], [str(golds[i]).strip() for i in ids]


class LampClassificationTask(LampTask):
    """LaMP-1 and LaMP-2: an answer counts only if it is exactly one of the labels after stripping
    (case-sensitive). Metrics: accuracy and macro-F1 over the full label set."""

    kind = "classification"
    max_new_tokens = 16

    def parse(self, text: str, *, lenient: bool = False) -> str:
        """The stripped text (official). ``lenient=True`` is an opt-in DEVIATION from the official
        scorer: it returns the label that occurs earliest in the text (case-insensitive, longest
        label first at a tie), e.g. ``"The answer is [1]."`` gives ``"[1]"``; text with no label
        is returned stripped."""
        stripped = text.strip()
        if not lenient or stripped in self.labels:
            return stripped
        lowered = stripped.lower()
        found = [(lowered.find(label.lower()), -len(label), label) for label in self.labels]
        found = [hit for hit in found if hit[0] >= 0]
        return min(found)[2] if found else stripped

    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        from lamp_harness import metrics

        ids = self.aligned_ids(predictions, golds)
        preds, gold = self.aligned(predictions, golds)
        # Official: both sides map to a label index, -1 for anything else, and accuracy compares
        # indices; so every non-label becomes one shared "invalid" value here.
        labels = set(self.labels)
        preds = [p if p in labels else INVALID for p in preds]
        gold = [g if g in labels else INVALID for g in gold]
        return [metrics.accuracy_scores(preds, gold, ids), metrics.macro_f1_scores(preds, gold, self.labels, ids=ids)]

    def validate_gold(self, output: str) -> str | None:
        if output.strip() not in self.labels:
            return f"label {output!r} is not one of the task's labels ({', '.join(self.labels)})"
        return None


class LampGenerationTask(LampTask):
    """LaMP-4..7: free text, scored with ROUGE-1 and ROUGE-L F-measure (rouge-score, no stemming).

    ``max_new_tokens`` is 128, the official generation max length."""

    kind = "generation"
    max_new_tokens = 128

    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        from lamp_harness import metrics

        preds, gold = self.aligned(predictions, golds)
        return metrics.rouge_example_scores(preds, gold, self.aligned_ids(predictions, golds))

    def validate_gold(self, output: str) -> str | None:
        return None
