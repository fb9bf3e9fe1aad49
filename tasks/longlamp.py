"""LongLaMP: personalized long-form generation (abstracts, product reviews, topic writing).

A task plugin written against the plugin API only (:mod:`lamp_harness.plugin.contracts` for the types,
:mod:`lamp_harness.inputs.metrics` for the shared metric functions, :mod:`lamp_harness.base.errors` for the
one-line error). The data come from the Hugging Face dataset ``LongLaMP/LongLaMP`` through the
``hub`` data source (:mod:`lamp_tasks.hub`), which converts its rows into the harness's question
and output files; ``--data demo`` has synthetic data with planted per-user signals.

Per task (the dataset's configuration is ``{config}_{user|temporal}``; ``--scheme time`` or
``--scheme temporal`` picks the temporal one):

=====================  ==========================  =====================================  ==========================
task                   configuration               profile item fields                    retrieval query
=====================  ==========================  =====================================  ==========================
``longlamp-abstract``  ``abstract_generation``     ``title``, ``abstract``                the input after ``items:``
``longlamp-review``    ``product_review``          ``overall``, ``summary``,              the whole input
                                                   ``description``, ``reviewText``
``longlamp-topic``     ``topic_writing``           ``summary``, ``content``               the whole input
=====================  ==========================  =====================================  ==========================

Retrieval documents join the item fields listed above with a space (the order of the public
LongLaMP loaders). Prompts follow the LongLaMP paper's retrieval-augmented form, LaMP style: the
top-k items, each rendered by its per-task template (:meth:`LongLaMPTask.ppep`), joined with
``", and "``, then the task input. The prompt budget is the generator's ``max_input_tokens``: the
input is always kept whole (cut only when it alone exceeds the budget); the rest is shared equally
among the k items, whose long free-text field (abstract / review text / content) is cut to its
share, unused share passing to the next item; the profile part is finally cut to what is left, so
the prompt never exceeds the budget and always ends with the whole input.

Outputs are hundreds of tokens: ``max_new_tokens`` is 512 for every task (the paper's long targets
average about 150 to 300 words), put on every request and so recorded in each cell's config.
Metrics: ``rouge-1``, ``rouge-L`` (rouge-score, as LaMP) and ``meteor`` (NLTK's METEOR with
WordNet 3.0, see :func:`lamp_harness.inputs.metrics.meteor_scores`), all per example, so paired
significance tests work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lamp_harness import Example, ExampleScores, MetricResult, ProfileItem, Task, TokenCounter, lamp_error, metrics

JOINER = ", and "


class LongLaMPTask(Task):
    """What the three LongLaMP tasks share: budgeted AIP prompts, ROUGE-1/L and METEOR."""

    benchmark: ClassVar[str | None] = "LongLaMP"

    kind = "generation"
    max_new_tokens = 512
    data_source = "hub"
    hub_repo: ClassVar[str] = "LongLaMP/LongLaMP"
    config: ClassVar[str]
    """The dataset configuration without its ``_user`` / ``_temporal`` suffix."""
    document_fields: ClassVar[tuple[str, ...]]
    free_field: ClassVar[str]
    """The long field of an item that the prompt budget cuts."""
    query_marker: ClassVar[str | None] = None

    # -- the hub layout ---------------------------------------------------------------------------
    def hub_config(self, scheme: str) -> str:
        """The dataset configuration of a split scheme (``user``; ``time`` is ``temporal``)."""
        return f"{self.config}_{'temporal' if scheme == 'time' else 'user'}"

    # -- retrieval --------------------------------------------------------------------------------
    def query(self, example: Example) -> str:
        if self.query_marker:
            at = example.input.find(self.query_marker)
            if at != -1:
                return example.input[at + len(self.query_marker) :].strip()
        return example.input.strip()

    def document(self, item: ProfileItem) -> str:
        return " ".join(item.get(name) for name in self.document_fields)

    # -- prompt -----------------------------------------------------------------------------------
    def prompt(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int = 256, **_: Any
    ) -> str:
        if max_tokens <= 0:
            raise lamp_error(
                f"the prompt budget must be a positive number of tokens, got {max_tokens}",
                fix="Set the generator's maximum input length to at least 1.",
            )
        items = tuple(items)
        room = max_tokens - tokens.count(example.input) - 1
        if not items or room <= 0:
            return _fit(tokens, example.input, max_tokens)
        share = max((room - tokens.count(JOINER) * (len(items) - 1)) // len(items), 0)
        saved = 0
        ppeps = []
        for item in items:
            fixed = tokens.count(self.ppep(item, ""))
            text = item.get(self.free_field)
            allowance = max(share + saved - fixed, 0)
            kept = tokens.truncate(text, allowance) if tokens.count(text) > allowance else text
            saved = max(share + saved - fixed - tokens.count(kept), 0)
            ppeps.append(self.ppep(item, kept))
        profile = _fit(tokens, f"{JOINER.join(ppeps)}.", room)
        return f"{profile} {example.input}" if profile else example.input

    # -- scoring ----------------------------------------------------------------------------------
    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        ids = metrics.shared_ids(self.name, predictions, golds)
        preds = [str(predictions[i]).strip() for i in ids]
        refs = [str(golds[i]).strip() for i in ids]
        return [*metrics.rouge_example_scores(preds, refs, ids), metrics.meteor_example_scores(preds, refs, ids)]

    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        return [metrics.summarize(s, seed=seed) for s in self.example_scores(predictions, golds)]

    def validate_gold(self, output: str) -> str | None:
        return None if output.strip() else "the gold output is empty"

    # -- converting a hub row into the harness's records -----------------------------------------
    def record(self, row: Mapping[str, Any], qid: str) -> tuple[dict[str, Any], str]:
        """A question record (``id``, ``input``, ``profile``) and its gold output from one dataset
        row; profile items get an ``id`` (their position) when they have none."""
        profile = []
        for position, item in enumerate(row["profile"]):
            entry = {"id": str(item.get("id", position))} if isinstance(item, Mapping) else {}
            if isinstance(item, Mapping):
                entry.update({k: v for k, v in item.items() if k != "id"})
            else:
                entry = item  # validation names the record and field
            profile.append(entry)
        return {"id": qid, "input": row["input"], "profile": profile}, row["output"]


class LongLaMPAbstract(LongLaMPTask):
    """Personalized abstract generation: an abstract for a paper title and keywords, in the style of
    the author's earlier abstracts."""

    name = "longlamp-abstract"
    official_name = "LongLaMP_abstract_generation"
    config = "abstract_generation"
    profile_fields = ("title", "abstract")
    document_fields = ("title", "abstract")
    free_field = "abstract"
    query_marker = "items:"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        abstract = item.get("abstract") if free_text is None else free_text
        return f'"{abstract}" is the abstract for the title "{item.get("title")}"'


class LongLaMPReview(LongLaMPTask):
    """Personalized product review writing: the review text for a product, rating and summary, in
    the style of the reviewer's earlier reviews."""

    name = "longlamp-review"
    official_name = "LongLaMP_product_review"
    config = "product_review"
    profile_fields = ("overall", "summary", "description", "reviewText")
    document_fields = ("overall", "summary", "description", "reviewText")
    free_field = "reviewText"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        text = item.get("reviewText") if free_text is None else free_text
        return (
            f'{item.get("overall")} is the rating for the product "{item.get("description")}" with the '
            f'summary "{item.get("summary")}" and the review "{text}"'
        )


class LongLaMPTopic(LongLaMPTask):
    """Personalized topic writing: a Reddit post's content from its summary, in the style of the
    author's earlier posts."""

    name = "longlamp-topic"
    official_name = "LongLaMP_topic_writing"
    config = "topic_writing"
    profile_fields = ("summary", "content")
    document_fields = ("content", "summary")
    free_field = "content"

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        content = item.get("content") if free_text is None else free_text
        return f'"{content}" is the content for the summary "{item.get("summary")}"'


def _fit(tokens: TokenCounter, text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens (re-counted: a decode may re-encode longer)."""
    keep = max_tokens
    while tokens.count(text) > max_tokens and keep > 0:
        cut = tokens.truncate(text, keep)
        over = tokens.count(cut) - max_tokens
        if over <= 0:
            return cut
        keep -= over
    return text if keep > 0 else ""
