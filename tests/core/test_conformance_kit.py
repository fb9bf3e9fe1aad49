"""``lamp_harness.testing``: the conformance kit passes conforming components and names the rule a
broken one violates."""

from __future__ import annotations

import random

import pytest

from lamp_harness import metrics
from lamp_harness.plugin.contracts import (
    Example,
    Generation,
    GenerationRequest,
    MetricResult,
    ProfileItem,
    RankQuery,
    Retriever,
    RunContext,
    Task,
    TokenCounter,
)
from lamp_harness.plugin.registry import host
from lamp_harness.testing import (
    EchoGenerator,
    WhitespaceTokens,
    check_generator,
    check_personalizer,
    check_retriever,
    check_task,
    sample_examples,
    sample_rank_queries,
)

# ---------------------------------------------------------------------------------------------
# Small conforming components written against the contracts only
# ---------------------------------------------------------------------------------------------


class LengthRetriever(Retriever):
    """Longest document first, ties by profile order."""

    name = "length"

    def rank(self, queries):
        return [tuple(sorted(range(len(q.documents)), key=lambda i: (-len(q.documents[i]), i))) for q in queries]


class ParaphraseTask(Task):
    """A LaMP-7-like generation task with a token-overlap metric."""

    name = "toy-paraphrase"
    official_name = "Toy_Paraphrase"
    kind = "generation"
    profile_fields = ("text",)

    def query(self, example):
        return example.input.split(":", 1)[-1].strip()

    def document(self, item):
        return item.get("text")

    def ppep(self, item, free_text=None):
        return f'"{item.get("text") if free_text is None else free_text}" '

    def prompt(self, example, items, tokens, max_tokens=256):
        if not items:
            return tokens.truncate(example.input, max_tokens)
        share = max(1, (max_tokens - tokens.count(example.input) - 4) // len(items))
        joined = ", and ".join(self.ppep(i, tokens.truncate(i.get("text"), share)) for i in items)
        return tokens.truncate(f"{joined} are examples. {example.input}", max_tokens)

    def score(self, predictions, golds, *, seed=0):
        ids = [i for i in golds if i in predictions]
        overlaps = []
        for i in ids:
            p, g = set(predictions[i].split()), set(golds[i].split())
            overlaps.append(len(p & g) / max(1, len(p | g)))
        # A helper of lamp_harness.inputs.metrics: the harness then has per-example scores too.
        return [metrics.mean_metric("overlap", overlaps, higher_is_better=True, seed=seed)]


class LabelTask(ParaphraseTask):
    """A classification variant with accuracy."""

    name = "toy-label"
    official_name = "Toy_Label"
    kind = "classification"
    labels = ("[1]", "[2]")

    def parse(self, text):
        return text.strip()

    def score(self, predictions, golds, *, seed=0):
        ids = [i for i in golds if i in predictions]
        wrong = [float(predictions[i] != golds[i]) for i in ids]
        return [
            metrics.accuracy([predictions[i] for i in ids], [golds[i] for i in ids], seed=seed),
            metrics.mean_metric("error-rate", wrong, higher_is_better=False, seed=seed),
        ]


@pytest.fixture
def context(tmp_path) -> RunContext:
    return RunContext(lamp_home=tmp_path)


# ---------------------------------------------------------------------------------------------
# Helpers and sample data
# ---------------------------------------------------------------------------------------------


def test_whitespace_tokens_count_and_truncate_on_words():
    tokens = WhitespaceTokens()
    assert isinstance(tokens, TokenCounter)
    assert tokens.count("  a b\n c ") == 3
    assert tokens.truncate("a b c d", 2) == "a b"
    assert tokens.truncate("a  b", 5) == "a  b"
    assert tokens.truncate("a b", 0) == ""


def test_sample_examples_follow_the_task_schema():
    examples = sample_examples(LabelTask())
    assert [e.gold for e in examples] == ["[1]", "[2]", "[1]"]
    assert all(set(item.fields) == {"text"} for e in examples for item in e.profile)
    assert len({e.id for e in examples}) == len(examples)


def test_echo_generator_answers_in_order_and_counts_tokens():
    generator = EchoGenerator(echo_words=2)
    out = generator.generate([GenerationRequest("a", "one two three"), GenerationRequest("b", "x y")])
    assert out == [Generation("two three", 3, 2), Generation("x y", 2, 2)]
    assert [r.example_id for r in generator.requests] == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# check_retriever
# ---------------------------------------------------------------------------------------------


def test_check_retriever_passes_a_conforming_retriever():
    check_retriever(LengthRetriever())


class TopOnly(LengthRetriever):
    def rank(self, queries):
        return [ranking[:1] for ranking in super().rank(queries)]


class Shuffled(LengthRetriever):
    def rank(self, queries):
        return [tuple(random.sample(range(len(q.documents)), len(q.documents))) for q in queries]


class CachesByExampleId(LengthRetriever):
    def __init__(self):
        self.cache = {}

    def rank(self, queries):
        rankings = super().rank(queries)
        return [self.cache.setdefault(q.example_id, r) for q, r in zip(queries, rankings, strict=True)]


class OneBased(LengthRetriever):
    def rank(self, queries):
        return [tuple(p + 1 for p in r) for r in super().rank(queries)]


class DropsQueries(LengthRetriever):
    def rank(self, queries):
        return super().rank(queries)[:1]


class FloatPositions(LengthRetriever):
    def rank(self, queries):
        return [tuple(float(p) for p in r) for r in super().rank(queries)]


class UnserializableKey(LengthRetriever):
    def cache_key(self):
        return {"name": self.name, "encoder": object()}


@pytest.mark.parametrize(
    "retriever, message",
    [
        (TopOnly(), "not a permutation of the positions"),
        (Shuffled(), "not deterministic"),
        (CachesByExampleId(), "only from the given profile"),
        (OneBased(), "not a permutation of the positions 0..5"),
        (DropsQueries(), "returned 1 rankings for 5 queries"),
        (FloatPositions(), "non-int positions"),
        (UnserializableKey(), "cache_key() must be JSON-serializable"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Retriever) else "",
)
def test_check_retriever_names_the_broken_rule(retriever, message):
    random.seed(3)
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_retriever(retriever)


def test_check_retriever_uses_the_given_queries():
    item = ProfileItem("0", 0, {"text": "solo"})
    check_retriever(LengthRetriever(), [RankQuery("only", "solo", ("solo",), (item,))])
    with pytest.raises(AssertionError, match="3 documents for 1 items"):
        check_retriever(LengthRetriever(), [RankQuery("bad", "q", ("a", "b", "c"), (item,))])
    assert len(sample_rank_queries()) == 5


# ---------------------------------------------------------------------------------------------
# check_task
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [ParaphraseTask(), LabelTask()], ids=["generation", "classification"])
def test_check_task_passes_conforming_tasks(task):
    check_task(task)


class NoBudget(ParaphraseTask):
    def prompt(self, example, items, tokens, max_tokens=256):
        return " ".join(self.ppep(i) for i in items) + example.input


class LabelledGeneration(ParaphraseTask):
    labels = ("a", "b")


class LowerIsBetterMislabelled(LabelTask):
    def score(self, predictions, golds, *, seed=0):
        metrics = super().score(predictions, golds, seed=seed)
        return [MetricResult(m.name, m.value, not m.higher_is_better, n=m.n) for m in metrics]


class IgnoresFreeText(ParaphraseTask):
    def ppep(self, item, free_text=None):
        return f'"{item.get("text")}" '


class DropsInput(ParaphraseTask):
    def prompt(self, example, items, tokens, max_tokens=256):
        return "answer the question" if not items else super().prompt(example, items, tokens, max_tokens)


class RandomScore(ParaphraseTask):
    def score(self, predictions, golds, *, seed=0):
        return [MetricResult("noise", random.random(), True, n=len(golds))]


class WrongCount(ParaphraseTask):
    def score(self, predictions, golds, *, seed=0):
        return [MetricResult(m.name, m.value, True, n=0) for m in super().score(predictions, golds)]


class BadName(ParaphraseTask):
    name = "Toy_Paraphrase"


@pytest.mark.parametrize(
    "task, message",
    [
        (NoBudget(), "prompt is over budget"),
        (LabelledGeneration(), "generation task but declares labels"),
        (LowerIsBetterMislabelled(), "on perfect predictions but"),
        (IgnoresFreeText(), "must put free_text in the entry"),
        (DropsInput(), "prompt with no items must contain the input"),
        (RandomScore(), "not deterministic"),
        (WrongCount(), "reports n=0 for 3 examples"),
        (BadName(), "must be lowercase"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Task) else "",
)
def test_check_task_names_the_broken_rule(task, message):
    with pytest.raises(AssertionError, match=message):
        check_task(task)


def test_check_task_accepts_examples_in_the_task_s_own_format():
    profile = (ProfileItem("1", 0, {"text": "an earlier tweet"}),)
    check_task(ParaphraseTask(), [Example("e1", "Paraphrase: hello world", profile, "hi world")])


# ---------------------------------------------------------------------------------------------
# check_personalizer (on the built-in personalizers, loaded through the registry)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["none", "ipa"])
@pytest.mark.parametrize("task", [ParaphraseTask(), LabelTask()], ids=["generation", "classification"])
def test_check_personalizer_passes_the_built_in_personalizers(name, task, context):
    personalizer = host().registry.create("personalizer", name, context)
    check_personalizer(personalizer, task, EchoGenerator(max_input_tokens=48))


def _ipa(context):
    return type(host().registry.create("personalizer", "ipa", context))


def test_check_personalizer_names_the_broken_rule(context):
    ipa = _ipa(context)

    class WrongId(ipa):
        def personalize(self, task, example, retrieved):
            request = super().personalize(task, example, retrieved)
            return GenerationRequest("0", request.prompt, choices=request.choices)

    class OverBudget(ipa):
        def personalize(self, task, example, retrieved):
            text = " ".join(self._task_text(item) for item in retrieved) + " " + example.input
            return GenerationRequest(example.id, text, choices=task.labels)

        @staticmethod
        def _task_text(item):
            return item.get("text")

    class NoChoices(ipa):
        def personalize(self, task, example, retrieved):
            request = super().personalize(task, example, retrieved)
            return GenerationRequest(example.id, request.prompt)

    class Undescribed(ipa):
        def describe(self):
            return {"name": self.name, "device": object()}

    cases = [
        (WrongId, ParaphraseTask(), "is not the example's id 'ex0'"),
        (OverBudget, ParaphraseTask(), "the generator's budget is 48"),
        (NoChoices, LabelTask(), "must carry them as choices"),
        (Undescribed, ParaphraseTask(), r"describe\(\) must be JSON-serializable"),
    ]
    for cls, task, message in cases:
        with pytest.raises(AssertionError, match=message):
            check_personalizer(cls(context), task, EchoGenerator(max_input_tokens=48))


# ---------------------------------------------------------------------------------------------
# check_generator
# ---------------------------------------------------------------------------------------------


def test_check_generator_passes_the_echo_generator():
    check_generator(EchoGenerator())


class SortsWithoutRestoring(EchoGenerator):
    def generate(self, requests, *, decode="generate"):
        return super().generate(sorted(requests, key=lambda r: len(r.prompt)), decode=decode)


class Short(EchoGenerator):
    def generate(self, requests, *, decode="generate"):
        return (
            super().generate(requests, decode=decode)[:-1]
            if len(requests) > 1
            else super().generate(requests, decode=decode)
        )


class AcceptsFusion(EchoGenerator):
    def generate(self, requests, *, decode="generate"):
        if any(r.is_fusion for r in requests):
            return [Generation(" ".join(r.passages)) for r in requests]
        return super().generate(requests, decode=decode)


class ReturnsStrings(EchoGenerator):
    def generate(self, requests, *, decode="generate"):
        return [g.text for g in super().generate(requests, decode=decode)]


class LabelOutsideChoices(EchoGenerator):
    def generate(self, requests, *, decode="generate"):
        if decode == "labels":
            return [Generation("maybe") for _ in requests]
        return super().generate(requests, decode=decode)


class NoisyCounter:
    def count(self, text):
        return len(text.split())

    def truncate(self, text, max_tokens):
        return text  # ignores the limit


class IgnoresTruncation(EchoGenerator):
    @property
    def tokens(self):
        return NoisyCounter()


@pytest.mark.parametrize(
    "cls, message",
    [
        (SortsWithoutRestoring, "reversed order"),
        (Short, "returned 2 generations for 3 requests"),
        (AcceptsFusion, "accepted a fusion-in-decoder request"),
        (ReturnsStrings, "returned str"),
        (LabelOutsideChoices, "answered 'maybe', not one of"),
        (IgnoresTruncation, r"truncate\(text, 1\)"),
    ],
)
def test_check_generator_names_the_broken_rule(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_generator(cls())


def test_check_generator_passes_an_encoder_decoder_that_fuses_passages():
    check_generator(EchoGenerator(encoder_decoder=True))
    out = EchoGenerator(encoder_decoder=True, echo_words=2).generate([GenerationRequest("f", "", passages=("a b", "c d"))])
    assert out[0].text == "c d"


# ---------------------------------------------------------------------------------------------
# The built-ins pass the kit (a third-party author can rely on the checks being the real bar)
# ---------------------------------------------------------------------------------------------


def _built_in(kind: str) -> list[str]:
    from lamp_harness.plugin.registry import PluginHost

    return [c.name for c in PluginHost().registry.components(kind) if c.distribution == "lamp-harness"]


@pytest.mark.parametrize("name", _built_in("task"))
def test_every_built_in_task_passes_check_task(name, lamp_home):
    task = host().registry.create("task", name)
    examples = None
    if task.judged_metrics:  # its golds have a shape of their own (a rubric): its demo data has them
        from lamp_harness.inputs.data import resolve_dataset

        examples = resolve_dataset(
            task, data="demo", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home)
        ).examples[:3]
    check_task(task, examples)


# Arguments that let a built-in run on the kit's undated, offline sample data.
_RETRIEVER_ARGS = {"recency": {"fallback": "profile-order"}, "dense": {"model": "minilm"}}


@pytest.fixture(scope="module")
def shared_context(tmp_path_factory) -> RunContext:
    """One context for all retrievers, so dense ones share a loaded encoder (RunContext.shared)."""
    return RunContext(lamp_home=tmp_path_factory.mktemp("kit-home"))


@pytest.mark.parametrize("name", _built_in("retriever"))
def test_every_built_in_retriever_passes_check_retriever(name, shared_context):
    from lamp_harness.base.errors import LampError

    try:
        retriever = host().registry.create("retriever", name, shared_context, **_RETRIEVER_ARGS.get(name, {}))
        retriever.rank(sample_rank_queries()[:1])
    except LampError as exc:  # e.g. a model that is not available offline
        pytest.skip(f"retriever {name!r} cannot run here: {exc}")
    check_retriever(retriever)
