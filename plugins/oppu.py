"""OPPU (one PEFT per user, Tan et al., EMNLP 2024) and PAG (summary-augmented prompting,
Richardson et al. 2023): per-user LoRA adapters and per-user profile summaries.

OPPU, as the paper describes it and its authors' code (``OPPU.py``, ``prompt/prompt.json``) runs it:

- every user whose questions are answered gets a LoRA of their own, trained on that user's
  history: each profile item becomes one training example, the task's question about the item
  (``OPPU_input``) followed by its answer (``OPPU_full``: the label, the title, the tweet), the
  prompt tokens masked out of the loss;
- the LoRA of the published script: rank 8, alpha 8, dropout 0.05 on ``q_proj`` and ``v_proj``;
  AdamW, learning rate 1e-4, weight decay 0.01, 2 epochs, batch 16, linear schedule with 10%
  warmup, gradient clipping at 0.3; each item field cut to its first 768 tokens;
- the user's questions are answered with that user's adapter, the prompt being the task's
  OPPU prompt (``prompt``) filled with the question's text (the task's retrieval query);
- ``oppu+retrieval`` (OPPU + RAG): the top-k retrieved items (``retrieval_history`` format) in front
  of the prompt, at training time too (the k best of the items *before* each training item, by
  BM25, as the script does), k = ``train_k`` (1, the README's ``--k 1``);
- ``oppu+summary`` (OPPU + PAG): the user's profile summary in front of the prompt, at training
  time too.

Defects of the published script fixed by default (docs/fidelity.md lists each one):

- its list of training examples is built once before the per-user loop and never cleared, so
  each later user's LoRA also trains on every earlier user's history: here each adapter sees only
  its own user's items (:func:`user_training_texts` is what it trains on, and each adapter's
  manifest lists the hashes of those texts);
- ``get_peft_model`` wraps the same model object again for every user: here each user gets a
  fresh adapter (seeded by the run's seed and the user), trained, saved and deleted;
- decoding samples (``do_sample=True``, temperature 0.1): here the generator's deterministic
  decoding (greedy / beam search, the harness's default);
- the answer is cut from the output with ``str.replace(prompt, "")``: here the generator decodes
  only the new tokens;
- items are cut by whitespace-split "tokens": here by the generator's tokens.

Stage 1 (the authors' ``task_LoRA.py``, the paper's "base LLM task adaption"), on by default: a
task LoRA trained on the task's *training* users (the training split, whose users are not the
ones asked), then merged into the base model; every per-user LoRA is trained on, and served
with, that merged model. Its data: one example per training question, the question's OPPU prompt
(with the same retrieved items / summary as the method's questions) followed by its gold answer;
its LoRA: rank 8, alpha 8, dropout 0.05 on ``q_proj,v_proj,k_proj,out_proj`` (the modules a model
has of these: on a Llama, ``out_proj`` names no module, as in the official run; the cell records
the modules adapted as ``applied_to``), 3 epochs, the other settings as above. It is trained once per task, model,
settings, training data and component versions, under
``$LAMP_HOME/checkpoints/<task>-<method>-stage1-<hash>/`` (``adapter/``: the task LoRA;
``model/``: the merged model, a transformers folder that ``hf`` and ``vllm`` load;
``manifest.json``), by ``lamp run`` or ``lamp train``, whichever needs it first (a file lock makes
concurrent ranks wait for one training). ``--personalizer-arg stage1=false`` trains the per-user
LoRAs on the base model itself (the harness's behaviour before stage 1 existed).
For tasks the official prompts do not cover (LaMP-1, whose official data has a ``citation``
field the LaMP files lack, and third-party tasks) an adapter trains on each item's PPEP as text
and questions use the task's own prompt.

Per-user training is independent per user: ``prepare`` (``lamp run``) and ``lamp train`` train
only the users whose adapter is missing; ``lamp train --nproc-per-node N`` deals the users to
the ranks (balanced by history size). Each adapter is written into a temporary folder and renamed
into place with its manifest, so a killed job resumes with the missing users, at any world size,
and ends with the adapters an uninterrupted run writes. The adapters of one configuration live in
``$LAMP_HOME/checkpoints/<task>-<method>-<hash>/users/<user>/`` (``adapter_config.json``,
``adapter_model.safetensors``, ``manifest.json``: the peft layout, which vLLM also loads), and
``users.json`` there lists the users it holds.

PAG: one summary per user, written by a summarizer generator with the paper's per-task prompt
(``profile_prompt``) over 10 of the user's items (a seeded sample; each field cut to 200 tokens),
cached under ``$LAMP_HOME/summaries`` keyed by the prompt (hence the profile) and the summarizer,
so no summary is generated twice; the question's prompt is the summary, then the task's own prompt
with the top-k retrieved items, within the task's token budget. The cell keeps the summaries in
``summaries.json``.

Arguments (``--personalizer-arg k=v``) are declared in :class:`OPPUOptions` (``oppu``),
:class:`OPPURetrievalOptions` (``oppu+retrieval``: also ``train_k``), :class:`OPPUSummaryOptions`
(``oppu+summary``) and :class:`SummaryOptions` (``pag``: ``summarizer``, ``summary_tokens``,
``summary_items``, and ``summarizer.KEY=VALUE``, the summarizer's ``--generator-arg``); ``lamp
plugins show oppu`` prints each with its default, range and help.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lamp_harness import (
    Example,
    GenerationRequest,
    Generator,
    LampError,
    Options,
    Personalizer,
    ProfileItem,
    RankQuery,
    RunContext,
    Task,
    TrainingBudget,
    atomic_write_json,
    check_manifest,
    folder_manifest,
    lamp_error,
    option,
    prompt_options,
    stable_hash,
    staging_dir,
    warn,
)

# core-internal: users are dealt to ranks by the runner's own rule, so that trainer and engine agree.
from lamp_harness.base.distributed import deal

# core-internal: the summarizer and adapter trainer are built from a --generator spec exactly as the
# runner builds its generator; the plugin API has no such factory yet.
from lamp_harness.plugin.options import generator_kwargs, generator_spec

# core-internal: the summarizer, adapter trainer and bm25 retriever come from the process's registry;
# the plugin API does not hand a component the registry yet.
from lamp_harness.plugin.registry import host


@dataclass(frozen=True)
class Templates:
    """One task's official OPPU / PAG prompts (``{name}``: an item field; ``{query}``: the
    question's text)."""

    train_input: str
    answer: str
    prompt: str
    history: str
    summary: str


_TWEET_SUMMARY = (
    "Given this person’s previous tweets, try to describe a template for their tweets. I want to take "
    "a generic sentence and rephrase it to sound like one of their tweets, with the same "
    "style/punctuation/capitalization/wording/tone/etc. as them. Only give me the template "
    "description, nothing else. User History: {history} Answer:"
)
TEMPLATES: dict[str, Templates] = {
    "lamp-2": Templates(
        "Which tag does this movie relate to among the following tags? Just answer with the tag name without "
        "further explanation. tags: [sci-fi, based on a book, comedy, action, twist ending, dystopia, dark "
        "comedy, classic, psychology, fantasy, romance, thought-provoking, social commentary, violence, true "
        "story]\n description: {description} tag:",
        "{tag}",
        "Which tag does this movie relate to among the following tags? Just answer with the tag name without "
        "further explanation. tags: [sci-fi, based on a book, comedy, action, twist ending, dystopia, dark "
        "comedy, classic, psychology, fantasy, romance, thought-provoking, social commentary, violence, true "
        "story]\n description: {query} tag:",
        "description: {description} tag: {tag}\n",
        "Look at the following past movies this user has watched and determine the most popular tag they "
        "labeled. Answer in the following form: most popular tag: <tag>. User History: {history} Answer:",
    ),
    "lamp-2-news": Templates(
        "Which category does this article relate to among the following categories? Just answer with the "
        "category name without further explanation. categories: [travel, education, parents, style & beauty, "
        "entertainment, food & drink, science & technology, business, sports, healthy living, women, politics, "
        "crime, culture & arts, religion]\n article: {text} category:",
        "{category}",
        "Which category does this article relate to among the following categories? Just answer with the "
        "category name without further explanation. categories: [travel, education, parents, style & beauty, "
        "entertainment, food & drink, science & technology, business, sports, healthy living, women, politics, "
        "crime, culture & arts, religion]\n article: {query} category:",
        "article: {text} category: {category}\n",
        "Look at the following past articles this journalist has written and determine the most popular "
        "category they write in. Answer in the following form: most popular category: <category>. User "
        "History: {history} Answer:",
    ),
    "lamp-3": Templates(
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
        "without further explanation. review: {text}\n score:",
        "{score}",
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
        "without further explanation. review: {query}\n score:",
        "review: {text} score: {score}\n",
        "Based on this user’s past reviews, what are the most common scores they give for positive and "
        "negative reviews? Answer in the following form: most common positive score: <most common positive "
        "score>, most common negative score: <most common negative score>. User History: {history} Answer:",
    ),
    "lamp-4": Templates(
        "Generate a headline for the following article.\n article: {text} headline:",
        "{title}",
        "Generate a headline for the following article.\narticle: {query} headline:",
        "article: {text} headline: {title}\n",
        "Given this author’s previous articles, try to describe a template for their headlines. I want to be "
        "able to accurately predict the headline gives one of their articles. Be specific about their style "
        "and wording, don’t tell me anything generic. User History: {history} Answer:",
    ),
    "lamp-5": Templates(
        "Generate a title for the following abstract of a paper.\n abstract: {abstract} title:",
        "{title}",
        "Generate a title for the following abstract of a paper.\n abstract: {query} title:",
        "abstract: {abstract} title: {title}\n",
        "Given this author’s previous publications, try to describe a template for their titles. I want to be "
        "able to accurately predict the title of one of the papers from the abstract. Only generate the "
        "template description, nothing else. User History: {history} Answer:",
    ),
    "lamp-7": Templates(
        "tweet:",
        "{text}",
        "Paraphrase the following text into tweet without any explanation before or after it.\n text: {query} tweet:",
        "tweet: {text}\n",
        _TWEET_SUMMARY,
    ),
}
"""The official OPPU prompts (training input and answer, question prompt, retrieved-item format)
and PAG summary prompts, by harness task name."""
RETRIEVAL_IN_TRAINING = {"lamp-2", "lamp-2-news", "lamp-3", "lamp-4", "lamp-5"}
"""Tasks whose training examples carry retrieved items / the summary in the published script
(its ``format_flag``: not LaMP-7, whose training input is only ``tweet:``)."""
GENERIC_SUMMARY = (
    "Write a summary of the following items of this user's history that describes their "
    "preferences and style. Only generate the summary, no other text. User History: {history} "
    "Answer:"
)
"""The summary prompt for tasks the paper has none for."""


@dataclass(frozen=True)
class SummaryOptions(Options):
    """PAG's options (``pag``; ``oppu+summary`` adds them to OPPU's)."""

    prefixes: ClassVar[tuple[str, ...]] = ("summarizer",)

    summarizer: str | None = option(None, "the generator that writes summaries (a --generator value); unset: the run's")
    summary_tokens: int = option(200, "the longest summary, in tokens", minimum=1)
    summary_items: int = option(10, "history items the summary reads (a seeded sample)", minimum=1)


@dataclass(frozen=True)
class OPPUOptions(Options):
    """OPPU's options: the published script's per-user LoRA and training, then stage 1's task LoRA."""

    rank: int = option(8, "LoRA rank (stage 1's too)", minimum=1)
    alpha: float = option(8.0, "LoRA alpha (stage 1's too)")
    dropout: float = option(0.05, "LoRA dropout (stage 1's too)", minimum=0)
    target_modules: str = option("q_proj,v_proj", "the modules given a LoRA, comma-separated")
    epochs: int = option(2, "epochs over the user's history", minimum=1)
    lr: float = option(1e-4, "AdamW learning rate", above=0)
    weight_decay: float = option(0.01, "AdamW weight decay", minimum=0)
    batch_size: int = option(16, "training batch", minimum=1)
    warmup: float = option(0.1, "share of the steps spent warming up (linear)", minimum=0, maximum=1)
    max_grad_norm: float = option(0.3, "gradient clipping", minimum=0)
    item_tokens: int = option(768, "each history item's fields cut to this many tokens", minimum=1)
    max_items: int = option(0, "train on the user's last N history items (0: every item)", minimum=0)
    adapters: str | None = option(None, "a folder for the adapters instead of the $LAMP_HOME cache")
    stage1: bool = option(True, "train a task LoRA on the training users and merge it in first (the paper)")
    stage1_epochs: int = option(3, "stage 1's epochs", minimum=1)
    stage1_examples: int = option(0, "stage 1's training questions (0: every one)", minimum=0)
    stage1_target_modules: str = option("q_proj,v_proj,k_proj,out_proj", "stage 1's LoRA modules, comma-separated")

    def validate(self, owner: str) -> None:
        if not self.stage1:
            given = [
                name
                for name in ("stage1_epochs", "stage1_examples", "stage1_target_modules")
                if getattr(self, name) != type(self).__dataclass_fields__[name].default
            ]
            if given:
                raise lamp_error(
                    f"{', '.join(given)} set stage 1, which stage1=false turns off",
                    where=owner,
                    fix="Drop them, or leave stage 1 on.",
                )

    def lora(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": _modules(self.target_modules),
        }

    def train(self) -> dict[str, Any]:
        keys = ("epochs", "lr", "weight_decay", "batch_size", "warmup", "max_grad_norm", "item_tokens", "max_items")
        return {key: getattr(self, key) for key in keys}

    def stage1_settings(self) -> dict[str, Any] | None:
        if not self.stage1:
            return None
        return {
            "epochs": self.stage1_epochs,
            "examples": self.stage1_examples,
            "target_modules": _modules(self.stage1_target_modules),
        }


@dataclass(frozen=True)
class OPPURetrievalOptions(OPPUOptions):
    """``oppu+retrieval``: OPPU's options and the retrieved items of each training example."""

    train_k: int = option(1, "retrieved items in front of each training example (the README's --k 1)", minimum=0)


@dataclass(frozen=True)
class OPPUSummaryOptions(SummaryOptions, OPPUOptions):
    """``oppu+summary``: OPPU's options and PAG's."""


def _modules(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


SUMMARY_ITEM_TOKENS = 200
"""Each item's fields cut to this many tokens in the summary prompt (the script's 200)."""
STAGE1_LAYOUT = 1
TEST_ITEM_TOKENS = 368
"""Each retrieved item's free text is cut to this many tokens at question time (the script's 368)."""
USERS = "users"
USERS_INDEX = "users.json"
MANIFEST = "manifest.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def user_key(example: Example) -> str:
    """A user's identity: the hash of its profile's item contents (ids and order ignored)."""
    items = sorted(
        json.dumps(dict(item.fields), sort_keys=True, ensure_ascii=False, default=str) for item in example.profile
    )
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()


def users_of(examples: Sequence[Example]) -> dict[str, Example]:
    """One example per user (the first), by :func:`user_key`, in first-seen order."""
    users: dict[str, Example] = {}
    for example in examples:
        users.setdefault(user_key(example), example)
    return users


def _fill(template: str, item: ProfileItem, cut: Callable[[str], str]) -> str:
    fields = {k: cut(item.get(k)) for k in item.fields}
    try:
        return template.format(**fields)
    except KeyError as exc:
        raise lamp_error(
            f"profile item {item.id!r} has no field {exc.args[0]!r} that the OPPU prompt needs",
            fix="Check the data file: every item needs the task's profile fields.",
        ) from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Summaries (PAG; OPPU + PAG)
# ---------------------------------------------------------------------------------------------


class Summaries:
    """One profile summary per user, written by a summarizer generator, cached under
    ``$LAMP_HOME/summaries`` by the summary prompt (hence the profile) and the summarizer."""

    def __init__(
        self, context: RunContext, spec: str | None, args: Mapping[str, str], *, tokens: int, items: int, item_tokens: int
    ) -> None:
        self.context, self.spec, self.args = context, spec, dict(args)
        self.tokens, self.items, self.item_tokens = tokens, items, item_tokens
        self.generator: Generator | None = None
        self.by_user: dict[str, str] = {}
        self.generated = 0

    def bind(self, run_generator: Generator) -> None:
        """The summarizer: ``summarizer=`` when given (built once per run), else the run's generator."""
        if self.spec is None and not self.args:
            self.generator = run_generator
            return

        registry = host().registry
        plugin, model = generator_spec(self.spec, registry.names("generator"))
        key = ("summarizer", plugin, model, tuple(sorted(self.args.items())))
        if key not in self.context.shared:
            factory = registry.get("generator", plugin).load()
            kwargs = generator_kwargs(factory, self.args, model, f"summarizer {plugin!r}")
            try:
                self.context.shared[key] = factory(self.context, **kwargs)
            except LampError as exc:  # its message says "the generator": name the summarizer
                raise LampError(f"--summarizer {self.spec or plugin}: {exc}") from None
        self.generator = self.context.shared[key]

    def identity(self) -> dict[str, Any]:
        assert self.generator is not None
        described = {k: v for k, v in dict(self.generator.describe()).items() if k not in ("device",)}
        return {"summarizer": described, "max_new_tokens": self.tokens, "items": self.items, "item_tokens": self.item_tokens}

    def prompt(self, task: Task, example: Example, seed: int, key: str) -> str:
        assert self.generator is not None
        templates = TEMPLATES.get(task.name)
        items = list(example.profile)
        if len(items) > self.items:  # the script samples K items; seeded here
            items = random.Random(f"pag:{seed}:{key}").sample(items, self.items)
        cut = lambda text: self.generator.tokens.truncate(text, self.item_tokens)  # noqa: E731
        if templates is not None:
            history = [_fill(templates.history, item, cut).strip() for item in items]
            return templates.summary.format(history=" | ".join(history))
        history = [cut(task.ppep(item)).strip() for item in items]
        return GENERIC_SUMMARY.format(history=" | ".join(history))

    def ensure(
        self, task: Task, users: Mapping[str, Example], seed: int, home: Path, progress: Callable[[str], None] | None = None
    ) -> None:
        """Summaries of ``users`` (by user key): read from the cache, the missing ones generated in
        one batch and cached."""
        assert self.generator is not None
        folder = home / "summaries"
        todo: list[tuple[str, str, Path]] = []
        for key, example in users.items():
            if key in self.by_user:
                continue
            prompt = self.prompt(task, example, seed, key)
            path = folder / f"{stable_hash({'prompt': prompt, **self.identity()}, 24)}.json"
            try:
                self.by_user[key] = json.loads(path.read_text(encoding="utf-8"))["summary"]
            except (OSError, ValueError, KeyError):
                todo.append((key, prompt, path))
        if not todo:
            return
        if progress is not None:
            progress(
                f"writing {len(todo)} profile summar{'y' if len(todo) == 1 else 'ies'} ({len(users) - len(todo)} cached)"
            )
        requests = [GenerationRequest(f"summary-{key[:12]}", prompt, max_new_tokens=self.tokens) for key, prompt, _ in todo]
        generations = self.generator.generate(requests)
        for (key, prompt, path), generation in zip(todo, generations, strict=True):
            summary = generation.text.strip()
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"summary": summary, "prompt": prompt, **self.identity()})
            self.by_user[key] = summary
            self.generated += 1


# ---------------------------------------------------------------------------------------------
# The personalizers
# ---------------------------------------------------------------------------------------------


class OPPU(Personalizer):
    """``oppu``: one LoRA per user, trained on that user's history; questions answered with it."""

    name = "oppu"
    needs_retriever = False
    accepts_retriever = False
    trainable = False
    trains_per_user = True
    """Trained per user (``prepare`` trains the missing adapters; ``lamp train`` deals users to ranks)."""
    uses_items = False
    uses_summary = False
    uses_adapter = True
    options: type[Options] = OPPUOptions

    def __init__(self, context: RunContext, **args: str) -> None:
        opts = self.options.parse(args, f"personalizer {self.name!r}")
        self.context = context
        self.opts = opts
        self.lora: dict[str, Any] = {}
        self.train: dict[str, Any] = {}
        self.stage1: dict[str, Any] | None = None
        if isinstance(opts, OPPUOptions):
            self.lora, self.train, self.stage1 = opts.lora(), opts.train(), opts.stage1_settings()
        self.train_k = opts.train_k if isinstance(opts, OPPURetrievalOptions) else 0
        self._train_split: Callable[[], Sequence[Example]] | None = None
        self.merged: Path | None = None
        """The stage-1 model folder (the task LoRA merged into the base model) once prepared."""
        self.stage1_record: dict[str, Any] = {}
        adapters = getattr(opts, "adapters", None)
        self.adapters_dir = Path(adapters) if adapters else None
        self.summaries = None
        if isinstance(opts, SummaryOptions):
            self.summaries = Summaries(
                context,
                opts.summarizer,
                opts.sub_args(args, "summarizer"),
                tokens=opts.summary_tokens,
                items=opts.summary_items,
                item_tokens=SUMMARY_ITEM_TOKENS,
            )
        self.adapters: dict[str, Path] = {}
        self.trained_now: list[str] = []
        self.train_stats: dict[str, Any] = {}
        self._warned_warmup = False

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        self.task, self.generator = task, generator
        self._tokens = generator.tokens
        self.max_input_tokens = generator.max_input_tokens
        self._budget = prompt_options(context)
        self.seed = context.seed
        if self.summaries is not None:
            self.summaries.bind(generator)
        if self.uses_adapter and not getattr(generator, "serves_adapters", False):
            raise lamp_error(
                f"{self.name} answers with per-user LoRA adapters, which generator {generator.name!r} cannot serve",
                fix="Use the 'hf' generator (or 'vllm', which serves them with multi-LoRA).",
            )
        self.trainer = generator
        spec = generator.trainer() if self.uses_adapter else None
        if spec is not None:  # an inference engine: adapters train on the generator it names
            self.trainer = self._trainer_generator(*spec)
        self.base_trainer = self.trainer
        """The generator on the base model (stage 1 trains there; :attr:`trainer` then moves to
        the merged model)."""
        if self.stage1 is not None and not hasattr(self.base_trainer, "on_base"):
            raise lamp_error(
                f"{self.name}'s stage 1 merges a task LoRA into the model, which generator "
                f"{self.base_trainer.name!r} cannot load",
                fix="Use the 'hf' generator (or 'vllm'), or pass --personalizer-arg stage1=false.",
            )

    def use_train_split(self, load: Callable[[], Sequence[Example]]) -> None:
        self._train_split = load

    def _trainer_generator(self, spec: str, args: Mapping[str, str]) -> Generator:
        """The generator that trains the adapters an inference engine serves (same weights and
        prompts; built once per run)."""
        registry = host().registry
        plugin, model = generator_spec(spec, registry.names("generator"))
        key = ("adapter-trainer", plugin, model, tuple(sorted(args.items())))
        if key not in self.context.shared:
            factory = registry.get("generator", plugin).load()
            self.context.shared[key] = factory(self.context, **generator_kwargs(factory, args, model))
        return self.context.shared[key]

    def identity(self) -> dict[str, Any]:
        """Everything an adapter's weights depend on (besides the user's history): the same for
        an engine's cell and its trainer's, so both use the same adapters."""
        gen = dict(self.base_trainer.describe())
        model = {k: gen.get(k) for k in ("model", "revision", "dtype", "chat_template")}
        stage1 = None
        if self.stage1 is not None:
            if not self.stage1_record:
                raise lamp_error(f"{self.name}'s stage 1 is not prepared yet", fix="Call prepare() with the examples first.")
            stage1 = self.stage1_record["identity"]
        return {
            **({"stage1": stage1} if stage1 is not None else {}),
            "method": self.name,
            "task": self.task.name,
            "model": model,
            "lora": self.lora,
            "train": self.train,
            "train_k": self.train_k,
            "seed": self.seed,
            "summaries": self.summaries.identity() if self.summaries else None,
            "templates": stable_hash(TEMPLATES.get(self.task.name).__dict__ if self.task.name in TEMPLATES else "ppep", 12),
            "layout": 1,
        }

    def store(self) -> Path:
        """The folder of this configuration's adapters (one sub-folder per user)."""
        if self.adapters_dir is not None:
            return self.adapters_dir
        slug = f"{self.task.name}-{self.name}".replace("+", "plus")
        return self.context.lamp_home / "checkpoints" / f"{slug}-{stable_hash(self.identity(), 16)}"

    # -- training data --------------------------------------------------------------------------
    def _cut(self, limit: int) -> Callable[[str], str]:
        """Cut to ``limit`` tokens; a text that fits is kept as written (not re-decoded)."""
        return lambda text: self._tokens.truncate(text, limit) if text and self._tokens.count(text) > limit else text

    def _history(self, example: Example) -> list[ProfileItem]:
        items = list(example.profile)
        limit = self.train["max_items"]
        return items[-limit:] if limit else items

    def training_pairs(self, task: Task, example: Example) -> list[tuple[str, str]]:
        """The user's training examples ``(prompt, answer)``: one per history item of this user,
        nothing else (the published script's accumulating list is the defect fixed here)."""
        items = self._history(example)
        cut = self._cut(self.train["item_tokens"])
        templates = TEMPLATES.get(task.name)
        if templates is None:
            return [("", cut(task.ppep(item)).strip()) for item in items]
        pairs = [(_fill(templates.train_input, item, cut), _fill(templates.answer, item, cut)) for item in items]
        augment = task.name in RETRIEVAL_IN_TRAINING
        if augment and self.uses_items and self.train_k > 0 and len(items) > 1:
            ranked = self._rank_earlier(task, items)
            history = [_fill(templates.history, item, cut) for item in items]
            pairs = [
                (("".join(history[j] for j in ranked[i][: self.train_k]) + "\n" + p) if i else p, a)
                for i, (p, a) in enumerate(pairs)
            ]
        if augment and self.summaries is not None:
            summary = self.summaries.by_user[user_key(example)]
            pairs = [(f"{summary}\n{p}", a) for p, a in pairs]
        return pairs

    def _rank_earlier(self, task: Task, items: Sequence[ProfileItem]) -> list[tuple[int, ...]]:
        """For each item, the items before it ranked by BM25 against its retrieval query (the
        script's training-time retrieval)."""
        retriever = host().registry.create("retriever", "bm25", self.context)
        queries = [
            RankQuery(f"item-{i}", task.document(items[i]), tuple(task.document(x) for x in items[:i]), tuple(items[:i]))
            for i in range(1, len(items))
        ]
        return [()] + [tuple(r) for r in retriever.rank(queries)]

    def user_training_texts(self, task: Task, example: Example) -> list[str]:
        """The texts a user's adapter is trained on (prompt and answer of each example)."""
        return [f"{p}\n{a}" for p, a in self.training_pairs(task, example)]

    # -- per-user training ----------------------------------------------------------------------
    def prepare(self, task: Task, examples: Sequence[Example]) -> None:
        """Summaries and adapters of every user of ``examples``: the missing ones are made here."""
        users = users_of(examples)
        if self.summaries is not None:
            self.summaries.ensure(task, users, self.seed, self.context.lamp_home, self.context.progress)
        if self.uses_adapter:
            self.train_users(task, examples, progress=lambda line: self.context.progress(f"{self.name}: {line}"))

    def train_users(
        self,
        task: Task,
        examples: Sequence[Example],
        *,
        rank: int = 0,
        world_size: int = 1,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Train the missing adapters of ``examples``' users; with ``world_size`` > 1, only this
        ``rank``'s share (users dealt by history size). Returns counts and timings."""
        from filelock import FileLock

        users = users_of(examples)
        if self.summaries is not None:
            self.summaries.ensure(task, users, self.seed, self.context.lamp_home)
        stage1_started = time.perf_counter()
        self.ensure_stage1(task, examples, progress)
        stage1_s = time.perf_counter() - stage1_started
        store = self.store()
        (store / USERS).mkdir(parents=True, exist_ok=True)
        self._check_store(store)
        atomic_write_json(store / "config.json", self.identity())
        keys = list(users)
        shares = deal([float(len(users[k].profile)) for k in keys], world_size)
        mine = [keys[i] for i in shares[rank]]
        started = time.perf_counter()
        trained, steps, items = [], 0, 0
        for n, key in enumerate(mine):
            folder = self.user_folder(key)
            if self.adapter_problem(folder) is None:
                continue
            # Another process sharing the store (a second lamp run) may be training this user:
            # wait for it, and take its adapter.
            with FileLock(str(folder.parent / f".{folder.name}.lock")):
                if self.adapter_problem(folder) is None:
                    continue
                if progress:
                    progress(f"training user {n + 1}/{len(mine)} ({len(users[key].profile)} items)")
                stats = self._train_one(task, key, users[key], folder)
            trained.append(key)
            steps += stats["steps"]
            items += stats["examples"]
        self.index_users()
        for key in keys:
            folder = self.user_folder(key)
            if self.adapter_problem(folder) is None:
                self.adapters[key] = folder
        self.trained_now.extend(trained)
        wall = time.perf_counter() - started
        self.train_stats = {
            "users": len(keys),
            "mine": len(mine),
            "trained": len(trained),
            "steps": steps,
            "examples": items,
            "wall_s": round(wall, 3),
            "users_per_minute": round(60 * len(trained) / wall, 3) if trained and wall else None,
            "stage1": {k: v for k, v in self.stage1_record.items() if k != "identity"} or None,
            "stage1_s": round(stage1_s, 3),
        }
        return self.train_stats

    def _check_store(self, store: Path) -> None:
        """Refuse a folder of adapters trained with other settings (``adapters=FOLDER`` of another
        configuration): answering with them would record settings that were not applied."""
        try:
            recorded = json.loads((store / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # a new folder, or one that records nothing: its adapters are checked one by one
        current = json.loads(json.dumps(self.identity(), default=str))
        if isinstance(recorded, dict) and recorded != current:
            differ = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
            raise lamp_error(
                f"the adapters in {store} were trained with other settings ({', '.join(differ)} differ)",
                where=f"personalizer {self.name!r}",
                fix="Pass the settings they were trained with (their config.json), or another adapters= folder "
                "(without adapters=, each configuration has its own folder under $LAMP_HOME/checkpoints).",
            )

    def user_folder(self, key: str) -> Path:
        return self.store() / USERS / key[:32]

    @staticmethod
    def adapter_problem(folder: Path) -> str | None:
        """Why ``folder`` is not a complete adapter (``None``: it is)."""
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "missing"
        return check_manifest(folder, manifest.get("files"), hashes=False)

    def index_users(self) -> None:
        """``users.json``: the users whose adapter the store holds (rewritten from the folders)."""
        from filelock import FileLock

        store = self.store()
        with FileLock(str(store / ".users.lock")):
            held = sorted(
                p.name
                for p in (store / USERS).iterdir()
                if p.is_dir() and not p.name.startswith(".") and self.adapter_problem(p) is None
            )
            atomic_write_json(store / USERS_INDEX, {"users": held, "count": len(held)})

    def _train_one(self, task: Task, key: str, example: Example, folder: Path) -> dict[str, Any]:
        from lamp_plugins import lora

        pairs = self.training_pairs(task, example)
        if not pairs:
            raise lamp_error(
                f"user {key[:12]} has an empty history: OPPU has nothing to train on",
                fix="Remove users without profile items from the data.",
            )
        model = self.trainer.adapter_module()
        name = "oppu_training"
        seed = int(hashlib.sha256(f"oppu:{self.seed}:{key}".encode()).hexdigest()[:8], 16)
        # A fresh adapter per user, initialised from the seed and the user.
        config, params = self._new_lora(model, name, seed, self.lora["target_modules"], "target_modules")
        started = time.perf_counter()
        try:
            losses = self._fit(self.trainer, params, pairs, seed, self.train["epochs"])
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = staging_dir(folder)
            try:
                base = str(self.merged) if self.merged is not None else str(dict(self.trainer.describe()).get("model"))
                lora.save(model, name, config, tmp, base)
                atomic_write_json(
                    tmp / MANIFEST,
                    {
                        "user": key,
                        "examples": len(pairs),
                        "steps": len(losses),
                        "losses": losses,
                        "train_s": round(time.perf_counter() - started, 3),
                        "trained_on": [text_hash(f"{p}\n{a}") for p, a in pairs],
                        "identity": stable_hash(self.identity(), 16),
                        "files": folder_manifest(tmp, skip=(MANIFEST,)),
                    },
                )
                if folder.exists():  # an incomplete adapter left by a killed run
                    shutil.rmtree(folder)
                tmp.rename(folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            self.trainer.set_train_mode(False)
            lora.delete(model, name)
            lora.activate(model, None)
        return {"steps": len(losses), "examples": len(pairs)}

    def _fit(
        self, trainer: Generator, params: list[Any], pairs: Sequence[tuple[str, str]], seed: int, epochs: int
    ) -> list[float]:
        """Train ``params`` (an adapter of ``trainer``'s model) on ``pairs``: AdamW, linear warmup
        then decay, gradient clipping, a seeded shuffle per epoch; returns the loss of each step."""
        import torch

        losses: list[float] = []
        optimizer = torch.optim.AdamW(params, lr=self.train["lr"], weight_decay=self.train["weight_decay"])
        batch = self.train["batch_size"]
        total = -(-len(pairs) // batch) * epochs
        warm = int(-(-total * self.train["warmup"] // 1))

        def factor(step: int) -> float:  # linear warmup, then linear decay to 0 (HF's schedule)
            if step < warm:
                return step / max(1, warm)
            return max(0.0, (total - step) / max(1, total - warm))

        if total and all(factor(step) == 0 for step in range(total)) and not self._warned_warmup:
            self._warned_warmup = True
            warn(
                f"{self.name}: each adapter's {total} optimizer step(s) all fall in the warm-up, where the "
                "learning rate is 0 (HF's schedule): the adapters stay untrained; pass --personalizer-arg "
                "epochs=N for more steps, or warmup=0"
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        order_rng = random.Random(seed)
        trainer.set_train_mode(True)
        try:
            for _epoch in range(epochs):
                order = list(range(len(pairs)))
                order_rng.shuffle(order)
                for start in range(0, len(order), batch):
                    chosen = [pairs[i] for i in order[start : start + batch]]
                    requests = [GenerationRequest(f"train-{i}", p) for i, (p, _) in enumerate(chosen)]
                    loss = trainer.loss(requests, [a for _, a in chosen])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, self.train["max_grad_norm"])
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(round(float(loss.detach()), 6))
        finally:
            trainer.set_train_mode(False)
        return losses

    # -- stage 1: the task LoRA -------------------------------------------------------------------
    def stage1_pairs(self, task: Task, asked: Sequence[Example]) -> list[tuple[str, str]]:
        """Stage 1's training examples ``(prompt, answer)``: each question of the training split
        whose user is not asked (``asked``), with its gold answer; the prompt is the method's own
        question prompt (retrieved items from that user's profile / that user's summary)."""
        if self._train_split is None:
            raise lamp_error(
                f"{self.name}'s stage 1 trains a task LoRA on the task's training split, which was not given",
                fix="Run it through `lamp run` or `lamp train`, or pass --personalizer-arg stage1=false.",
            )
        assert self.stage1 is not None
        asked_users = {user_key(example) for example in asked}
        train = [ex for ex in self._train_split() if ex.gold is not None and user_key(ex) not in asked_users]
        if self.stage1["examples"]:
            train = train[: self.stage1["examples"]]
        if not train:
            raise lamp_error(
                f"the {task.name} training split has no question of a user other than the ones asked: "
                f"{self.name}'s stage 1 has nothing to train on",
                fix="Ask the questions of another split (--split dev), or pass --personalizer-arg stage1=false.",
            )
        if self.summaries is not None:
            self.summaries.ensure(task, users_of(train), self.seed, self.context.lamp_home)
        ranked: list[tuple[int, ...]] = [()] * len(train)
        if self.uses_items and self.train_k > 0:
            retriever = host().registry.create("retriever", "bm25", self.context)
            queries = [
                RankQuery(ex.id, task.query(ex), tuple(task.document(item) for item in ex.profile), ex.profile)
                for ex in train
            ]
            ranked = [tuple(r) for r in retriever.rank(queries)]
        return [
            (
                self._question(task, ex, [ex.profile[j] for j in order[: self.train_k]], self._head(ex)),
                str(ex.gold),
            )
            for ex, order in zip(train, ranked, strict=True)
        ]

    def stage1_identity(self, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Everything the stage-1 model depends on: the base model, the LoRA and training
        settings, the seed, the training texts, and the versions of the distributions providing
        the task, this personalizer and the generator (as other trained weights are keyed)."""
        assert self.stage1 is not None
        gen = dict(self.base_trainer.describe())
        registry = host().registry
        wanted = [("task", self.task.name), ("personalizer", self.name), ("generator", self.base_trainer.name)]
        return {
            "task": self.task.name,
            "model": {k: gen.get(k) for k in ("model", "revision", "dtype", "chat_template")},
            "lora": {**self.lora, "target_modules": self.stage1["target_modules"]},
            "train": {**self.train, "epochs": self.stage1["epochs"], "examples": len(pairs)},
            "seed": self.seed,
            "data": stable_hash([text_hash(f"{p}\n{a}") for p, a in pairs], 16),
            "versions": dict(sorted({registry.provider(kind, name) for kind, name in wanted})),
            "layout": STAGE1_LAYOUT,
        }

    def ensure_stage1(self, task: Task, asked: Sequence[Example], progress: Callable[[str], None] | None = None) -> None:
        """Stage 1: the merged task model, read from the cache or trained now (once: concurrent
        processes wait on a file lock); afterwards :attr:`trainer` is the generator on it."""
        if self.stage1 is None or self.merged is not None:
            return
        from filelock import FileLock
        from lamp_plugins import lora

        pairs = self.stage1_pairs(task, asked)
        identity = self.stage1_identity(pairs)
        slug = f"{task.name}-{self.name}".replace("+", "plus")
        folder = self.context.lamp_home / "checkpoints" / f"{slug}-stage1-{stable_hash(identity, 16)}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        trained = False
        with FileLock(str(folder.parent / f".{folder.name}.lock")):
            if self.adapter_problem(folder) is not None:
                if progress:
                    progress(f"stage 1: training the task LoRA on {len(pairs)} training questions")
                self._train_stage1(pairs, identity, folder)
                trained = True
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        self.merged = folder / "model"
        self.stage1_record = {
            "identity": identity,
            "folder": str(folder),
            "examples": manifest["examples"],
            "epochs": self.stage1["epochs"],
            "steps": manifest["steps"],
            "lora": {**identity["lora"], "applied_to": lora.applied_modules(folder / "adapter")},
            "train_s": manifest["train_s"],
            "trained_this_run": trained,
        }
        self.trainer = self.base_trainer.on_base(self.merged)  # type: ignore[attr-defined]

    def _new_lora(self, model: Any, name: str, seed: int, modules: Sequence[str], option: str) -> tuple[Any, list[Any]]:
        """A fresh LoRA ``name`` on ``modules`` of ``model`` (the method's rank, alpha and dropout),
        initialised from ``seed``: its peft config and its trainable parameters. ``option`` is the
        ``--personalizer-arg`` that names the modules, for the error when the model has none of them."""
        import torch
        from lamp_plugins import lora
        from peft import LoraConfig

        torch.manual_seed(seed)
        config = LoraConfig(
            r=self.lora["rank"],
            lora_alpha=self.lora["alpha"],
            lora_dropout=self.lora["dropout"],
            target_modules=list(modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            return config, lora.add(model, config, name)
        except ValueError as exc:
            raise lamp_error(
                f"LoRA target modules {','.join(modules)} not found in the model: {' '.join(str(exc).split())[:200]}",
                fix=f"Pass --personalizer-arg {option}=... naming the attention projections (e.g. c_attn for GPT-2).",
            ) from None

    def _train_stage1(self, pairs: Sequence[tuple[str, str]], identity: Mapping[str, Any], folder: Path) -> None:
        from lamp_plugins import lora

        assert self.stage1 is not None
        trainer = self.base_trainer
        model = trainer.adapter_module()
        name = "oppu_task"
        seed = int(hashlib.sha256(f"oppu-stage1:{self.seed}".encode()).hexdigest()[:8], 16)
        config, params = self._new_lora(model, name, seed, self.stage1["target_modules"], "stage1_target_modules")
        started = time.perf_counter()
        try:
            losses = self._fit(trainer, params, pairs, seed, self.stage1["epochs"])
            tmp = staging_dir(folder)
            try:
                (tmp / "adapter").mkdir()
                lora.save(model, name, config, tmp / "adapter", str(identity["model"]["model"]))
                lora.save_merged(model, name, trainer.tokenizer, tmp / "model")  # type: ignore[attr-defined]
                atomic_write_json(
                    tmp / MANIFEST,
                    {
                        "examples": len(pairs),
                        "steps": len(losses),
                        "losses": losses,
                        "train_s": round(time.perf_counter() - started, 3),
                        "identity": identity,
                        "files": folder_manifest(tmp, skip=(MANIFEST,)),
                    },
                )
                if folder.exists():  # an incomplete one left by a killed run
                    shutil.rmtree(folder)
                tmp.rename(folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            lora.delete(model, name)
            lora.activate(model, None)

    # -- questions ------------------------------------------------------------------------------
    def _question(self, task: Task, example: Example, items: Sequence[ProfileItem], head: str) -> str:
        """``head`` (a summary line or empty), then the retrieved ``items``, then the question,
        within the generator's prompt budget (items are what gets cut)."""
        templates = TEMPLATES.get(task.name)
        budget = self.max_input_tokens
        if templates is None:
            used = self._tokens.count(head) if head else 0
            return head + task.prompt(example, tuple(items), self._tokens, max(1, budget - used), **self._budget)
        question = templates.prompt.format(query=task.query(example))
        used = self._tokens.count(head + question) + (1 if items else 0)
        if used > budget:  # the question itself is over budget: cut its text, keep the frame
            query = self._tokens.truncate(
                task.query(example), max(1, budget - (used - self._tokens.count(task.query(example))))
            )
            question = templates.prompt.format(query=query)
            return head + question
        cut = self._cut(TEST_ITEM_TOKENS)
        context = ""
        for item in items:
            text = _fill(templates.history, item, cut)
            room = budget - used - self._tokens.count(context)
            if room <= 0:
                break
            if self._tokens.count(text) > room:
                context += self._tokens.truncate(text, room)
                break
            context += text
        return head + (context + "\n" if context else "") + question

    def _head(self, example: Example) -> str:
        if self.summaries is None:
            return ""
        summary = self.summaries.by_user.get(user_key(example), "")
        summary = self._tokens.truncate(summary, self.max_input_tokens // 2) if summary else ""
        return f"{summary}\n" if summary else ""

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        key = user_key(example)
        adapter = self.adapters.get(key)
        if adapter is None:
            raise lamp_error(
                f"no OPPU adapter for the user of example {example.id!r}",
                fix="Call prepare() with the examples first (lamp run does).",
            )
        prompt = self._question(task, example, retrieved if self.uses_items else (), self._head(example))
        return GenerationRequest(
            example.id, prompt, choices=task.labels, max_new_tokens=task.max_new_tokens, adapter=str(adapter)
        )

    def training_budget(self) -> TrainingBudget | None:
        """The users' adapters' training, summed over the users this cell answers (from each
        adapter's manifest, so adapters trained by another run are counted as they were trained),
        after stage 1 when it ran."""
        if not self.uses_adapter or not self.adapters:
            return None
        manifests = [json.loads((folder / MANIFEST).read_text(encoding="utf-8")) for folder in self.adapters.values()]
        before = None
        if self.stage1_record:
            s1 = self.stage1_record
            before = (
                f"stage 1: a task LoRA on {s1['examples']} training questions, {s1['epochs']} epoch(s), "
                f"{s1['steps']} steps, merged into the model"
            )
        return TrainingBudget(
            steps=sum(int(m.get("steps", 0)) for m in manifests),
            batch_size=self.train["batch_size"],
            examples=sum(int(m.get("examples", 0)) for m in manifests),
            epochs=self.train["epochs"],
            lr=self.train["lr"],
            per_user=len(manifests),
            before=before,
        )

    def _applied_modules(self) -> list[str]:
        """The modules the users' adapters adapt (the same for every user of a configuration):
        what was applied, where ``lora.target_modules`` is what was asked."""
        from lamp_plugins import lora

        folder = next(iter(self.adapters.values()), None)
        return lora.applied_modules(folder) if folder is not None else []

    def describe(self) -> Mapping[str, Any]:
        described: dict[str, Any] = {"name": self.name}
        if self.uses_adapter:
            described["stage1_task_lora"] = self.merged is not None
            if self.stage1_record:
                described["stage1"] = {k: v for k, v in self.stage1_record.items() if k != "identity"}
            described.update(
                {
                    "lora": {**self.lora, "applied_to": self._applied_modules()},
                    "train": self.train,
                    "adapters": str(self.store()),
                    "users": len(self.adapters),
                    "trained_this_run": len(self.trained_now),
                    "fixes": ["per-user data", "fresh adapter per user", "deterministic decoding", "token-level cuts"],
                }
            )
        if isinstance(self.opts, OPPURetrievalOptions):
            described["train_k"] = self.train_k
        if self.summaries is not None:
            described["summaries"] = {**self.summaries.identity(), "generated_this_run": self.summaries.generated}
        return described

    def artifacts(self) -> Mapping[str, Any]:
        if self.summaries is None:
            return {}
        return {
            "summaries.json": {
                "identity": self.summaries.identity(),
                "users": [{"user": k, "summary": v} for k, v in self.summaries.by_user.items()],
            }
        }


class OPPURetrieval(OPPU):
    """``oppu+retrieval`` (OPPU + RAG): the top-k retrieved items in the prompt, and in training."""

    name = "oppu+retrieval"
    needs_retriever = True
    accepts_retriever = True
    default_retriever = "bm25"
    uses_items = True
    options = OPPURetrievalOptions


class OPPUSummary(OPPU):
    """``oppu+summary`` (OPPU + PAG): the user's profile summary in the prompt, and in training."""

    name = "oppu+summary"
    uses_summary = True
    takes_summarizer = True
    """``lamp run --summarizer G --summarizer-arg K=V`` reach it as ``summarizer`` / ``summarizer.K``."""
    options = OPPUSummaryOptions


class PAG(OPPU):
    """``pag``: the user's profile summary, then the task's prompt with the top-k retrieved items,
    within the task's token budget. No adapter."""

    name = "pag"
    takes_summarizer = True
    needs_retriever = False
    accepts_retriever = True
    trains_per_user = False
    uses_items = True
    uses_summary = True
    uses_adapter = False
    options = SummaryOptions

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        head = self._head(example)
        used = self._tokens.count(head) if head else 0
        prompt = head + task.prompt(
            example, tuple(retrieved), self._tokens, max(1, self.max_input_tokens - used), **self._budget
        )
        return GenerationRequest(example.id, prompt, choices=task.labels, max_new_tokens=task.max_new_tokens)
