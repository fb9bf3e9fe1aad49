"""What every LaMP task shares: retrieval query extraction, the PPEP/AIP prompt with the official
token budget, and id alignment for scoring.

The prompt budget re-implements the official LaMP prompt code (``LaMP/prompts/prompts.py``).
Details settled from that code, with L the maximum prompt length (default 256):

1. ``budget = L - min(tokens(input), int(factor * L))`` with ``factor = 0.6`` at first.
2. ``share = (budget - separators - suffix) // k`` where ``separators = 1 + 2 * (k - 1)`` (a
   constant: 1 for the ``". "`` before the input, 2 per ``", and "``; LaMP-1 has no ``". "`` and
   reserves ``2 * k``, see :mod:`lamp_tasks.lamp`), and ``suffix`` is the token count of the
   fixed text LaMP-5 and LaMP-7 add (``Following the given patterns`` and ``are written by a
   person. Following the given patterns``).
3. Items are handled in retrieval order. Item i's free text may take
   ``allowance = share + saved - fixed_i`` tokens, where ``fixed_i`` is the token count of the
   item's PPEP with its free text replaced by ``" "`` (LaMP-7: by ``""``; LaMP-1: the constant 2,
   for the two quotes). The free text is truncated to ``allowance`` tokens (it always goes through
   ``TokenCounter.truncate``, as the official code always decodes the kept ids), and
   ``saved += share - min(tokens(text), allowance) - fixed_i`` rolls the unused share over.
4. An allowance ``<= 0`` is a failure (the official tokenizer call raises): the factor is lowered by
   0.1 (float arithmetic as in the official loop, so 0.6, 0.5, ..., 0.1 and ~3e-17 are tried) and
   everything is rebuilt; when the factor drops below 0 the bare input is used.
5. The whole prompt is finally cut to L tokens (the official code lets the model's tokenizer
   truncate at L), re-checked so the result never exceeds L even when a tokenizer's decode/encode
   round trip is not exact.

Deviations, all deliberate:

- Token counts exclude special tokens (the official counts include T5's ``</s>`` in each call, so
  it reserves about two extra tokens per item).
- LaMP-5's fixed part is counted on the real PPEP (the official code counts ``"{title}" is a title
  " "``, missing the word ``for``), and LaMP-7's suffix on the text actually appended (the official
  code counts ``are written by user. ...`` but appends ``are written by a person. ...``).
- When an input lacks the marker its query is taken after (``description:``...), the whole
  stripped input is the query (the official code returns ``None`` and crashes in BM25).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from lamp_harness.contracts import Example, ExampleScores, MetricResult, ProfileItem, Task, TokenCounter
from lamp_harness.errors import lamp_error

INITIAL_FACTOR = 0.6
FACTOR_STEP = 0.1
JOINER = ", and "
INVALID = "\0invalid"


def text_after(text: str, marker: str) -> str | None:
    """The stripped text after the first ``marker``, or ``None`` when it does not occur."""
    index = text.find(marker)
    if index == -1:
        return None
    return text[index + len(marker):].strip()


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


class LampTask(Task):
    """Base of the LaMP tasks: subclasses declare their fields and templates; this class runs the
    official token budget and the id alignment for scoring."""

    free_field: ClassVar[str]
    """The profile field truncated to fit the budget (abstract / description / text; LaMP-1: title)."""
    document_fields: ClassVar[tuple[str, ...]]
    """Fields joined with a space into an item's retrieval document (REFERENCE §3)."""
    query_marker: ClassVar[str] = ":"
    """The query is the input text after the first occurrence of this marker."""
    fixed_placeholder: ClassVar[str] = " "
    """What replaces the free text when counting the fixed part of a PPEP."""
    input_separator: ClassVar[str] = ". "
    """Text between the joined PPEPs and the input."""
    budget_suffix: ClassVar[str] = ""
    """Fixed text (besides separators) the AIP adds, whose tokens are reserved up front."""

    # -- retrieval ------------------------------------------------------------------------------
    def query(self, example: Example) -> str:
        found = text_after(example.input, self.query_marker)
        return example.input.strip() if found is None else found

    def document(self, item: ProfileItem) -> str:
        return " ".join(item.get(name) for name in self.document_fields)

    # -- prompt ---------------------------------------------------------------------------------
    def aggregate(self, example: Example, ppeps: Sequence[str]) -> str:
        """The aggregated input prompt from already-budgeted PPEPs (REFERENCE §4)."""
        return f"{JOINER.join(ppeps)}{self.input_separator}{example.input}"

    def separator_tokens(self, k: int) -> int:
        """Tokens reserved for the separators around ``k`` PPEPs (official constants)."""
        return 1 + 2 * (k - 1)

    def fixed_tokens(self, item: ProfileItem, tokens: TokenCounter) -> int:
        """Tokens of ``item``'s PPEP other than its free text."""
        return tokens.count(self.ppep(item, self.fixed_placeholder))

    def prompt(self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter,
               max_tokens: int = 256) -> str:
        if max_tokens <= 0:
            raise lamp_error(f"the prompt budget must be a positive number of tokens, got {max_tokens}",
                             fix="Set the generator's maximum input length to at least 1 (LaMP uses 256).")
        items = tuple(items)
        text = example.input
        if items:
            ppeps = self.budgeted_ppeps(example, items, tokens, max_tokens)
            if ppeps is not None:
                text = self.aggregate(example, ppeps)
        return fit_to_budget(tokens, text, max_tokens)

    def budgeted_ppeps(self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter,
                       max_tokens: int) -> list[str] | None:
        """The PPEPs of ``items`` with their free texts cut to the official budget, or ``None``
        when no factor leaves every item a positive allowance (the bare input is used then)."""
        k = len(items)
        input_tokens = tokens.count(example.input)
        reserved = self.separator_tokens(k) + (tokens.count(self.budget_suffix) if self.budget_suffix else 0)
        texts = [item.get(self.free_field) for item in items]
        text_tokens = [tokens.count(text) for text in texts]
        fixed = [self.fixed_tokens(item, tokens) for item in items]
        factor = INITIAL_FACTOR
        # Same float arithmetic as the official loop: it decides how many retries happen.
        while factor >= 0:
            budget = max_tokens - min(input_tokens, int(factor * max_tokens))
            allowances = self._allowances((budget - reserved) // k, text_tokens, fixed)
            if allowances is not None:
                return [self.ppep(item, tokens.truncate(text, allowance))
                        for item, text, allowance in zip(items, texts, allowances, strict=True)]
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
    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *,
              seed: int = 0) -> list[MetricResult]:
        """Each metric of :meth:`example_scores` with its bootstrap interval."""
        from lamp_harness import metrics

        return [metrics.summarize(s, seed=seed) for s in self.example_scores(predictions, golds)]

    @staticmethod
    def aligned_ids(predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[str]:
        """The ids :meth:`aligned` scores, in the same (gold) order."""
        return [i for i in golds if i in predictions]

    def aligned(self, predictions: Mapping[str, str],
                golds: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """Stripped predictions and golds (official post-processing) for the ids in both, in gold
        order."""
        ids = [i for i in golds if i in predictions]
        if not ids:
            raise lamp_error(f"no prediction id matches a gold id ({len(predictions)} predictions, "
                             f"{len(golds)} golds)", where=f"task {self.name}",
                             fix="Score predictions against the golds of the same task and split.")
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

    def example_scores(self, predictions: Mapping[str, str],
                       golds: Mapping[str, str]) -> list[ExampleScores]:
        from lamp_harness import metrics

        ids = self.aligned_ids(predictions, golds)
        preds, gold = self.aligned(predictions, golds)
        # Official: both sides map to a label index, -1 for anything else, and accuracy compares
        # indices; so every non-label becomes one shared "invalid" value here.
        labels = set(self.labels)
        preds = [p if p in labels else INVALID for p in preds]
        gold = [g if g in labels else INVALID for g in gold]
        return [metrics.accuracy_scores(preds, gold, ids),
                metrics.macro_f1_scores(preds, gold, self.labels, ids=ids)]

    def validate_gold(self, output: str) -> str | None:
        if output.strip() not in self.labels:
            return f"label {output!r} is not one of the task's labels ({', '.join(self.labels)})"
        return None


class LampGenerationTask(LampTask):
    """LaMP-4..7: free text, scored with ROUGE-1 and ROUGE-L F-measure (rouge-score, no stemming).

    ``max_new_tokens`` is 128, the official generation max length."""

    kind = "generation"
    max_new_tokens = 128

    def example_scores(self, predictions: Mapping[str, str],
                       golds: Mapping[str, str]) -> list[ExampleScores]:
        from lamp_harness import metrics

        preds, gold = self.aligned(predictions, golds)
        return metrics.rouge_example_scores(preds, gold, self.aligned_ids(predictions, golds))

    def validate_gold(self, output: str) -> str | None:
        return None
