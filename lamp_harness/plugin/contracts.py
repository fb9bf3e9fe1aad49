"""The four plugin contracts (Task, Retriever, Personalizer, Generator) and the data that flows between them.

Data types are frozen dataclasses. The flow of one example through a run is::

    Task.query/document --> Retriever.rank --> ranked profile items (top k)
    Personalizer.personalize(task, example, top_k) --> GenerationRequest
    Generator.generate([GenerationRequest, ...]) --> [Generation, ...]
    Task.parse(Generation.text) --> Prediction.output --> Task.score(...) --> [MetricResult, ...]

``GenerationRequest`` is deliberately open: a plain prompt (IPA, none), a prompt with a prefix of
text and soft vectors in front of it (PPlug, PPlug + retrieval), or several passages that an
encoder-decoder encodes separately and fuses in its decoder (FiD). Generators that cannot serve a
kind of request raise :class:`~lamp_harness.base.errors.LampError` naming the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from lamp_harness.plugin.options import Options

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileItem:
    """One entry of a user's profile (a past tweet, paper, review, ...).

    ``id`` is the official item id, or the item's position as a string when the file has none
    (the real LaMP-7 dev records here carry no ids). ``fields`` holds every other field of the
    record as read from the file (``text``, ``title``, ``score``, ``date``...).
    """

    id: str
    position: int
    fields: Mapping[str, Any]

    def get(self, name: str, default: str = "") -> str:
        """The field ``name`` as a string (``default`` when absent; numbers are converted)."""
        value = self.fields.get(name, default)
        return value if isinstance(value, str) else str(value)

    @property
    def date(self) -> str | None:
        """The item's ``date`` field, or ``None`` when it has none (recency retrieval uses it)."""
        value = self.fields.get("date")
        return None if value in (None, "") else str(value)


@dataclass(frozen=True)
class Example:
    """One question: the task input, the asking user's profile, and the gold output when known."""

    id: str
    input: str
    profile: tuple[ProfileItem, ...]
    gold: str | None = None


@dataclass(frozen=True)
class SoftTokens:
    """Vectors in the generator's input-embedding space, placed among the prompt's tokens.

    ``vectors`` is a ``torch.Tensor`` of shape ``[n, hidden]`` (kept as ``Any`` so this module
    needs no torch). It may require grad: generators keep the graph for training losses.
    """

    vectors: Any

    @property
    def length(self) -> int:
        """Number of soft tokens (rows of ``vectors``)."""
        return int(self.vectors.shape[0])


Segment = str | SoftTokens
"""A piece of a request's prefix: text (tokenized and embedded) or soft vectors (used as is)."""

DecodeMode = Literal["generate", "labels"]
"""``generate``: free generation; ``labels``: score each of a request's ``choices`` and answer the best."""


@dataclass(frozen=True)
class GenerationRequest:
    """What a personalizer asks the generator to complete.

    - ``prompt``: the text input (for chat models it becomes the user turn).
    - ``prefix``: segments placed, in order, in front of the prompt's tokens (PPlug: ``[I; P]``
      soft tokens; PPlug + retrieval: a text segment and then the soft tokens).
    - ``passages``: when non-empty, a fusion-in-decoder request: each passage is encoded
      separately by an encoder-decoder and the decoder attends to all of them; ``prompt`` is then
      only informative.
    - ``choices``: the label set, used by label-scoring decoding (``--decode labels``).
    - ``max_new_tokens``: the generation budget. Personalizers put the task's default here; the
      runner then sets every request of a cell to the cell's budget
      (:func:`lamp_harness.run.cells.generation_budget`: a user's ``--task-arg`` or
      ``--generator-arg max_new_tokens`` wins over the task's default, within the task's
      ``max_new_tokens_limit``), the value its ``config.json`` records. ``None`` (a request built
      outside a run): the generator's default.
    - ``retrieved``: the profile items retrieved for the example, best first (the top k the
      personalizer was given). The runner fills it in when a personalizer leaves it empty, so
      oracles, rerankers and retrieval-aware generators never need to parse the prompt.
    - ``metadata``: free-form, JSON-friendly facts a personalizer wants a generator to know
      (e.g. ``{"task": "lamp-7"}``); generators that do not know a key ignore it.
    - ``adapter``: the folder of a LoRA adapter (the peft layout: ``adapter_config.json`` and
      ``adapter_model.safetensors``) the request is answered with, on the generator's base model
      (per-user adapters: one folder per user); ``None``: the base model itself. Generators group
      requests by adapter; one that cannot serve adapters raises a one-line error.

    ``retrieved`` and ``metadata`` have defaults, so code that builds requests positionally or
    with the older fields keeps working.
    """

    example_id: str
    prompt: str
    prefix: tuple[Segment, ...] = ()
    passages: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    max_new_tokens: int | None = None
    retrieved: tuple[ProfileItem, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    adapter: str | None = None

    @property
    def is_fusion(self) -> bool:
        """Whether this is a fusion-in-decoder request (it has ``passages``)."""
        return bool(self.passages)

    @property
    def has_soft_tokens(self) -> bool:
        """Whether the prefix holds soft vectors (only embedding-aware generators can serve it)."""
        return any(isinstance(s, SoftTokens) for s in self.prefix)


@dataclass(frozen=True)
class Generation:
    """A generator's answer to one request, with the token counts the run's timing reports."""

    text: str
    prompt_tokens: int = 0
    generated_tokens: int = 0


@dataclass(frozen=True)
class Prediction:
    """One predicted example as stored in ``predictions.jsonl``.

    ``output`` is the parsed answer that is scored and exported; ``raw`` the generator's text.
    """

    example_id: str
    output: str
    raw: str
    prompt: str = ""
    retrieved: tuple[str, ...] = ()
    prompt_tokens: int = 0
    generated_tokens: int = 0
    notes: Mapping[str, Any] = field(default_factory=dict)
    """Facts about how this prediction's prompt was built that a reader needs (e.g.
    ``truncated_share``: the share of a long context the budget cut), copied from the request's
    ``metadata["notes"]``; empty for most tasks (and then not written)."""


@dataclass(frozen=True)
class MetricResult:
    """A metric's value over a set of predictions, with a seeded bootstrap 95% interval."""

    name: str
    value: float
    higher_is_better: bool
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0


@dataclass(frozen=True)
class TrainingBudget:
    """How a cell's trained weights were trained: recorded as its ``config.json``'s ``training``,
    stated by every leaderboard beside the column (two budgets are two methods). The runner
    records it from a ``lamp train`` checkpoint, or asks the personalizer
    (:meth:`Personalizer.training_budget`) when the method trains its own weights (OPPU's
    per-user adapters). Every field is optional: leave out what does not apply."""

    steps: int | None = None
    """Optimizer steps (summed over users for per-user weights)."""
    batch_size: int | None = None
    grad_accum: int | None = None
    world_size: int | None = None
    """Processes of a data-parallel job (each ran ``steps`` with ``grad_accum``)."""
    examples: int | None = None
    """Training examples (summed over users for per-user weights)."""
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    mixed_precision: str | None = None
    augment: Any = None
    """The personalizer's data augmentation, when it has one (PPlug's)."""
    per_user: int | None = None
    """Users with weights of their own (one adapter each); ``None`` for weights shared by all."""
    before: str | None = None
    """A training stage these weights start from, in words (OPPU's stage 1 task LoRA)."""

    def to_json(self) -> dict[str, Any]:
        """The recorded form: the fields that are set, in declaration order."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ExampleScores:
    """One metric's per-example sufficient statistics, from which the metric can be recomputed on
    any subset or resample of the examples (paired significance tests, breakdowns, intervals).

    ``rows`` is an ``n x d`` array (``numpy``; kept as ``Any`` so this module needs no numpy), one
    row per id of ``ids``; ``statistic`` names how summed rows become the metric
    (:data:`lamp_harness.inputs.metrics.STATISTICS`): ``"mean"`` (accuracy, MAE, ROUGE: one column),
    ``"root_mean"`` (RMSE: squared errors), ``"macro_f1"`` (per-label true positive, false
    positive and false negative counts, so macro-F1 is recomputed from confusion counts) or
    ``"ratio"`` (two columns, numerator and denominator: a metric over a subgroup, e.g. accuracy
    per question type).
    """

    name: str
    higher_is_better: bool
    statistic: str
    ids: tuple[str, ...]
    rows: Any


@dataclass(frozen=True)
class JudgePrompt:
    """One question a judged metric asks the judge about one example's answer (LaMP-QA: one per
    rubric aspect). ``system`` and ``user`` are the two chat turns; ``key`` identifies the
    question within the example (stable across runs), ``label`` is what the rationale file shows
    (e.g. the aspect's title)."""

    key: str
    system: str
    user: str
    label: str = ""


@dataclass(frozen=True)
class JudgedMetric:
    """A metric whose per-example value needs a judge model (see ``docs/judges.md``).

    - ``name``: the metric's base name; the metric as stored and shown is
      ``{name}@{judge model}:{prompt_version}:{settings digest}`` (:func:`lamp_harness.run.judge`), so
      scores from different judges never share a leaderboard row.
    - ``prompt_version``: bump it whenever :meth:`Task.judge_prompts` or :meth:`Task.judge_parse`
      change; it is part of the metric name and of the judge-call cache key.
    - ``max_new_tokens``, ``max_retries``, ``top_p``: the judge's decoding. The first try is
      greedy (temperature 0); an answer :meth:`Task.judge_parse` rejects is asked again with the
      temperature raised by 0.1 per retry (nucleus sampling at ``top_p``), and after
      ``max_retries`` retries (``--judge-arg parse_retries=N``) it scores 0.
    - ``default_judge`` / ``default_judge_args``: the judge when the run names none (a
      ``--generator`` value; ``None``: the run preset's generator), per preset in
      ``preset_judges`` (``{preset: (judge, args)}``) when the default differs by preset.
    - ``judge_choices``: every answer the judge may give, each one :meth:`Task.judge_parse`
      accepts (LaMP-QA: the three ``{"match_score": N}`` blocks). They allow label decoding
      (``--judge-arg decode=labels``): instead of generating freely, the judge's generator scores
      each choice's log-likelihood and answers the best one. Empty: the metric can only be judged
      by free generation.
    """

    name: str
    prompt_version: str
    higher_is_better: bool = True
    max_new_tokens: int = 4096
    max_retries: int = 100
    top_p: float = 0.95
    max_input_tokens: int = 32000
    """The judge generator's ``max_input_tokens`` unless ``--judge-arg`` sets it: generators cut
    prompts to it, and a judge must read the whole of its prompt."""
    default_judge: str | None = None
    default_judge_args: Mapping[str, str] = field(default_factory=dict)
    preset_judges: Mapping[str, tuple[str | None, Mapping[str, str]]] = field(default_factory=dict)
    judge_choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class RankQuery:
    """One question to rank a profile for: its query text and each profile item's document text."""

    example_id: str
    query: str
    documents: tuple[str, ...]
    items: tuple[ProfileItem, ...]


Ranking = tuple[int, ...]
"""Positions into ``RankQuery.items``, best first, covering the whole profile."""


@runtime_checkable
class TokenCounter(Protocol):
    """The generator tokenizer's view that prompt builders need for the official token budget."""

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens)."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens and decoded back to a string."""


# ---------------------------------------------------------------------------------------------
# Splits: the names a dataset's split and split scheme take
# ---------------------------------------------------------------------------------------------


SPLITS = ("train", "dev", "test")
SCHEMES = ("user", "time")
SPLIT_ALIASES = {"validation": "dev", "val": "dev"}
"""Other benchmarks' names of the harness's splits (LaMP-QA's ``validation`` is ``dev``)."""


def check_split_name(split: str) -> str:
    """``split`` if it is train, dev or test, else a one-line error."""
    if split not in SPLITS:
        from lamp_harness.base.errors import lamp_error

        raise lamp_error(f"unknown split {split!r}", fix=f"Use one of {', '.join(SPLITS)}.")
    return split


SCHEME_ALIASES = {"temporal": "time"}
"""Other names of the split schemes (LongLaMP calls the time-based split ``temporal``)."""


def check_scheme(scheme: str) -> str:
    """``scheme`` if it is ``user`` or ``time`` (``temporal`` is ``time``), else a one-line error.
    Returns the canonical name."""
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme not in SCHEMES:
        from lamp_harness.base.errors import lamp_error

        raise lamp_error(
            f"unknown split scheme {scheme!r}", fix="Use 'user' (user-based split) or 'time' (time-based split)."
        )
    return scheme


# ---------------------------------------------------------------------------------------------
# Run context: what a component factory receives
# ---------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    """Shared state handed to every component factory (the first argument of retriever,
    personalizer, generator and data-source factories).

    - ``lamp_home``: the cache folder (``$LAMP_HOME``): put downloads and converted models here.
    - ``preset``: the model preset of the run (``offline``, ``lamp-paper``...).
    - ``seed``: the run's seed; use it for anything random.
    - ``device``: ``auto``, ``cpu``, ``cuda``, ``mps`` (``--device``).
    - ``events``: notes for the user, recorded in each cell's ``config.json``; add with :meth:`note`.
    - ``force``: the run recomputes finished cells (``lamp run --force``): a component that keeps a
      cache of *results* (the openai generator's response cache) asks again, and stores the new
      answer; caches of inputs (models, embeddings, rankings) stay valid.

    ``shared`` is a per-process cache for expensive objects (loaded models, encoders), keyed by
    whatever the component finds stable (e.g. ``("generator", model_id, dtype)``), so cells of a
    matrix that use the same model reuse it.
    """

    lamp_home: Path
    preset: str = "offline"
    seed: int = 0
    device: str = "auto"
    prompt_budget: str = "official"
    """How prompts are fitted to the generator's budget: ``official`` (the official LaMP code's
    budget, token for token) or ``strict`` (the harness's stricter variant); see
    :func:`prompt_options`."""
    shared: dict[Any, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    force: bool = False
    reporter: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    """Where :meth:`progress` lines go (set by ``lamp run``; ``None``: nowhere, e.g. ``--quiet``)."""

    def note(self, message: str) -> None:
        """Record a message for the console (e.g. which preset substituted which model)."""
        if message not in self.events:
            self.events.append(message)

    def progress(self, message: str) -> None:
        """Tell the user what long work is under way before a cell's first prediction (OPPU
        training each user's adapter, PAG writing summaries): one line on ``lamp run``'s console,
        nothing when the run is quiet. Not recorded."""
        if self.reporter is not None:
            self.reporter(message)


# ---------------------------------------------------------------------------------------------
# The four contracts
# ---------------------------------------------------------------------------------------------


class Task(ABC):
    """A benchmark task: its data schema, label set, retrieval texts, prompts, parsing and metrics.

    **Options.** The factory is called as ``factory(**args)`` with the user's ``--task-arg``
    strings (``[task-args]`` in a matrix file): declare each option as a keyword parameter of
    ``__init__`` and convert it with :mod:`lamp_harness.plugin.options` (``int_arg``, ``bool_arg``...), so
    a bad value is a one-line error; an undeclared key is refused by the harness with the list of
    valid ones, before any cell runs. Every task also accepts ``max_new_tokens`` (its budget),
    which the harness applies and never passes to the factory. Options are recorded in each
    cell's ``config.json`` (``task_args``) and change its id.

    **Per-example scores.** Paired significance tests (the leaderboard's † marks) and breakdowns
    (``lamp leaderboard --by profile-size|user``) need each metric per example. A task provides
    them in one of two ways:

    - it computes its metrics in :meth:`score` with the helpers of :mod:`lamp_harness.inputs.metrics`
      (``accuracy``, ``macro_f1``, ``mae``, ``rmse``, ``rouge``, ``summarize``, or ``mean_metric``
      without a transform): nothing more to write, the harness derives the per-example rows by
      scoring each example alone and keeps them only when they reproduce :meth:`score`'s values;
    - or it overrides :meth:`example_scores` with sufficient statistics (:class:`ExampleScores`),
      also the way for a corpus metric (e.g. macro-F1 from per-example confusion counts).

    A task whose metrics neither way yields gets intervals but no ``scores.json``; the conformance
    kit (:func:`lamp_harness.testing.check_task`) fails it.
    """

    name: ClassVar[str]
    """Canonical registry name, e.g. ``"lamp-7"``."""
    official_name: ClassVar[str]
    """The name in outputs files, e.g. ``"LaMP_7"``."""
    benchmark: ClassVar[str | None] = None
    """The benchmark whose leaderboard takes this task's outputs file, e.g. ``"LaMP"``: ``lamp export
    --submission`` names the tasks of the exported tasks' benchmarks that have no cell. ``None``: the
    task stands alone."""
    kind: ClassVar[Literal["classification", "ordinal", "generation"]]
    """``classification`` and ``ordinal`` tasks have ``labels``; ``generation`` tasks have none."""
    labels: ClassVar[tuple[str, ...]] = ()
    """The full label set, in the official order (empty for generation tasks)."""
    profile_fields: ClassVar[tuple[str, ...]]
    """Fields every profile item must have (besides ``id``, which is optional)."""
    max_new_tokens: ClassVar[int] = 128
    """The task's default generation budget. A user's ``--task-arg max_new_tokens=N`` or
    ``--generator-arg max_new_tokens=N`` wins over it (see
    :func:`lamp_harness.run.cells.generation_budget`)."""
    max_new_tokens_limit: ClassVar[int | None] = None
    """The task's hard limit on the generation budget, or ``None`` for none: a user's larger budget
    is cut to it (and the cell's ``config.json`` says so)."""
    data_source: ClassVar[str | None] = None
    """The data source used for this task when the run names none for it (``--data TASK=NAME``
    and ``--data NAME`` win); ``None`` means the default, ``lamp``. A task plugin that brings its
    own data registers a data source and names it here."""

    @abstractmethod
    def query(self, example: Example) -> str:
        """The retrieval query extracted from the example's input (e.g. the text after the
        task's instruction)."""

    @abstractmethod
    def document(self, item: ProfileItem) -> str:
        """The retrieval text of one profile item (the fields a retriever scores)."""

    @abstractmethod
    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        """The per-profile-entry prompt (PPEP) of one item, e.g. ``"text" is the title for
        "abstract"``. ``free_text``, when given, replaces the value of the item's *free-text
        field*: the one long field the prompt budget truncates (the LaMP tasks call it
        ``free_field``: ``title`` for LaMP-1, ``description`` for LaMP-2, ``abstract`` for
        LaMP-5, ``text`` for the others). The prompt builder passes that field already cut to
        its token allowance; with ``None`` the item's own value is used."""

    @abstractmethod
    def prompt(self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int = 256) -> str:
        """The aggregated input prompt for ``items`` with the official token-budget truncation.
        With no items it is the bare input. Personalizers pass ``budget="strict"`` as a keyword
        only when a run asks for a non-official budget (see :func:`prompt_options`), so a task
        that knows only the official budget need not accept it."""

    def choices(self, example: Example) -> tuple[str, ...]:
        """What label scoring (``--decode labels``) chooses among for ``example``: the task's
        ``labels`` (the default), or per-question texts for multiple-choice tasks whose options
        differ from question to question (each choice must :meth:`parse` to one of ``labels``).
        Personalizers put it on every request as ``choices``."""
        return tuple(self.labels)

    def truncated_share(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int
    ) -> float | None:
        """For a task whose prompt cuts a long context to the budget (PersonaMem cuts the oldest
        part of the history): the share of the context's tokens :meth:`prompt` drops for these
        ``items`` and budget, from 0 to 1. Personalizers record it with each prediction
        (``Prediction.notes["truncated_share"]``). ``None`` (the default): not applicable."""
        return None

    def parse(self, text: str) -> str:
        """The answer to score from a generator's raw text (default: stripped text)."""
        return text.strip()

    @abstractmethod
    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        """The task's metrics over examples whose ids are in both mappings (ids must match)."""

    def example_scores(self, predictions: Mapping[str, str], golds: Mapping[str, str]) -> list[ExampleScores]:
        """The same metrics as :meth:`score`, as per-example sufficient statistics (one
        :class:`ExampleScores` per metric, ids in gold order). When a task returns them, the runner
        derives the metrics from them and stores them beside the predictions, so paired
        significance tests and breakdowns need no regeneration. The default (``[]``) means the
        task only offers :meth:`score`: the harness then derives the rows from the metric helpers
        :meth:`score` calls (see the class docstring), or the cells get no paired tests."""
        return []

    judged_metrics: ClassVar[tuple[JudgedMetric, ...]] = ()
    """Metrics that need a judge model (LLM-as-judge). For each, the runner asks the judge the
    questions of :meth:`judge_prompts`, parses the answers with :meth:`judge_parse` and combines
    them with :meth:`judge_combine`; the judge is ``--judge`` or the metric's default."""

    def judge_prompts(self, metric: str, example: Example, output: str) -> Sequence[JudgePrompt]:
        """The judge's questions about ``output``, the parsed answer to ``example`` (gold-side
        fields such as a rubric come from ``example.gold``)."""
        raise NotImplementedError(f"task {self.name!r} declares no judged metric {metric!r}")

    def judge_parse(self, metric: str, text: str) -> float:
        """The score in a judge's raw answer; raise ``ValueError`` when it is unparsable (the
        question is then asked again, see :class:`JudgedMetric`)."""
        raise NotImplementedError(f"task {self.name!r} declares no judged metric {metric!r}")

    def judge_combine(self, metric: str, example: Example, scores: Sequence[float]) -> float:
        """The example's metric value from the scores of its questions (default: their mean)."""
        return sum(scores) / len(scores) if scores else 0.0

    def validate_gold(self, output: str) -> str | None:
        """An error message when ``output`` is not a valid gold for this task, else ``None``."""
        if self.labels and output not in self.labels:
            return f"label {output!r} is not one of the task's labels ({', '.join(self.labels)})"
        return None


def prompt_options(context: RunContext | None) -> dict[str, str]:
    """Keyword arguments personalizers add to ``Task.prompt`` for the run's prompt budget: none
    for the official budget, ``{"budget": "strict"}`` for the strict one."""
    budget = getattr(context, "prompt_budget", "official") or "official"
    return {} if budget == "official" else {"budget": budget}


class Retriever(ABC):
    """Ranks each question's profile. Rankings are full (every item) and are cached by the runner
    under :meth:`cache_key`, so every k and every personalizer reuses them."""

    name: ClassVar[str]
    options: ClassVar[type[Options] | None] = None
    """The component's declared options (an :class:`~lamp_harness.plugin.options.Options` dataclass):
    the harness checks every cell's arguments against it before any work and ``lamp plugins show``
    lists it. ``None``: the component parses its arguments by hand, checked when it is built."""

    @abstractmethod
    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        """Full rankings, best first, one per query. Batched: implementations should amortise work
        across queries. Must be deterministic for a given configuration."""

    def cache_key(self) -> Mapping[str, Any]:
        """Everything that changes the rankings (name, parameters, encoder id and revision, and
        the algorithm that orders tied scores). An empty mapping disables the ranking cache for
        this retriever."""
        return {"name": self.name}

    def text_encoder(self) -> Mapping[str, Any] | None:
        """The text encoder the retriever embeds with, for methods that use a retriever's encoder
        rather than its items (``model``: a resolvable model spec, plus ``pooling`` and
        ``query_prefix``), or ``None`` for retrievers without one (lexical, by date, random)."""
        return None


class Personalizer(ABC):
    """Turns (task, example, retrieved items) into a generation request."""

    name: ClassVar[str]
    options: ClassVar[type[Options] | None] = None
    """The component's declared options (an :class:`~lamp_harness.plugin.options.Options` dataclass):
    the harness checks every cell's arguments against it before any work and ``lamp plugins show``
    lists it. ``None``: the component parses its arguments by hand, checked when it is built."""
    needs_retriever: ClassVar[bool] = True
    """``True`` when the method cannot work without retrieved items (``ipa``, ``fid``)."""
    accepts_retriever: ClassVar[bool] = True
    """``False`` for methods that never use retrieved items (``none``): the runner drops the
    retriever from such cells."""
    retriever_use: ClassVar[Literal["items", "encoder"]] = "items"
    """How the method uses a cell's retriever: its ranked ``items`` (IPA, FiD, PPlug + retrieval),
    or its text ``encoder`` (PPlug: a dense retriever's encoder becomes PPlug's encoder; the runner
    then calls :meth:`use_encoder` with ``Retriever.text_encoder()`` and retrieves no items)."""
    items_variant: ClassVar[str | None] = None
    """For ``retriever_use = "encoder"``: the method that uses the retriever's items instead
    (suggested when a retriever has no encoder)."""
    default_retriever: ClassVar[str | None] = None
    """Retriever used when the cell names none (``pplug+retrieval``: the preset's BGE retriever)."""
    default_retriever_args: ClassVar[Mapping[str, str]] = {}
    requires_encoder_decoder: ClassVar[bool] = False
    """``True`` for FiD: the runner rejects decoder-only generators before any work starts."""
    trainable: ClassVar[bool] = False

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:  # noqa: B027
        """Called once per cell before any example, with the cell's task and generator."""

    def use_encoder(self, encoder: Mapping[str, Any]) -> None:  # noqa: B027
        """For ``retriever_use = "encoder"``: the cell's retriever's ``text_encoder()``, given
        before :meth:`setup`."""

    def prepare(self, task: Task, examples: Sequence[Example]) -> None:  # noqa: B027
        """Called after :meth:`setup` with every example the cell (or a training run) will
        personalize, before the first one: the place to precompute per-profile state in batches
        (PPlug embeds all history items here, once, through the embedding cache)."""

    def use_train_split(self, load: Callable[[], Sequence[Example]]) -> None:  # noqa: B027
        """Given before :meth:`prepare` (by ``lamp run`` and ``lamp train``): ``load()`` reads the
        task's training split from the cell's data source (the whole split, not cut by
        ``--limit``). A method that first trains something on the training users (OPPU's task
        LoRA) keeps it and calls it in :meth:`prepare`; the others ignore it."""

    @abstractmethod
    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        """The request for ``example``; ``retrieved`` holds the top-k items (empty without a
        retriever)."""

    def describe(self) -> Mapping[str, Any]:
        """Resolved configuration recorded in the run's ``config.json``."""
        return {"name": self.name}

    def artifacts(self) -> Mapping[str, Any]:
        """Files to keep in the cell's folder beside its predictions, by file name (``.json``
        names, JSON-friendly values), written by the runner when the cell's predictions are done:
        what a reader needs to see what the method produced on the way (PAG: each user's profile
        summary). Empty by default."""
        return {}

    def training_budget(self) -> TrainingBudget | None:
        """How the weights this cell answers with were trained, when the method trains weights
        of its own outside ``lamp train``'s checkpoints (OPPU: one adapter per user), asked after
        :meth:`prepare`; recorded in ``config.json`` and stated by leaderboards. ``None`` (the
        default): the method trains nothing itself."""
        return None


class Generator(ABC):
    """Turns generation requests into text. Also the tokenizer the prompt budget counts with."""

    name: ClassVar[str]
    options: ClassVar[type[Options] | None] = None
    """The component's declared options (an :class:`~lamp_harness.plugin.options.Options` dataclass):
    the harness checks every cell's arguments against it before any work and ``lamp plugins show``
    lists it. ``None``: the component parses its arguments by hand, checked when it is built."""
    serves_adapters: ClassVar[bool] = False
    """``True`` when :meth:`generate` answers requests that name a LoRA adapter
    (``GenerationRequest.adapter``); others are refused before any work starts."""

    @property
    @abstractmethod
    def tokens(self) -> TokenCounter:
        """The tokenizer view used for prompt budgets."""

    @property
    def is_encoder_decoder(self) -> bool:
        """``True`` for encoder-decoder models (required by fusion-in-decoder personalizers)."""
        return False

    @property
    def max_input_tokens(self) -> int:
        """The prompt budget L in this generator's tokens (LaMP uses 256); personalizers build
        prompts to it."""
        return 256

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        """One generation per request, in order. Batching, sorting by length and padding are the
        generator's business."""

    def describe(self) -> Mapping[str, Any]:
        """Concrete model id, revision, dtype, device, decoding settings (for ``config.json``)."""
        return {"name": self.name}

    def usage(self) -> Mapping[str, int]:
        """Running counters since the generator was created (API generators: requests sent,
        retries, cache hits, prompt and completion tokens billed). The runner writes each cell's
        increase into ``timing.json``. Empty for generators with nothing to account."""
        return {}

    # -- training support (PPlug, FiD, fine-tuning); generators that cannot train raise LampError --
    def loss(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> Any:
        """Mean token cross-entropy of ``targets`` given ``requests`` (a differentiable torch
        scalar; soft tokens in the requests keep their graph)."""
        from lamp_harness.base.errors import lamp_error

        raise lamp_error(
            f"generator {self.name!r} cannot compute training losses",
            fix="Use the 'hf' generator for trainable personalizers.",
        )

    @property
    def embedding_width(self) -> int:
        """Width of the model's input token embeddings (the size of soft tokens)."""
        raise self._cannot("take soft tokens (input embeddings)")

    @property
    def embedding_norm(self) -> float:
        """Typical L2 norm of the model's input token embeddings (soft tokens are scaled to it)."""
        raise self._cannot("take soft tokens (input embeddings)")

    def input_embeddings(self) -> Any:
        """The model's input token-embedding matrix ``[vocab, width]`` as a ``torch.Tensor``
        (embedding scale applied): the space soft tokens live in. A generator behind an engine
        that takes prompt embeddings (``vllm``) embeds the text around soft tokens with it, read
        from the checkpoint's tensors rather than from a second copy of the model."""
        raise NotImplementedError

    def trainable_module(self) -> Any:
        """The underlying ``torch.nn.Module``, for plain fine-tuning of the generator itself."""
        raise self._cannot("be fine-tuned (it exposes no torch module)")

    def adapter_module(self) -> Any:
        """The frozen base ``torch.nn.Module`` that LoRA adapters are injected into for training
        (peft's ``inject_adapter_in_model``): the caller adds one adapter, trains it through
        :meth:`loss`, saves it and deletes it, so the base weights never change and the generator
        stays shared. Requests then name a saved adapter (``GenerationRequest.adapter``)."""
        raise self._cannot("train LoRA adapters (it exposes no torch module)")

    def serve_fine_tuned(self, weights: Path) -> Callable[[], None] | None:
        """For an inference engine that cannot be handed tensors: serve the fine-tuned weights in
        ``weights`` (a safetensors file of this model's whole state dict, as ``lamp train
        --personalizer none|ipa`` writes it) until the returned callable is called, which goes
        back to the base model. ``None`` (the default): the runner loads the weights into
        :meth:`trainable_module` instead."""
        return None

    def _cannot(self, what: str) -> Exception:
        from lamp_harness.base.errors import lamp_error

        return lamp_error(
            f"generator {self.name!r} cannot {what}",
            fix="Use the 'hf' generator for trainable and soft-prompt personalizers (pplug, fid).",
        )

    def set_train_mode(self, mode: bool) -> None:  # noqa: B027
        """Put the model in train mode (dropout active) or back in eval mode without unfreezing
        it: PPlug trains with the frozen LLM in train mode, as the official HF Trainer does."""

    def trainer(self) -> tuple[str, Mapping[str, str]] | None:
        """For a generator that cannot compute training losses (an inference engine): the
        ``--generator`` value and arguments of one that can, on the same weights and with the same
        prompts. Trainable personalizers of a cell are then trained there (sharing the checkpoint
        a ``lamp train`` with those settings writes) and run here. ``None``: train on this one."""
        return None


@runtime_checkable
class Trainable(Protocol):
    """What a trainable personalizer (PPlug, FiD, fine-tuned IPA) offers ``lamp train``."""

    def parameters(self) -> Any:
        """The trainable ``torch`` parameters (only these go into a checkpoint)."""

    def training_loss(self, task: Task, examples: Sequence[Example], retrieved: Sequence[Sequence[ProfileItem]]) -> Any:
        """Mean token cross-entropy of the gold outputs, as a differentiable torch scalar."""

    def state_dict(self) -> dict[str, Any]:
        """The trainable weights by name (tensors), as saved in a checkpoint."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load weights saved by :meth:`state_dict`."""


@dataclass(frozen=True)
class Dataset:
    """A loaded split: examples plus where they came from (for ``config.json`` and caches)."""

    task: str
    split: str
    examples: tuple[Example, ...]
    source: str
    checksums: Mapping[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """A short stable id of the data contents (for cache keys)."""
        import hashlib

        digest = hashlib.sha256()
        for name in sorted(self.checksums):
            digest.update(f"{name}={self.checksums[name]};".encode())
        return digest.hexdigest()[:16]
