"""Conformance checks for plugin authors: call them from your own test suite.

Each ``check_*`` function exercises one contract of :mod:`lamp_harness.plugin.contracts` on tiny sample
data built in code and raises :class:`AssertionError` with a message that names the component and
the broken rule. They need no pytest and no model downloads::

    from lamp_harness import RunContext
    from lamp_harness.testing import check_retriever
    from my_package.retriever import MyRetriever

    def test_my_retriever_conforms(tmp_path):
        check_retriever(MyRetriever(RunContext(lamp_home=tmp_path)))

Kinds and their checks: :func:`check_task`, :func:`check_retriever`, :func:`check_personalizer`,
:func:`check_trainable_personalizer` (needs torch), :func:`check_generator`,
:func:`check_data_source` and :func:`check_reporter`.

With them, everything else a plugin's tests need, so that they import only ``lamp_harness`` and
``lamp_harness.testing``: sample data (:func:`sample_examples`, :func:`sample_profile`,
:func:`sample_rank_queries`), model-free stand-ins (:class:`EchoGenerator`,
:class:`WhitespaceTokens`), :func:`load_split` (read and validate a split's official files, e.g.
the ones your data source wrote), :class:`PluginHost` (every installed plugin, loaded as ``lamp``
loads them, or yours in-process with ``extra_plugins=``), and :class:`Matrix` with
:func:`run_matrix` (a whole run in-process). Like the top level,
the names in ``__all__`` follow the plugin API's semantic versioning (docs/plugins.md).

Only the contracts are used here: nothing concrete (no task, retriever or model name) is assumed.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.inputs.data import load_split
from lamp_harness.plugin.contracts import (
    DecodeMode,
    Example,
    Generation,
    GenerationRequest,
    Generator,
    MetricResult,
    Personalizer,
    ProfileItem,
    RankQuery,
    Retriever,
    RunContext,
    Task,
    TokenCounter,
)
from lamp_harness.plugin.registry import PluginHost
from lamp_harness.run.runner import Matrix, run_matrix

__all__ = [
    "EchoGenerator",
    "Matrix",
    "PluginHost",
    "WhitespaceTokens",
    "check_data_source",
    "check_generator",
    "check_personalizer",
    "check_reporter",
    "check_retriever",
    "check_task",
    "check_trainable_personalizer",
    "load_split",
    "run_matrix",
    "sample_examples",
    "sample_profile",
    "sample_rank_queries",
]

_KINDS = ("classification", "ordinal", "generation")


# ---------------------------------------------------------------------------------------------
# Helpers: a tokenizer and a generator that need no model
# ---------------------------------------------------------------------------------------------


class WhitespaceTokens:
    """A :class:`~lamp_harness.plugin.contracts.TokenCounter` where every whitespace-separated word is
    one token. Good enough to check that prompts respect a token budget."""

    def count(self, text: str) -> int:
        """Number of whitespace-separated words."""
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` words (``text`` itself when it is short enough)."""
        words = text.split()
        return text if len(words) <= max_tokens else " ".join(words[: max(0, max_tokens)])


class EchoGenerator(Generator):
    """A model-free generator for personalizer checks: it answers each request with the last
    ``echo_words`` words of its prompt (or the first choice when decoding labels) and counts
    tokens on whitespace. ``requests`` keeps every request it received, in order.

    With ``encoder_decoder=True`` it stands in for a fusion-in-decoder model and echoes the
    passages; otherwise it refuses fusion requests like every decoder-only generator must."""

    name = "echo"

    def __init__(self, max_input_tokens: int = 64, echo_words: int = 3, *, encoder_decoder: bool = False) -> None:
        self._tokens = WhitespaceTokens()
        self._max_input_tokens = max_input_tokens
        self._echo_words = echo_words
        self._encoder_decoder = encoder_decoder
        self.requests: list[GenerationRequest] = []

    @property
    def is_encoder_decoder(self) -> bool:
        return self._encoder_decoder

    @property
    def tokens(self) -> TokenCounter:
        return self._tokens

    @property
    def max_input_tokens(self) -> int:
        return self._max_input_tokens

    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        if not self._encoder_decoder and any(r.is_fusion for r in requests):
            raise lamp_error(
                "generator 'echo' is decoder-only and cannot fuse passages",
                fix="Use EchoGenerator(encoder_decoder=True) for fusion-in-decoder checks.",
            )
        out = []
        for request in requests:
            self.requests.append(request)
            source = " ".join(request.passages) if request.is_fusion else request.prompt
            if decode == "labels" and request.choices:
                text = request.choices[0]
            else:
                text = " ".join(source.split()[-self._echo_words :])
            out.append(Generation(text, self._tokens.count(source), self._tokens.count(text)))
        return out


# ---------------------------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------------------------

_TEXTS = (
    "Rainy morning in the city, coffee and a good book",
    "Our team won the final match tonight, what a game",
    "Trying a new pasta recipe with fresh basil and garlic",
    "The city council voted on the new bike lanes today",
    "Finished the book, the ending was a total surprise",
    "Morning run by the river before the rain started",
)

_LONG_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
)


def sample_profile(
    fields: Sequence[str] = ("text",), size: int = len(_TEXTS), *, long: bool = False
) -> tuple[ProfileItem, ...]:
    """``size`` profile items whose every field in ``fields`` holds a short sentence (or, with
    ``long=True``, a 300-word text, to exercise token budgets). Ids are ``"p0"``, ``"p1"``..."""
    items = []
    for position in range(size):
        if long:
            words = [_LONG_WORDS[(position + i) % len(_LONG_WORDS)] for i in range(300)]
            text = " ".join(words)
        else:
            text = _TEXTS[position % len(_TEXTS)]
        values = {name: (str(1 + position % 5) if name == "score" else text) for name in fields}
        items.append(ProfileItem(id=f"p{position}", position=position, fields=values))
    return tuple(items)


def sample_examples(task: Task | None = None) -> tuple[Example, ...]:
    """Three examples with a generic input, a profile with the task's ``profile_fields`` and a gold
    that is valid for the task (its first labels, or a short text for generation tasks).

    Tasks whose query extraction needs a particular input format should pass their own examples to
    :func:`check_task` and :func:`check_personalizer` instead."""
    fields = tuple(task.profile_fields) if task is not None else ("text",)
    labels = tuple(task.labels) if task is not None else ()
    inputs = (
        "Answer about the following text: rainy morning with coffee in the city",
        "Answer about the following text: the team won the match",
        "Answer about the following text: fresh basil pasta recipe",
    )
    examples = []
    for index, text in enumerate(inputs):
        gold = labels[index % len(labels)] if labels else f"gold answer number {index}"
        examples.append(Example(id=f"ex{index}", input=text, profile=sample_profile(fields, size=4 + index), gold=gold))
    return tuple(examples)


def sample_rank_queries() -> tuple[RankQuery, ...]:
    """Rank queries over a plain-text profile: ordinary ones, an empty query, a one-item profile."""
    profile = sample_profile(("text",))
    docs = tuple(item.get("text") for item in profile)
    return (
        RankQuery("q-city", "coffee in the city on a rainy morning", docs, profile),
        RankQuery("q-sport", "the final match", docs, profile),
        RankQuery("q-none", "zebra xylophone quantum", docs, profile),
        RankQuery("q-empty", "", docs, profile),
        RankQuery("q-single", "book", docs[:1], profile[:1]),
    )


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _who(component: Any) -> str:
    name = getattr(component, "name", None)
    return f"{type(component).__name__}({name!r})" if name else type(component).__name__


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} must be JSON-serializable (it goes into config.json / cache keys): {exc}") from None


def check_retriever(retriever: Retriever, queries: Sequence[RankQuery] | None = None) -> None:
    """Check a :class:`~lamp_harness.plugin.contracts.Retriever`.

    - ``rank`` returns one ranking per query, and each ranking is a permutation of the positions of
      that query's items (full rankings, plain ints), so any top-k slice holds at most k distinct
      items, all from the given profile;
    - a query over a slice of a profile is ranked over that slice only;
    - an empty query and a one-item profile are handled;
    - rankings are deterministic (two calls agree) and ``cache_key`` is JSON-serializable.

    ``queries`` replaces the built-in :func:`sample_rank_queries` (add your own to exercise
    document formats your retriever expects).
    """
    who = _who(retriever)
    assert isinstance(retriever, Retriever), f"{who} does not subclass lamp_harness.Retriever"
    assert isinstance(getattr(retriever, "name", None), str) and retriever.name, (
        f"{who} needs a non-empty class attribute 'name'"
    )
    queries = tuple(queries) if queries is not None else sample_rank_queries()
    for query in queries:
        assert len(query.documents) == len(query.items), (
            f"bad test input: query {query.example_id!r} has {len(query.documents)} documents for {len(query.items)} items"
        )

    first = retriever.rank(queries)
    _check_rankings(who, queries, first)
    second = retriever.rank(queries)
    _check_rankings(who, queries, second)
    for query, a, b in zip(queries, first, second, strict=True):
        assert tuple(a) == tuple(b), (
            f"{who} is not deterministic: query {query.example_id!r} ranked {tuple(a)} then {tuple(b)}"
        )

    # One query at a time must also work (the runner may call it on a resumed remainder).
    single = retriever.rank(queries[:1])
    _check_rankings(who, queries[:1], single)

    # A slice of a profile: only its positions may come back.
    full = next((q for q in queries if len(q.items) >= 3), None)
    if full is not None:
        half = RankQuery(full.example_id, full.query, full.documents[:2], full.items[:2])
        _check_rankings(who, (half,), retriever.rank((half,)))

    empty = retriever.rank(())
    assert isinstance(empty, list) and not empty, f"{who}.rank([]) must return an empty list, got {empty!r}"

    key = retriever.cache_key()
    assert isinstance(key, Mapping), f"{who}.cache_key() must return a mapping, got {type(key).__name__}"
    _check_json(dict(key), f"{who}.cache_key()")


def _check_rankings(who: str, queries: Sequence[RankQuery], rankings: Any) -> None:
    assert isinstance(rankings, list), f"{who}.rank must return a list of rankings, got {type(rankings).__name__}"
    assert len(rankings) == len(queries), f"{who}.rank returned {len(rankings)} rankings for {len(queries)} queries"
    for query, ranking in zip(queries, rankings, strict=True):
        positions = tuple(ranking)
        bad = [p for p in positions if not isinstance(p, int) or isinstance(p, bool)]
        assert not bad, (
            f"{who}: ranking of {query.example_id!r} holds non-int positions {bad[:3]!r} "
            "(use plain Python ints: rankings are cached as JSON)"
        )
        assert sorted(positions) == list(range(len(query.items))), (
            f"{who}: ranking of {query.example_id!r} is {positions}, not a permutation of the "
            f"positions 0..{len(query.items) - 1} of its {len(query.items)} profile items "
            "(rankings must be full, without repeats, and only from the given profile)"
        )


def check_task(task: Task, examples: Sequence[Example] | None = None, tokens: TokenCounter | None = None) -> None:
    """Check a :class:`~lamp_harness.plugin.contracts.Task`.

    - ``name``, ``official_name``, ``kind``, ``labels`` and ``profile_fields`` are consistent
      (classification and ordinal tasks have labels, generation tasks none);
    - ``query``, ``document``, ``ppep`` and ``parse`` return strings, ``ppep`` uses ``free_text``;
    - the prompt with no items contains the input; prompts stay within the token budget even with
      a long profile (counted with ``tokens``, default :class:`WhitespaceTokens`);
    - perfect predictions score at least as well as wrong ones on every metric, and strictly better
      on one; ``score`` is deterministic for a seed and counts every example;
    - every metric has per-example scores (from ``example_scores``, or derived from the metric
      helpers ``score`` uses) that reproduce ``score``'s values: without them a task's cells get no
      significance marks and no ``--by profile-size|user`` rows;
    - a task with judged metrics (``judged_metrics``) is checked on its judge hooks instead: its
      prompts show the judge the answer, an unparsable answer raises ``ValueError``, scores
      combine into a number.

    ``examples`` replaces :func:`sample_examples` for tasks whose inputs need a particular format;
    give each a gold and a profile with the task's ``profile_fields``.
    """
    who = _who(task)
    assert isinstance(task, Task), f"{who} does not subclass lamp_harness.Task"
    tokens = tokens or WhitespaceTokens()
    _check_task_metadata(who, task)
    examples = tuple(examples) if examples is not None else sample_examples(task)
    assert examples, "check_task needs at least one example"

    for example in examples:
        query = task.query(example)
        assert isinstance(query, str), f"{who}.query({example.id!r}) returned {type(query).__name__}"
        for item in example.profile:
            document = task.document(item)
            assert isinstance(document, str), f"{who}.document(item {item.id!r}) returned {type(document).__name__}"
            ppep = task.ppep(item)
            assert isinstance(ppep, str) and ppep.strip(), (
                f"{who}.ppep(item {item.id!r}) must return a non-empty string, got {ppep!r}"
            )
            replaced = task.ppep(item, free_text="REPLACEDFREETEXT")
            assert "REPLACEDFREETEXT" in replaced, (
                f"{who}.ppep(item, free_text=...) must put free_text in the entry, got {replaced!r}"
            )
        if example.gold is not None:
            problem = task.validate_gold(example.gold)
            assert problem is None, f"{who}.validate_gold rejected the example's gold {example.gold!r}: {problem}"

    _check_prompts(who, task, examples, tokens)
    _check_parse(who, task)
    if getattr(task, "judged_metrics", ()):
        _check_judged(who, task, examples)
    else:
        _check_scores(who, task, examples)


def _check_judged(who: str, task: Task, examples: Sequence[Example]) -> None:
    """A task with judged metrics: each asks the judge about the answer it is given, rejects an
    answer it cannot parse with ``ValueError``, and combines scores into a number."""
    for metric in task.judged_metrics:
        for example in examples:
            prompts = list(task.judge_prompts(metric.name, example, "REPLACEDANSWER"))
            assert prompts, f"{who}.judge_prompts({metric.name!r}, {example.id!r}) asked nothing"
            assert len({p.key for p in prompts}) == len(prompts), f"{who}.judge_prompts keys must be unique"
            assert all("REPLACEDANSWER" in p.system + p.user for p in prompts), (
                f"{who}.judge_prompts must show the judge the answer it judges"
            )
            value = task.judge_combine(metric.name, example, [0.0] * len(prompts))
            assert isinstance(value, float | int), f"{who}.judge_combine must return a number"
        try:
            task.judge_parse(metric.name, "\u2603 not an answer \u2603")
        except ValueError:
            pass
        else:
            raise AssertionError(f"{who}.judge_parse must raise ValueError for an answer it cannot parse")


def _check_task_metadata(who: str, task: Task) -> None:
    for attr in ("name", "official_name"):
        value = getattr(task, attr, None)
        assert isinstance(value, str) and value.strip(), f"{who} needs a non-empty string '{attr}'"
    assert task.name == task.name.strip().lower().replace("_", "-"), (
        f"{who}.name {task.name!r} must be lowercase with '-' (registry names are normalized)"
    )
    kind = getattr(task, "kind", None)
    assert kind in _KINDS, f"{who}.kind must be one of {_KINDS}, got {kind!r}"
    labels = tuple(task.labels)
    assert all(isinstance(label, str) for label in labels), f"{who}.labels must be strings"
    assert len(set(labels)) == len(labels), f"{who}.labels has duplicates: {labels}"
    if task.kind == "generation":
        assert not labels, f"{who} is a generation task but declares labels {labels}"
    else:
        assert len(labels) >= 2, f"{who} is a {task.kind} task and needs at least two labels, got {labels}"
    for label in labels:
        assert task.validate_gold(label) is None, f"{who}.validate_gold rejects its own label {label!r}"
    if labels:
        assert task.validate_gold("\u2603 not a label \u2603") is not None, (
            f"{who}.validate_gold accepts a string that is not a label"
        )
    fields = tuple(task.profile_fields)
    assert fields and all(isinstance(f, str) and f for f in fields), (
        f"{who}.profile_fields must be a non-empty tuple of field names, got {fields!r}"
    )
    assert isinstance(task.max_new_tokens, int) and task.max_new_tokens > 0, (
        f"{who}.max_new_tokens must be a positive int, got {task.max_new_tokens!r}"
    )


def _check_prompts(who: str, task: Task, examples: Sequence[Example], tokens: TokenCounter) -> None:
    for example in examples:
        bare = task.prompt(example, (), tokens, max_tokens=max(256, 2 * tokens.count(example.input)))
        assert isinstance(bare, str), f"{who}.prompt returned {type(bare).__name__}"
        assert example.input.strip() in bare, (
            f"{who}.prompt with no items must contain the input; example {example.id!r} gave {bare!r}"
        )
        with_items = task.prompt(example, example.profile[:2], tokens, max_tokens=256)
        assert isinstance(with_items, str) and with_items.strip(), f"{who}.prompt with two items returned {with_items!r}"

        long_profile = sample_profile(task.profile_fields, size=8, long=True)
        long_example = Example(example.id, example.input, long_profile, example.gold)
        for budget in (256, 64):
            for k in (1, 4, 8):
                prompt = task.prompt(long_example, long_profile[:k], tokens, max_tokens=budget)
                used = tokens.count(prompt)
                assert used <= budget, (
                    f"{who}.prompt is over budget: {used} tokens for max_tokens={budget} with {k} "
                    f"long profile items (example {example.id!r})"
                )


def _check_parse(who: str, task: Task) -> None:
    for raw in ("", "   ", "  some answer \n", task.labels[0] if task.labels else "a b c"):
        parsed = task.parse(raw)
        assert isinstance(parsed, str), f"{who}.parse({raw!r}) returned {type(parsed).__name__}"
    if task.labels:
        label = task.labels[0]
        assert task.parse(f"  {label}\n") == label, (
            f"{who}.parse must recover the label {label!r} from the raw text '  {label}\\n'"
        )


def _wrong_answer(task: Task, gold: str) -> str:
    if task.labels:
        others = [label for label in task.labels if label != gold]
        # For ordinal tasks the farthest label makes sure every distance metric gets worse.
        return others[-1] if task.kind != "ordinal" or gold != task.labels[-1] else others[0]
    return "zebra xylophone quantum"


def _check_scores(who: str, task: Task, examples: Sequence[Example]) -> None:
    golds = {e.id: e.gold for e in examples if e.gold is not None}
    assert golds, "check_task needs examples with golds to check scoring"
    perfect = _score(who, task, dict(golds), golds)
    again = _score(who, task, dict(golds), golds)
    assert [(m.name, m.value, m.ci_low, m.ci_high) for m in perfect] == [
        (m.name, m.value, m.ci_low, m.ci_high) for m in again
    ], f"{who}.score is not deterministic for one seed"
    wrong = _score(who, task, {i: _wrong_answer(task, g) for i, g in golds.items()}, golds)
    assert [m.name for m in wrong] == [m.name for m in perfect], (
        f"{who}.score returned different metrics for different predictions: "
        f"{[m.name for m in perfect]} vs {[m.name for m in wrong]}"
    )
    strictly_better = False
    for good, bad in zip(perfect, wrong, strict=True):
        if good.higher_is_better:
            assert good.value >= bad.value, (
                f"{who}: metric {good.name!r} (higher is better) is {good.value} on perfect predictions "
                f"but {bad.value} on wrong ones"
            )
            strictly_better |= good.value > bad.value
        else:
            assert good.value <= bad.value, (
                f"{who}: metric {good.name!r} (lower is better) is {good.value} on perfect predictions "
                f"but {bad.value} on wrong ones"
            )
            strictly_better |= good.value < bad.value
    assert strictly_better, f"{who}: no metric tells perfect predictions from wrong ones"
    half = {i: (g if n % 2 else _wrong_answer(task, g)) for n, (i, g) in enumerate(golds.items())}
    for predictions in (dict(golds), half):
        _check_example_scores(who, task, examples, predictions)


def _check_example_scores(who: str, task: Task, examples: Sequence[Example], predictions: Mapping[str, str]) -> None:
    from lamp_harness.inputs.metrics import summarize
    from lamp_harness.plugin.contracts import Prediction
    from lamp_harness.report.scores import score_cell

    done = [Prediction(i, output, output) for i, output in predictions.items()]
    scored = score_cell(task, examples, done, seed=0)
    assert scored.scores is not None, (
        f"{who} offers no per-example scores: compute its metrics in score() with the helpers of "
        "lamp_harness.metrics (accuracy, macro_f1, mae, rmse, rouge, summarize, mean_metric), or "
        "override example_scores(); without them its cells get no significance marks and no "
        "--by profile-size|user rows"
    )
    reported = {
        m.name: m for m in task.score(dict(predictions), {e.id: e.gold for e in examples if e.gold is not None}, seed=0)
    }
    for scores in scored.scores.metrics:
        assert scores.name in reported, f"{who}: per-example scores of {scores.name!r}, a metric score() does not report"
        value = summarize(scores).value
        assert math.isclose(value, reported[scores.name].value, rel_tol=1e-9, abs_tol=1e-12), (
            f"{who}: the per-example scores of {scores.name!r} give {value}, score() says {reported[scores.name].value}"
        )
    missing = sorted(set(reported) - {s.name for s in scored.scores.metrics})
    assert not missing, f"{who}: metric(s) {', '.join(missing)} have no per-example scores"


def _score(who: str, task: Task, predictions: dict[str, str], golds: Mapping[str, str]) -> list[MetricResult]:
    metrics = task.score(predictions, golds, seed=0)
    assert isinstance(metrics, list) and metrics, f"{who}.score must return a non-empty list of MetricResult"
    names = [m.name for m in metrics]
    assert len(set(names)) == len(names), f"{who}.score returned duplicate metric names {names}"
    for metric in metrics:
        assert isinstance(metric, MetricResult), f"{who}.score returned {type(metric).__name__}, not MetricResult"
        assert isinstance(metric.value, (int, float)) and math.isfinite(metric.value), (
            f"{who}: metric {metric.name!r} has a non-finite value {metric.value!r}"
        )
        assert metric.n == len(golds), f"{who}: metric {metric.name!r} reports n={metric.n} for {len(golds)} examples"
        if metric.ci_low is not None and metric.ci_high is not None:
            assert metric.ci_low <= metric.value + 1e-9 and metric.value <= metric.ci_high + 1e-9, (
                f"{who}: metric {metric.name!r} value {metric.value} is outside its interval "
                f"[{metric.ci_low}, {metric.ci_high}]"
            )
    return metrics


def check_personalizer(
    personalizer: Personalizer,
    task: Task,
    generator: Generator | None = None,
    examples: Sequence[Example] | None = None,
    context: RunContext | None = None,
) -> None:
    """Check a :class:`~lamp_harness.plugin.contracts.Personalizer` with ``task`` and ``generator``
    (default: an :class:`EchoGenerator` with a 64-token budget).

    - ``setup`` accepts the task and generator; ``personalize`` returns a ``GenerationRequest``
      carrying the example's id, a string prompt, the task's labels as ``choices`` and a sane
      ``max_new_tokens``; with an empty ``retrieved`` it still works;
    - plain prompts stay within ``generator.max_input_tokens`` even with long profile items;
    - requests without soft tokens are deterministic; ``describe`` is JSON-serializable;
    - a personalizer that accepts no retriever gives the same request whatever is retrieved.
    """
    who = _who(personalizer)
    assert isinstance(personalizer, Personalizer), f"{who} does not subclass lamp_harness.Personalizer"
    generator = generator if generator is not None else EchoGenerator()
    examples = tuple(examples) if examples is not None else sample_examples(task)
    with tempfile.TemporaryDirectory(prefix="lamp-check-") as tmp:
        context = context if context is not None else RunContext(lamp_home=Path(tmp))
        personalizer.setup(task, generator, context)
        budget = generator.max_input_tokens
        for example in examples:
            long_items = sample_profile(task.profile_fields, size=4, long=True)
            for retrieved in ((), example.profile[:1], example.profile[:3], long_items):
                request = personalizer.personalize(task, example, retrieved)
                _check_request(who, task, example, request)
                if not request.is_fusion and not request.has_soft_tokens:
                    used = generator.tokens.count(request.prompt)
                    assert used <= budget, (
                        f"{who}: prompt of {example.id!r} has {used} tokens with {len(retrieved)} "
                        f"retrieved items; the generator's budget is {budget}"
                    )
                    repeat = personalizer.personalize(task, example, retrieved)
                    assert repeat == request, f"{who}.personalize is not deterministic for {example.id!r}"
            if not personalizer.accepts_retriever:
                without = personalizer.personalize(task, example, ())
                with_items = personalizer.personalize(task, example, example.profile[:2])
                if not without.has_soft_tokens:
                    assert without == with_items, (
                        f"{who} declares accepts_retriever=False but its request changes with the retrieved items"
                    )
    description = personalizer.describe()
    assert isinstance(description, Mapping) and description.get("name") == personalizer.name, (
        f"{who}.describe() must return a mapping with 'name': {personalizer.name!r}, got {description!r}"
    )
    _check_json(dict(description), f"{who}.describe()")


def _check_request(who: str, task: Task, example: Example, request: Any) -> None:
    assert isinstance(request, GenerationRequest), (
        f"{who}.personalize must return a GenerationRequest, got {type(request).__name__}"
    )
    assert request.example_id == example.id, (
        f"{who}: request example_id {request.example_id!r} is not the example's id {example.id!r}"
    )
    assert isinstance(request.prompt, str), f"{who}: request prompt is {type(request.prompt).__name__}"
    assert request.prompt.strip() or request.is_fusion or request.prefix, (
        f"{who}: request for {example.id!r} is empty (no prompt, prefix or passages)"
    )
    choices = tuple(task.choices(example))
    assert tuple(request.choices) in ((), choices), (
        f"{who}: request choices {request.choices} are not the task's choices {choices}"
    )
    if task.labels:
        assert tuple(request.choices) == choices, (
            f"{who}: requests for a task with labels must carry them as choices (label decoding uses "
            f"them); got {request.choices}"
        )
    assert request.max_new_tokens is None or (isinstance(request.max_new_tokens, int) and request.max_new_tokens > 0), (
        f"{who}: max_new_tokens must be None or a positive int, got {request.max_new_tokens!r}"
    )
    assert all(isinstance(p, str) for p in request.passages), f"{who}: passages must be strings"


def check_generator(generator: Generator, *, check_order: bool = True) -> None:
    """Check a :class:`~lamp_harness.plugin.contracts.Generator`.

    - ``tokens`` is a TokenCounter whose ``truncate`` respects its ``count``; ``max_input_tokens``
      is a positive int; ``describe`` is JSON-serializable;
    - ``generate`` returns one :class:`Generation` of strings and non-negative counts per request,
      in request order (checked by generating the batch reversed: each request must get the same
      text; pass ``check_order=False`` for generators that sample), and an empty list for no
      requests;
    - label decoding answers with one of the request's choices or refuses with a ``LampError``;
    - a decoder-only generator refuses fusion-in-decoder requests with a ``LampError``.
    """
    who = _who(generator)
    assert isinstance(generator, Generator), f"{who} does not subclass lamp_harness.Generator"
    tokens = generator.tokens
    assert isinstance(tokens, TokenCounter), f"{who}.tokens is not a TokenCounter (count, truncate)"
    text = "The quick brown fox jumps over the lazy dog near the river bank at dawn"
    total = tokens.count(text)
    assert isinstance(total, int) and total > 0, f"{who}.tokens.count returned {total!r} for a sentence"
    for limit in (1, 3, total):
        cut = tokens.truncate(text, limit)
        assert isinstance(cut, str) and tokens.count(cut) <= limit, (
            f"{who}.tokens.truncate(text, {limit}) gave {cut!r} with {tokens.count(cut)} tokens"
        )
    assert isinstance(generator.max_input_tokens, int) and generator.max_input_tokens > 0, (
        f"{who}.max_input_tokens must be a positive int, got {generator.max_input_tokens!r}"
    )
    description = generator.describe()
    assert isinstance(description, Mapping), f"{who}.describe() must return a mapping"
    _check_json(dict(description), f"{who}.describe()")

    requests = [
        GenerationRequest("g0", "Paraphrase: the cat sat on the mat", max_new_tokens=4),
        GenerationRequest(
            "g1",
            "Write a short title for a paper about retrieval for personalized language models and user profiles",
            max_new_tokens=4,
        ),
        GenerationRequest("g2", "Hi", max_new_tokens=4),
    ]
    assert list(generator.generate([])) == [], f"{who}.generate([]) must return an empty list"
    forward = generator.generate(requests)
    _check_generations(who, requests, forward)
    if check_order:
        backward = generator.generate(list(reversed(requests)))
        _check_generations(who, list(reversed(requests)), backward)
        for request, a, b in zip(requests, forward, reversed(backward), strict=True):
            assert a.text == b.text, (
                f"{who}: request {request.example_id!r} got {a.text!r} in one batch order and "
                f"{b.text!r} in the reversed order (generations must come back in request order)"
            )

    choices = ("yes", "no")
    labelled = [GenerationRequest("l0", "Is the sky blue? Answer yes or no.", choices=choices, max_new_tokens=2)]
    try:
        answers = generator.generate(labelled, decode="labels")
    except LampError:
        pass  # the generator cannot score labels, and says so in one line
    else:
        _check_generations(who, labelled, answers)
        assert answers[0].text.strip() in choices, (
            f"{who}: decode='labels' answered {answers[0].text!r}, not one of {choices}"
        )

    if not generator.is_encoder_decoder:
        fusion = [GenerationRequest("f0", "", passages=("first passage", "second passage"))]
        try:
            generator.generate(fusion)
        except LampError:
            pass
        else:
            raise AssertionError(
                f"{who} is decoder-only but accepted a fusion-in-decoder request; it must raise a LampError naming the model"
            )


def _check_generations(who: str, requests: Sequence[GenerationRequest], generations: Any) -> None:
    assert isinstance(generations, list), f"{who}.generate must return a list, got {type(generations).__name__}"
    assert len(generations) == len(requests), (
        f"{who}.generate returned {len(generations)} generations for {len(requests)} requests"
    )
    for request, generation in zip(requests, generations, strict=True):
        assert isinstance(generation, Generation), (
            f"{who}.generate returned {type(generation).__name__} for {request.example_id!r}, not Generation"
        )
        assert isinstance(generation.text, str), (
            f"{who}: text for {request.example_id!r} is {type(generation.text).__name__}"
        )
        for attr in ("prompt_tokens", "generated_tokens"):
            value = getattr(generation, attr)
            assert isinstance(value, int) and value >= 0, (
                f"{who}: {attr} for {request.example_id!r} must be a non-negative int, got {value!r}"
            )


# ---------------------------------------------------------------------------------------------
# Trainable personalizers, data sources, reporters
# ---------------------------------------------------------------------------------------------


def check_trainable_personalizer(
    personalizer: Personalizer,
    task: Task,
    generator: Generator | None = None,
    examples: Sequence[Example] | None = None,
    *,
    k: int = 2,
    lr: float = 0.05,
    context: RunContext | None = None,
) -> None:
    """Check a trainable :class:`~lamp_harness.plugin.contracts.Personalizer` (one that implements
    :class:`~lamp_harness.plugin.contracts.Trainable`), the way ``lamp train`` uses it. Needs torch.

    - ``trainable`` is ``True`` and the personalizer has trainable torch parameters;
    - ``training_loss`` on a batch (each example with its first ``k`` profile items as retrieved)
      is a finite scalar with a gradient, and one optimizer step changes the weights that
      ``state_dict`` returns (what a checkpoint saves);
    - the state dict round-trips: saved as a checkpoint is (safetensors), the weights perturbed,
      then loaded back, every tensor is restored exactly and ``personalize`` gives the same request;
    - after training, the usual :func:`check_personalizer` rules still hold.

    ``generator`` defaults to an :class:`EchoGenerator`; personalizers that train through the
    generator's loss (soft prompts) must pass a real one. Pass ``examples`` when your task needs a
    particular input format.
    """
    import torch
    from safetensors.torch import load as load_safetensors
    from safetensors.torch import save as save_safetensors

    from lamp_harness.plugin.contracts import Trainable

    who = _who(personalizer)
    assert isinstance(personalizer, Personalizer), f"{who} does not subclass lamp_harness.Personalizer"
    assert getattr(personalizer, "trainable", False) is True, (
        f"{who} must set the class attribute trainable = True so that lamp run trains it first"
    )
    assert isinstance(personalizer, Trainable), (
        f"{who} must implement parameters(), training_loss(), state_dict() and load_state_dict()"
    )
    generator = generator if generator is not None else EchoGenerator()
    examples = tuple(examples) if examples is not None else sample_examples(task)
    with tempfile.TemporaryDirectory(prefix="lamp-check-") as tmp:
        context = context if context is not None else RunContext(lamp_home=Path(tmp))
        personalizer.setup(task, generator, context)
        personalizer.prepare(task, examples)
        params = [p for p in personalizer.parameters() if getattr(p, "requires_grad", False)]
        assert params, f"{who}.parameters() yields no tensor with requires_grad=True"

        def snapshot() -> dict[str, Any]:
            state = personalizer.state_dict()
            assert isinstance(state, dict) and state, f"{who}.state_dict() must return a non-empty dict"
            bad = [name for name, value in state.items() if not isinstance(value, torch.Tensor)]
            assert not bad, f"{who}.state_dict() values must be tensors; {bad[:3]} are not"
            return {name: value.detach().cpu().clone() for name, value in state.items()}

        before = snapshot()
        retrieved = [example.profile[:k] for example in examples]
        optimizer = torch.optim.SGD(params, lr=lr)
        optimizer.zero_grad()
        loss = personalizer.training_loss(task, examples, retrieved)
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0, (
            f"{who}.training_loss must return a scalar torch tensor, got {loss!r}"
        )
        assert torch.isfinite(loss).item(), f"{who}.training_loss is not finite: {loss.item()}"
        assert loss.requires_grad, f"{who}.training_loss has no gradient (is the graph detached?)"
        loss.backward()
        assert any(p.grad is not None and bool(torch.any(p.grad != 0)) for p in params), (
            f"{who}: the training loss gives no parameter a non-zero gradient"
        )
        optimizer.step()
        after = snapshot()
        assert set(after) == set(before), f"{who}.state_dict() keys changed during a training step"
        changed = [name for name in after if not torch.equal(after[name], before[name])]
        assert changed, f"{who}: a training step did not change any weight in state_dict()"

        request = personalizer.personalize(task, examples[0], examples[0].profile[:k])
        restored = load_safetensors(save_safetensors({n: v.contiguous() for n, v in after.items()}))
        with torch.no_grad():
            for p in params:
                p.add_(1.0)
        assert any(not torch.equal(v, after[n]) for n, v in snapshot().items()), (
            f"{who}.state_dict() does not reflect the parameters' values"
        )
        personalizer.load_state_dict(restored)
        reloaded = snapshot()
        for name, value in after.items():
            assert torch.equal(reloaded[name], value), (
                f"{who}: weight {name!r} differs after a state_dict round trip (load_state_dict "
                "must restore exactly what state_dict returned)"
            )
        again = personalizer.personalize(task, examples[0], examples[0].profile[:k])
        if not request.has_soft_tokens:
            assert again == request, f"{who}: the request changed after a state_dict round trip"
    check_personalizer(personalizer, task, generator, examples)


def check_data_source(source: Any, task: Task, splits: Sequence[str] = ("dev",)) -> None:
    """Check a :class:`~lamp_harness.inputs.data.DataSource` for ``task``.

    - ``name`` is a non-empty lowercase string and ``schemes`` a subset of ``("user", "time")``;
    - ``locate`` gives, for each split in ``splits`` and each scheme, files that exist and load
      and validate as the task's official format (:func:`lamp_harness.inputs.data.load_split`), with
      golds for the train and dev splits, and a ``source`` label for ``config.json``;
    - a second ``locate`` returns the same files and the same data (runs are reproducible);
    - an unknown split is refused with a one-line :class:`LampError`;
    - ``cached`` and ``notes`` return lists of the documented shapes.
    """
    from lamp_harness.inputs.data import SCHEMES, DataSource, SplitFiles, load_split

    who = _who(source)
    assert isinstance(source, DataSource), f"{who} does not subclass lamp_harness.DataSource"
    assert isinstance(getattr(source, "name", None), str) and source.name == source.name.strip().lower() and source.name, (
        f"{who} needs a non-empty lowercase class attribute 'name'"
    )
    schemes = tuple(source.schemes)
    assert schemes and set(schemes) <= set(SCHEMES), f"{who}.schemes must be a subset of {SCHEMES}, got {schemes}"
    for scheme in schemes:
        for split in splits:
            files = source.locate(task, split, scheme)
            assert isinstance(files, SplitFiles), f"{who}.locate must return SplitFiles, got {type(files).__name__}"
            assert Path(files.questions).is_file(), f"{who}: questions file {files.questions} does not exist"
            assert files.outputs is None or Path(files.outputs).is_file(), (
                f"{who}: outputs file {files.outputs} does not exist"
            )
            assert isinstance(files.source, str) and files.source, f"{who}: SplitFiles.source must name the data"
            dataset = load_split(task, files.questions, files.outputs, split=split, source=files.source)
            assert dataset.examples, f"{who}: {split} split of {task.name} is empty"
            if split in ("train", "dev"):
                assert files.outputs is not None and all(e.gold is not None for e in dataset.examples), (
                    f"{who}: the {split} split must come with golds for every question"
                )
            again = source.locate(task, split, scheme)
            assert (again.questions, again.outputs) == (files.questions, files.outputs), (
                f"{who}.locate gave different files on a second call"
            )
            reloaded = load_split(task, again.questions, again.outputs, split=split, source=again.source)
            assert reloaded.fingerprint == dataset.fingerprint and reloaded.examples == dataset.examples, (
                f"{who}: the {split} data changed between two calls (runs must be reproducible)"
            )
    try:
        source.locate(task, "no-such-split", schemes[0])
    except LampError as exc:
        assert "\n" not in str(exc), f"{who}: the error for an unknown split must be one line"
    else:
        raise AssertionError(f"{who}.locate accepted the unknown split 'no-such-split' (raise a LampError)")
    cached = source.cached(task)
    assert isinstance(cached, list) and all(isinstance(c, tuple) and len(c) == 3 for c in cached), (
        f"{who}.cached must return a list of (scheme, split, SplitFiles)"
    )
    notes = source.notes(task)
    assert isinstance(notes, list) and all(isinstance(n, str) for n in notes), f"{who}.notes must return strings"


def check_reporter(reporter: Any, *, examples: int = 3) -> None:
    """Check a reporter: the plugin itself, i.e. its module (``from my_package import reporter``)
    or an instance whose methods carry the lifecycle ``@hookimpl`` marks; not a class.

    It is loaded into a real :class:`~lamp_harness.plugin.registry.PluginHost` (without the installed
    plugins) and driven through a whole fake run in a temporary folder: ``lamp_run_started``, a
    computed cell (``lamp_cell_started``, ``examples`` x ``lamp_example_predicted``,
    ``lamp_cell_finished``), a skipped cell, a cell without metrics (test split), and
    ``lamp_run_finished``, twice (a resumed run). The reporter must load (hook names and
    argument names match the specs), implement at least one lifecycle hook, draw no warning and
    never raise.
    """
    from lamp_harness.plugin.contracts import Prediction
    from lamp_harness.plugin.registry import LIFECYCLE_HOOKS, PluginHost
    from lamp_harness.run.cells import CellSpec, Matrix, RunInfo
    from lamp_harness.run.records import CellResult, Timing

    who = _who(reporter)
    host = PluginHost(extra_plugins=[("reporter-under-check", reporter)], entry_points=False)
    assert not host.broken, f"{who} failed to load: {host.broken[0].error}"
    assert not host.warnings, f"{who}: {host.warnings[0]}"
    loaded = host.loaded[0]
    assert any(h in LIFECYCLE_HOOKS for h in loaded.hooks), (
        f"{who} implements no lifecycle hook (one of {', '.join(LIFECYCLE_HOOKS)})"
    )
    with tempfile.TemporaryDirectory(prefix="lamp-check-") as tmp:
        out = Path(tmp) / "run"
        cells = []
        for index in range(3):
            cell_id = f"sample-task_none-{index:010d}"
            cells.append(
                CellSpec(
                    cell_id,
                    f"none / model-{index}",
                    "sample-task",
                    "dev" if index < 2 else "test",
                    "none",
                    (),
                    None,
                    (),
                    0,
                    "echo",
                    None,
                    (),
                    "generate",
                    out / cell_id,
                )
            )
        info = RunInfo(out, cells, Matrix(tasks=("sample-task",)), RunContext(lamp_home=Path(tmp)), None)
        sample = sample_examples()[:1] * examples
        metrics = [MetricResult("accuracy", 0.5, True, 0.25, 0.75, examples)]
        timing = Timing(
            wall_s=1.0,
            examples=examples,
            examples_this_run=examples,
            examples_per_s=float(examples),
            mean_prompt_tokens=10.0,
            generated_tokens=3 * examples,
        )
        for _ in range(2):
            out.mkdir(parents=True, exist_ok=True)
            host.notify("lamp_run_started", run=info)
            host.notify("lamp_cell_started", run=info, cell=cells[0], total=examples, done=0)
            for i, example in enumerate(sample):
                prediction = Prediction(f"{example.id}-{i}", "answer", "answer", "prompt", ("p0",), 10, 3)
                host.notify("lamp_example_predicted", cell=cells[0], example=example, prediction=prediction)
            host.notify("lamp_cell_finished", run=info, cell=cells[0], metrics=metrics, timing=timing)
            host.notify("lamp_cell_finished", run=info, cell=cells[1], metrics=metrics, timing=timing.with_(skipped=True))
            host.notify("lamp_cell_started", run=info, cell=cells[2], total=examples, done=1)
            host.notify("lamp_cell_finished", run=info, cell=cells[2], metrics=[], timing=timing)
            results = [
                CellResult(c.cell_id, c.label, c.task, tuple(m), i == 1, c.dir, None if i == 1 else timing)
                for i, (c, m) in enumerate(zip(cells, (metrics, metrics, []), strict=True))
            ]
            host.notify("lamp_run_finished", run=info, results=results)
            assert not host.broken, f"{who} raised in a lifecycle hook: {host.broken[0].error}"
