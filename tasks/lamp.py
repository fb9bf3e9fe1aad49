"""The seven LaMP tasks, plus the superseded news-categorization LaMP-2 (``lamp-2-news``).

Each class declares its fields and templates, transcribed from the official LaMP code
(LaMP-Benchmark/LaMP, ``LaMP/prompts/prompts.py`` and ``LaMP/prompts/utils.py``); the budget and
scoring machinery lives in :mod:`lamp_tasks.base`. Details:

- LaMP-1's query is the 2nd and 3rd double-quoted strings of the input joined by a space (the two
  reference titles, as the official ``extract_strings_between_quotes`` finds them); an input with
  fewer quoted strings uses the whole input (the official code crashes there).
- LaMP-1's AIP inserts ``, and`` + the PPEPs after the first ``title`` of the input; an input
  without ``title`` is left unchanged, as the official code does. The official budget reserves
  ``2 * (k - 1)`` separator tokens and 2 per title; the strict budget reserves ``2 * k`` (one
  ``", and "`` per title: without the spare ``</s>`` of T5's counts the official constant lets the
  prompt overflow L and lose the end of the input).
- LaMP-3 predictions parse with Python's ``float`` after stripping (official); non-finite values
  (``nan``, ``inf``) count as unparsable too, since the official scorer would return NaN/inf.
  Unparsable outputs become whichever of 1 and 5 is farther from the gold (gold 3 gives 5). No
  clipping.
- ``max_new_tokens``: LaMP-1 8, LaMP-2 (both) 16, LaMP-3 4, generation tasks 128 (the official
  generation max length).
- ``parse(text, lenient=True)`` is an opt-in deviation that digs a label or number out of chatty
  output; the default is the official strip.
- LaMP-3 takes one option, ``scorer``: ``lamp`` (default, the LaMP scorer above) or ``pplug``, the
  rule of the PPlug authors' own scorer, behind the PPlug paper's numbers: an output that is not a
  finite number counts as its first decimal digit, else 1.0 (``--task-arg lamp-3:scorer=pplug``
  in ``lamp run`` and ``lamp evaluate``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from lamp_tasks.base import LampClassificationTask, LampGenerationTask, LampTask

from lamp_harness import Example, ExampleScores, ProfileItem, TokenCounter, lamp_error

MOVIE_TAGS = (
    "sci-fi",
    "based on a book",
    "comedy",
    "action",
    "twist ending",
    "dystopia",
    "dark comedy",
    "classic",
    "psychology",
    "fantasy",
    "romance",
    "thought-provoking",
    "social commentary",
    "violence",
    "true story",
)
NEWS_CATEGORIES = (
    "food & drink",
    "sports",
    "education",
    "parents",
    "religion",
    "travel",
    "business",
    "crime",
    "science & technology",
    "culture & arts",
    "entertainment",
    "politics",
    "women",
    "style & beauty",
    "healthy living",
)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def quoted_strings(text: str) -> list[str]:
    """The strings between successive pairs of double quotes."""
    return text.split('"')[1::2][: text.count('"') // 2]


class LaMP1(LampClassificationTask):
    """LaMP-1 personalized citation identification: which of two references would the author
    cite? Answer ``[1]`` or ``[2]``."""

    name = "lamp-1"
    official_name = "LaMP_1"
    labels = ("[1]", "[2]")
    profile_fields = ("title", "abstract")
    free_field = "title"
    document_fields = ("title", "abstract")
    max_new_tokens = 8

    def query(self, example: Example) -> str:
        quoted = quoted_strings(example.input)
        if len(quoted) >= 3:
            return f"{quoted[1]} {quoted[2]}"
        return example.input.strip()

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        title = item.get("title") if free_text is None else free_text
        return f'"{title}"'

    def fixed_tokens(self, item: ProfileItem, tokens: TokenCounter) -> int:
        return 2  # the official constant: the two quotes around the title

    def official_fixed_tokens(self, item: ProfileItem, tokens: TokenCounter) -> int:
        return 2  # the official constant

    def separator_tokens(self, k: int) -> int:
        # One ", and " per title (the official 2 * (k - 1) forgets the one before the first title;
        # its T5 counts include a spare </s> per item, which counts without special tokens lack).
        return 2 * k

    def official_separator_tokens(self, k: int) -> int:
        return 2 * (k - 1)

    def aggregate(self, example: Example, ppeps: Sequence[str]) -> str:
        at = example.input.find("title")
        if at == -1:
            return example.input
        at += len("title")
        return f"{example.input[:at]}, and {', and '.join(ppeps)}{example.input[at:]}"


class LaMP2(LampClassificationTask):
    """LaMP-2 personalized movie tagging: one of 15 tags for a movie description."""

    name = "lamp-2"
    official_name = "LaMP_2"
    labels = MOVIE_TAGS
    profile_fields = ("description", "tag")
    free_field = "description"
    document_fields = ("description",)
    query_marker = "description:"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        description = item.get("description") if free_text is None else free_text
        return f'the tag for the movie: "{description}" is "{item.get("tag")}" '


class LaMP2News(LampClassificationTask):
    """The superseded LaMP-2, personalized news categorization: one of 15 categories for an
    article. Published "LaMP-2" numbers from before the movie-tagging release refer to it."""

    name = "lamp-2-news"
    official_name = "LaMP_2"
    labels = NEWS_CATEGORIES
    profile_fields = ("title", "text", "category")
    free_field = "text"
    document_fields = ("title", "text")
    query_marker = "article:"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("text") if free_text is None else free_text
        return f'the category for the article: "{text}" is "{item.get("category")}" '


class LaMP3(LampTask):
    """LaMP-3 personalized product rating: a 1-5 score for a review. MAE and RMSE."""

    name = "lamp-3"
    official_name = "LaMP_3"
    kind = "ordinal"
    labels = ("1", "2", "3", "4", "5")
    profile_fields = ("text", "score")
    free_field = "text"
    document_fields = ("text",)
    query_marker = "review:"
    max_new_tokens = 4
    scorers = ("lamp", "pplug")
    """``scorer=lamp``: LaMP's rule for unparsable outputs (default); ``scorer=pplug``: PPlug's."""

    def __init__(self, scorer: str = "lamp") -> None:
        self.scorer = str(scorer or "lamp").strip().lower()
        if self.scorer not in self.scorers:
            raise lamp_error(
                f"argument scorer={self.scorer!r} is not lamp or pplug",
                where=f"task {self.name!r}",
                fix="Pass scorer=lamp (the LaMP scorer) or scorer=pplug (the PPlug paper's).",
            )

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("text") if free_text is None else free_text
        return f'{item.get("score")} is the score for "{text}" '

    def parse(self, text: str, *, lenient: bool = False) -> str:
        """The stripped text (official; scoring decides what an unparsable answer is worth).
        ``lenient=True`` (a DEVIATION) returns the first number in the text instead, e.g.
        ``"Rating: 4 stars"`` gives ``"4"``."""
        stripped = text.strip()
        if lenient and _number(stripped) is None:
            match = _NUMBER.search(stripped)
            if match:
                return match.group(0)
        return stripped

    def rating(self, output: str, gold: float) -> float:
        """The number an output counts as: its value, or, when it is not a finite number, whichever
        of 1 and 5 is farther from ``gold`` (5 for gold 3). With ``scorer=pplug``, PPlug's rule
        instead: the output's first decimal digit, else 1.0 (``"I'd say 4"`` gives 4)."""
        value = _number(output)
        if value is not None:
            return value
        if self.scorer == "pplug":
            return next((float(int(c)) for c in output if c.isdecimal()), 1.0)
        return 1.0 if abs(1.0 - gold) > abs(5.0 - gold) else 5.0

    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        from lamp_harness import metrics

        ids = self.aligned_ids(predictions, golds)
        preds, gold_texts = self.aligned(predictions, golds)
        gold = [float(g) for g in gold_texts]
        values = [self.rating(p, g) for p, g in zip(preds, gold, strict=True)]
        return [metrics.absolute_error_scores(values, gold, ids), metrics.squared_error_scores(values, gold, ids)]

    def validate_gold(self, output: str) -> str | None:
        value = _number(output.strip())
        if value is None or not 1.0 <= value <= 5.0:
            return f"rating {output!r} is not a number from 1 to 5"
        return None


class LaMP4(LampGenerationTask):
    """LaMP-4 personalized news headline generation."""

    name = "lamp-4"
    official_name = "LaMP_4"
    profile_fields = ("title", "text")
    free_field = "text"
    document_fields = ("title", "text")
    query_marker = "article:"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("text") if free_text is None else free_text
        return f'"{item.get("title")}" is the title for "{text}" '


class LaMP5(LampGenerationTask):
    """LaMP-5 personalized scholarly title generation."""

    name = "lamp-5"
    official_name = "LaMP_5"
    profile_fields = ("title", "abstract")
    free_field = "abstract"
    document_fields = ("title", "abstract")
    query_marker = "paper:"
    input_separator = ". Following the given patterns "
    budget_suffix = "Following the given patterns"
    official_suffix = "Following the given patterns"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        abstract = item.get("abstract") if free_text is None else free_text
        return f'"{item.get("title")}" is a title for "{abstract}" '

    def official_fixed_text(self, item: ProfileItem) -> str:
        return f'"{item.get("title")}" is a title " " '  # sic: the official code counts no "for"


class LaMP6(LampGenerationTask):
    """LaMP-6 personalized email subject generation (Avocado corpus; build the files locally)."""

    name = "lamp-6"
    official_name = "LaMP_6"
    profile_fields = ("title", "text")
    free_field = "text"
    document_fields = ("text",)

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("text") if free_text is None else free_text
        return f'"{item.get("title")}" is the title for "{text}" '


class LaMP7(LampGenerationTask):
    """LaMP-7 personalized tweet paraphrasing."""

    name = "lamp-7"
    official_name = "LaMP_7"
    profile_fields = ("text",)
    free_field = "text"
    document_fields = ("text",)
    fixed_placeholder = ""
    input_separator = " are written by a person. Following the given patterns "
    budget_suffix = "are written by a person. Following the given patterns"
    official_suffix = "are written by user. Following the given patterns"  # sic: official reserve

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("text") if free_text is None else free_text
        return f'"{text}" '


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
