"""PPlug (persona-plug, Liu et al. ACL 2025): a user embedding plugged in front of a frozen LLM.

The method as its authors' code runs it (rucliujn/PPlug: ``code/ModelForPer.py``,
``code/PersonalDataset_profile.py``, ``code/main_profile.py``, ``embedding.py``, ``aggr_id.py``,
``code/run_all_t5.sh``):

- a frozen history encoder embeds every profile item once (``h_i``, CLS pooling, L2-normalised,
  at most 512 encoder tokens; the last 512 items of the profile). Item texts: LaMP-1/5
  ``title + " " + abstract``, LaMP-2 ``description``, LaMP-3 ``text``, LaMP-4 ``text + " " +
  title``, LaMP-7 ``text`` (other tasks: the task's retrieval document). The vectors are computed
  before any training step or generation, in batches, by :meth:`PPlug.prepare`, and kept in the
  embedding cache, so training never runs the history encoder;
- the LLM input is the task input cut to ``L - 1`` LLM tokens (L = the generator's
  ``max_input_tokens``, 256: the official ``decode(encode(input)[:256][:-1])``);
- a trainable input encoder of the same architecture, initialised from the history encoder,
  embeds ``query_prefix + query`` (at most ``L + 20`` = 276 encoder tokens), where the query is
  taken from the cut input as the official code takes it: LaMP-1 the paper's title (between
  ``title "`` and ``",``), LaMP-2 after ``description: ``, LaMP-3 after ``review: ``, LaMP-4 after
  ``article: ``, LaMP-5 after ``paper: ``, LaMP-7 after ``before or after it: `` (other tasks:
  ``task.query``). BGE's instruction is written as the official code writes it, with no space
  before the query;
- an input-aware aggregator ``w_i = softmax_i(x · h_i)`` (padding masked) and
  ``P = Σ_i w_i · Proj(h_i)`` with ``Proj`` a Linear → GELU → Linear MLP from the encoder width
  to the LLM's embedding width;
- a trainable instruction seed ``torch.rand(d)`` (uniform [0, 1)) through its own MLP: ``I``;
- the official scale (``scale=official``): ``P · c`` and ``I / 7 · c``, so the norms are learned.
  The official ``c = 539.9738`` was chosen for FlanT5-XXL; for any other model ``c`` is that
  constant rescaled by the ratio of the model's mean input-embedding norm to FlanT5-XXL's, taking
  the constant as FlanT5-XXL's typical token-embedding norm: ``c = generator.embedding_norm``
  (FlanT5-XXL itself keeps 539.9738). ``scale=norm`` (a deviation) L2-normalises ``I`` and ``P``
  to ``generator.embedding_norm`` instead (only directions train, ``‖I‖ = ‖P‖``);
- ``[I; P]`` go to the generator as :class:`~lamp_harness.plugin.contracts.SoftTokens` in front of the
  input, where the official code overwrites two placeholder tokens' embeddings.

Only the input encoder, the two projectors and the instruction seed train; the LLM is frozen but
in train mode during training (its dropout is active, as under the official HF Trainer). Training
examples with more than 2 history items get ``augment`` (default 10) extra copies, each dropping
``int(n · U(0, 0.5)) + 1`` random items (``aggr_id.py``); LaMP-3 trains 1 epoch, the others 2.

Pooling and query instruction follow the encoder model's registered metadata (``bge-base``: CLS
pooling and BGE's instruction, as in the paper). The offline stand-in MiniLM is a mean-pooling
model with no instruction, so by default it is used the way it was trained (mean pooling, no
prefix); ``pooling=cls`` and ``query_prefix=...`` force the paper's settings on any model.

Arguments (``--personalizer-arg k=v``):

- ``encoder``: the encoder model (alias, hub id or folder); default: the preset's ``bge`` role,
  or the cell's dense retriever's encoder (``--retriever contriever``: "PPlug with Contriever",
  paper Table 2);
- ``pooling``: ``model`` (default: the model's metadata, CLS when it has none), ``cls`` or ``mean``;
- ``query_prefix``: the instruction in front of the input's query (default: the model's metadata,
  BGE's instruction when the model has none);
- ``scale``: ``official`` (default) or ``norm`` (deviation: unit direction times the LLM's mean
  embedding norm);
- ``aggregation``: ``input`` (default, input-aware softmax) or ``mean`` (ablation: plain mean);
- ``instruction``: ``true`` (default) or ``false`` (ablation: no instruction embedding ``I``);
- ``history_top_k``: ``0`` (default, all items) or K (ablation "with selection": only the top-K
  items by ``w_i``, softmax renormalised over them);
- ``history_size``: the most recent items of the profile used (default 512);
- ``max_encoder_tokens``: history encoder input length (default 512);
- ``input_encoder_tokens``: input encoder length (default: ``L + 20``, 276 with L = 256);
- ``augment``: extra training copies per example with more than 2 history items (default 10;
  0 switches augmentation off, a deviation);
- ``encode_batch_size``: batch size of the history precomputation (default 64).

PPlug + retrieval (paper Table 3, not in the public code): ``pplug+retrieval`` puts the top-1
retrieved item's PPEP as text in front of ``[I; P]``: prefix ``(ppep, SoftTokens([I; P]))``,
cut to the prompt budget left after the input and the soft tokens. Its default retriever is the
preset's BGE-style dense retriever. ``pplug`` itself never prepends items: a dense retriever given
to it supplies PPlug's encoder instead, and a retriever without an encoder (bm25, recency,
random) is an error that suggests ``pplug+retrieval`` (unless other methods of the matrix use that
retriever's items: then the pplug cell keeps its own encoder, with a warning).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lamp_plugins.encoders import pool

from lamp_harness import (
    Example,
    GenerationRequest,
    Generator,
    HFTokenCounter,
    Options,
    Personalizer,
    ProfileItem,
    RunContext,
    SoftTokens,
    Task,
    lamp_error,
    option,
)

BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages:"
"""BGE's query instruction as the official PPlug code writes it (no space before the query)."""
OFFICIAL_SCALE = 539.9738
"""The official multiplier of ``P`` (and of ``I / 7``), chosen for FlanT5-XXL."""
INSTRUCTION_DIVISOR = 7.0
AUGMENT_COPIES = 10
SCALES = ("official", "norm")
QUERY_MARKERS: dict[str, tuple[str, str | None]] = {
    "lamp-1": ('title "', '",'),
    "lamp-2": ("description: ", None),
    "lamp-3": ("review: ", None),
    "lamp-4": ("article: ", None),
    "lamp-5": ("paper: ", None),
    "lamp-7": ("before or after it: ", None),
}
"""Where the official code's input-encoder query starts (and, for LaMP-1, ends) in the input."""
HISTORY_FIELDS: dict[str, tuple[str, ...]] = {
    "lamp-1": ("title", "abstract"),
    "lamp-2": ("description",),
    "lamp-3": ("text",),
    "lamp-4": ("text", "title"),
    "lamp-5": ("title", "abstract"),
    "lamp-7": ("text",),
}
"""The official history item texts: these fields joined by a space."""
OFFICIAL_EPOCHS = {"lamp-3": 1}
"""Training epochs of the official run script where they differ from 2."""


@dataclass(frozen=True)
class PPlugOptions(Options):
    """PPlug's options (``--personalizer-arg``); see the module documentation for each one."""

    encoder: str | None = option(
        None, "the encoder model: alias, hub id or folder (unset: the cell's dense retriever's, else the preset's bge)"
    )
    pooling: str = option(
        "model", "token pooling: the model's metadata (model), cls or mean", choices=("model", "cls", "mean")
    )
    query_prefix: str | None = option(None, "instruction before the input's query (unset: the model's metadata)")
    aggregation: str = option(
        "input", "input-aware softmax over the history (input) or a plain mean (ablation)", choices=("input", "mean")
    )
    instruction: bool = option(True, "prepend the instruction embedding I (false: ablation)")
    history_top_k: int = option(0, "only the top-K history items by weight (0: all; ablation)", minimum=0)
    history_size: int = option(512, "most recent profile items used", minimum=1)
    max_encoder_tokens: int = option(512, "history encoder input length", minimum=8)
    input_encoder_tokens: int = option(0, "input encoder length (0: L + 20)", minimum=0)
    encode_batch_size: int = option(64, "batch size of the history precomputation", minimum=1)
    scale: str = option(
        "official", "the authors' learned norms (official) or the LLM's mean embedding norm (norm)", choices=SCALES
    )
    augment: int = option(AUGMENT_COPIES, "extra training copies per example with 3+ history items (0: off)", minimum=0)

    def validate(self, owner: str) -> None:
        if self.aggregation == "mean" and self.history_top_k:
            raise lamp_error(
                "history_top_k selects items by the input-aware weights, which aggregation=mean does not compute",
                where=owner,
                fix="Use one ablation at a time.",
            )


def official_query(task_name: str, text: str) -> str | None:
    """The input encoder's query as the official code cuts it from ``text``, or ``None`` for a
    task the official code does not cover. Transcribed literally: a missing marker starts the
    query at ``len(marker) - 1`` and a missing LaMP-1 end marker stops it before the last char."""
    markers = QUERY_MARKERS.get(task_name)
    if markers is None:
        return None
    start, end = markers
    at = text.find(start) + len(start)
    if end is None:
        return text[at:]
    return text[at : text.find(end, at)]


def history_text(task: Task, item: ProfileItem) -> str:
    """The official history item text (the task's retrieval document for other tasks)."""
    fields = HISTORY_FIELDS.get(task.name)
    return " ".join(item.get(f) for f in fields) if fields else task.document(item)


def augmented(examples: Sequence[Example], seed: int, copies: int = AUGMENT_COPIES) -> list[Example]:
    """The official training-set augmentation: every example with more than 2 history items is
    preceded by ``copies`` copies, each keeping a random sample of ``n - (int(n * U(0, 0.5)) + 1)``
    of its ``n`` items (in sampled order). Seeded, so every run draws the same copies."""
    import random

    rng = random.Random(f"pplug-augment:{seed}")
    out: list[Example] = []
    for example in examples:
        n = len(example.profile)
        if copies and n > 2:
            for copy_index in range(copies):
                dropped = int(n * rng.uniform(0, 0.5)) + 1
                kept = tuple(rng.sample(list(example.profile), n - dropped))
                out.append(Example(f"{example.id}#aug{copy_index}", example.input, kept, example.gold))
        out.append(example)
    return out


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if requested and requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Pure tensor pieces (tested on their own)
# ---------------------------------------------------------------------------------------------


def attention_weights(query: Any, history: Any, mask: Any, *, top_k: int = 0) -> Any:
    """``w_i = softmax_i(x · h_i)`` over the unmasked items of each row.

    ``query`` ``[B, d]``, ``history`` ``[B, n, d]``, ``mask`` ``[B, n]`` (bool, ``True`` = real
    item). With ``top_k > 0`` only the ``top_k`` best-scoring items keep weight (the softmax is
    renormalised over them). Padding gets exactly zero; a row without items gets all zeros.
    """
    import torch

    scores = torch.einsum("bd,bnd->bn", query, history)
    keep = mask.bool()
    if top_k and top_k < scores.shape[1]:
        ranked = scores.masked_fill(~keep, float("-inf")).topk(top_k, dim=1).indices
        selected = torch.zeros_like(keep).scatter(1, ranked, True)
        keep = keep & selected
    scores = scores.masked_fill(~keep, float("-inf"))
    empty = ~keep.any(dim=1, keepdim=True)
    # A row with no items would softmax to NaN; give it zeros instead (P is then 0).
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=1)
    return weights.masked_fill(~keep, 0.0)


def mean_weights(mask: Any) -> Any:
    """Uniform weights over the unmasked items of each row (the ``aggregation=mean`` ablation)."""
    weights = mask.float()
    return weights / weights.sum(1, keepdim=True).clamp_min(1.0)


def _mlp(width_in: int, width_out: int) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(width_in, width_out), torch.nn.GELU(), torch.nn.Linear(width_out, width_out))


def _build_module(encoder: Any, encoder_width: int, llm_width: int, instruction: bool) -> Any:
    """The trainable part of PPlug as one ``nn.Module`` (its ``state_dict`` is the checkpoint)."""
    import torch

    module = torch.nn.Module()
    if encoder is not None:
        module.input_encoder = encoder
    module.projector = _mlp(encoder_width, llm_width)
    if instruction:
        module.instruction_seed = torch.nn.Parameter(torch.rand(encoder_width))  # official init
        module.instruction_projector = _mlp(encoder_width, llm_width)
    return module


# ---------------------------------------------------------------------------------------------
# History embeddings: computed once, never during training steps
# ---------------------------------------------------------------------------------------------


class HistoryTable:
    """Frozen per-item vectors of the history encoder, keyed by document text.

    ``ensure(texts)`` embeds only the texts not yet known, in batches under ``no_grad``, and counts
    the encoder forward passes in :attr:`forward_passes` (the training benchmark checks that it
    stays 0 once the table is warm). ``lookup`` never computes: a text missing there is a bug in
    the caller (it skipped :meth:`PPlug.prepare`) unless ``compute_missing`` is set.
    """

    def __init__(
        self, encoder: Any, tokenizer: Any, *, pooling: str, max_tokens: int, batch_size: int, device: str, store: Any = None
    ) -> None:
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self.store = store
        self.vectors: dict[str, Any] = {}
        self.forward_passes = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def ensure(self, texts: Sequence[str], progress: Any = None) -> int:
        """Embed the texts not in the table yet; returns how many were computed."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.vectors))
        if missing and self.store is not None:
            found = self.store.load([self.key(t) for t in missing])
            for text, vector in zip(missing, found, strict=True):
                if vector is not None:
                    self.vectors[self.key(text)] = torch.as_tensor(vector, dtype=torch.float32)
            missing = [t for t in missing if self.key(t) not in self.vectors]
        computed: dict[str, Any] = {}
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            vectors = self.embed(batch)
            for text, vector in zip(batch, vectors, strict=True):
                computed[self.key(text)] = vector
            if progress is not None:
                progress(len(batch))
        self.vectors.update(computed)
        if computed and self.store is not None:
            self.store.save(computed)
        return len(missing)

    def embed(self, texts: Sequence[str]) -> Any:
        """Normalised vectors ``[len(texts), d]`` from the frozen encoder (one forward pass)."""
        import torch

        with torch.no_grad():
            batch = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(self.device)
            hidden = self.encoder(**batch).last_hidden_state
            self.forward_passes += 1
            vectors = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling), dim=-1)
        # Rounded through float16 like the on-disk cache stores them, so vectors computed now and
        # vectors read back in a later (e.g. resumed) run are bit-identical.
        return vectors.to(torch.float16).float().cpu()

    def lookup(self, texts: Sequence[str], compute_missing: bool = False) -> Any:
        """The stacked vectors ``[len(texts), d]``."""
        import torch

        if compute_missing:
            self.ensure(texts)
        return torch.stack([self.vectors[self.key(t)] for t in texts]) if texts else None


# ---------------------------------------------------------------------------------------------
# The personalizer
# ---------------------------------------------------------------------------------------------


class PPlug(Personalizer):
    """``pplug``: a frozen-LLM personalizer driven by a learned user embedding."""

    name = "pplug"
    needs_retriever = False
    accepts_retriever = True
    retriever_use = "encoder"
    items_variant = "pplug+retrieval"
    trainable = True
    options = PPlugOptions

    def __init__(self, context: RunContext, **args: str) -> None:
        opts = PPlugOptions.parse(args, f"personalizer {self.name!r}")
        self.context = context
        self.encoder_spec = opts.encoder or None
        self.pooling_arg = opts.pooling
        self.query_prefix_arg = opts.query_prefix
        self.aggregation = opts.aggregation
        self.instruction = opts.instruction
        self.history_top_k = opts.history_top_k
        self.history_size = opts.history_size
        self.max_encoder_tokens = opts.max_encoder_tokens
        self.input_encoder_tokens = opts.input_encoder_tokens
        self.augment = opts.augment
        self.scale = opts.scale
        self.encode_batch_size = opts.encode_batch_size
        self.module: Any = None
        self.generator: Generator | None = None

    # -- setup ----------------------------------------------------------------------------------
    def use_encoder(self, encoder: Mapping[str, Any]) -> None:
        """Take the cell's dense retriever's text encoder (``Retriever.text_encoder()``) as the
        history and input encoder ("PPlug with Contriever"), unless ``encoder=`` was given."""
        if self.encoder_spec is None:
            self.encoder_spec = str(encoder["model"])
            if self.pooling_arg == "model" and encoder.get("pooling"):
                self.pooling_arg = str(encoder["pooling"])
            if self.query_prefix_arg is None and "query_prefix" in encoder:
                self.query_prefix_arg = str(encoder["query_prefix"])

    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        """Load the encoder (once per process), build the trainable module for ``generator``."""
        import torch

        from lamp_harness import resolve_model

        if self.module is not None and self.generator is generator:
            return
        self.generator = generator
        self.task = task
        self.device = resolve_device(context.device)
        self.resolved = resolve_model("bge", context, self.encoder_spec)
        meta = self.resolved.metadata
        self.pooling = str(meta.get("pooling") or "cls") if self.pooling_arg == "model" else self.pooling_arg
        if self.pooling not in ("cls", "mean"):
            self.pooling = "cls"
        if self.query_prefix_arg is not None:
            self.query_prefix = self.query_prefix_arg
        else:
            # The official code writes BGE's instruction with no space before the query.
            self.query_prefix = str(meta["query_prefix"]).rstrip(" ") if "query_prefix" in meta else BGE_QUERY_PREFIX
        frozen, tokenizer = _load_encoder(self.resolved, context, self.device)
        self.tokenizer = tokenizer
        key = ("pplug-history", self.resolved.path, self.resolved.revision, self.pooling, self.max_encoder_tokens)
        if key not in context.shared:
            context.shared[key] = HistoryTable(
                frozen,
                tokenizer,
                pooling=self.pooling,
                max_tokens=self.max_encoder_tokens,
                batch_size=self.encode_batch_size,
                device=self.device,
                store=_history_store(context, self.resolved, self.pooling, self.max_encoder_tokens),
            )
        self.history: HistoryTable = context.shared[key]
        width = int(frozen.config.hidden_size)
        # The input encoder starts as a copy of the history encoder (same architecture and weights)
        # and is the only encoder that trains; the mean ablation never uses it.
        encoder = None
        if self.aggregation == "input":
            encoder = copy.deepcopy(frozen)
            encoder.requires_grad_(True)
        torch.manual_seed(context.seed)
        self.module = _build_module(encoder, width, generator.embedding_width, self.instruction)
        self.module.to(self.device).eval()
        # The LLM stays frozen: generators load their weights without gradients, and only the
        # soft tokens carry a graph into it.
        self.embedding_norm = float(generator.embedding_norm)
        self.official_scale = _official_scale(generator, self.embedding_norm)
        self.max_input_tokens = int(generator.max_input_tokens)
        if not self.input_encoder_tokens:
            self.input_encoder_tokens = self.max_input_tokens + 20

    def prepare(self, task: Task, examples: Sequence[Example]) -> None:
        """Embed every history item of ``examples`` (batched; already known ones are skipped)."""
        self._require_setup()
        texts = list(dict.fromkeys(history_text(task, item) for ex in examples for item in self._history_items(ex)))
        missing = [t for t in texts if HistoryTable.key(t) not in self.history.vectors]
        if not missing:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            tid = bar.add_task("PPlug: embedding history items", total=len(missing))
            self.history.ensure(missing, progress=lambda n: bar.advance(tid, n))

    # -- the method -----------------------------------------------------------------------------
    def _require_setup(self) -> None:
        if self.module is None:
            raise RuntimeError("PPlug.setup(task, generator, context) must be called first")

    def _history_items(self, example: Example) -> tuple[ProfileItem, ...]:
        return example.profile[-self.history_size :]

    def llm_input(self, example: Example) -> str:
        """The input cut to ``L - 1`` LLM tokens and decoded, as the official dataset does."""
        assert self.generator is not None
        tokens = self.generator.tokens
        keep = self.max_input_tokens - 1
        if isinstance(tokens, HFTokenCounter):
            return tokens.truncate(example.input, keep, clean_up=True)
        return tokens.truncate(example.input, keep)

    def input_query(self, task: Task, example: Example) -> str:
        """The input encoder's query: taken from the cut input as the official code takes it."""
        found = official_query(task.name, self.llm_input(example))
        return task.query(example) if found is None else found

    def _encode_inputs(self, task: Task, examples: Sequence[Example]) -> Any:
        import torch

        texts = [self.query_prefix + self.input_query(task, ex) for ex in examples]
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.input_encoder_tokens, return_tensors="pt"
        ).to(self.device)
        hidden = self.module.input_encoder(**batch).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling), dim=-1)

    def _history_batch(self, task: Task, examples: Sequence[Example]) -> tuple[Any, Any]:
        """Padded history vectors ``[B, n, d]`` and mask ``[B, n]`` from the table."""
        import torch

        rows = [[history_text(task, item) for item in self._history_items(ex)] for ex in examples]
        width = max((len(r) for r in rows), default=0) or 1
        dim = int(self.module.projector[0].in_features)
        history = torch.zeros(len(rows), width, dim)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, texts in enumerate(rows):
            if texts:
                # At generation time an example the runner did not prepare is embedded here; in
                # training every text is already in the table (prepare ran before the loop).
                history[b, : len(texts)] = self.history.lookup(texts, compute_missing=True)
                mask[b, : len(texts)] = True
        return history.to(self.device), mask.to(self.device)

    def soft_tokens(self, task: Task, examples: Sequence[Example]) -> tuple[list[Any], Any]:
        """The ``[I; P]`` (or ``[P]``) vectors per example and the aggregation weights ``[B, n]``."""
        import torch

        self._require_setup()
        history, mask = self._history_batch(task, examples)
        if self.aggregation == "mean":
            weights = mean_weights(mask)
        else:
            query = self._encode_inputs(task, examples)
            weights = attention_weights(query, history, mask, top_k=self.history_top_k)
        projected = self.module.projector(history)
        persona = torch.einsum("bn,bnd->bd", weights, projected)
        if self.scale == "official":
            persona = persona * self.official_scale
        else:
            persona = self._normalised(persona)
        rows = [persona.unsqueeze(1)]
        if self.instruction:
            instruction = self.module.instruction_projector(self.module.instruction_seed.unsqueeze(0))
            if self.scale == "official":
                instruction = instruction / INSTRUCTION_DIVISOR * self.official_scale
            else:
                instruction = self._normalised(instruction)
            rows.insert(0, instruction.unsqueeze(1).expand(len(examples), 1, -1))
        vectors = torch.cat(rows, dim=1)
        return [vectors[b] for b in range(len(examples))], weights

    def _normalised(self, vectors: Any) -> Any:
        """``scale=norm``: unit vectors times the LLM's mean token-embedding norm."""
        import torch

        return torch.nn.functional.normalize(vectors, dim=-1, eps=1e-6) * self.embedding_norm

    def _request(self, task: Task, example: Example, retrieved: Sequence[ProfileItem], vectors: Any) -> GenerationRequest:
        assert self.generator is not None
        tokens = self.generator.tokens
        budget = self.generator.max_input_tokens
        prompt = self.llm_input(example)
        prefix: tuple[Any, ...] = (SoftTokens(vectors),)
        if retrieved:
            room = budget - tokens.count(prompt) - int(vectors.shape[0])
            if room > 0:
                text = task.ppep(retrieved[0])
                if tokens.count(text) > room:
                    text = tokens.truncate(text, room)
                if text.strip():
                    prefix = (text, *prefix)
        return GenerationRequest(
            example.id, prompt, prefix=prefix, choices=task.choices(example), max_new_tokens=task.max_new_tokens
        )

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> GenerationRequest:
        import torch

        self._require_setup()
        was_training = self.module.training
        self.module.eval()
        with torch.no_grad():
            vectors, _ = self.soft_tokens(task, [example])
        self.module.train(was_training)
        return self._request(task, example, retrieved, vectors[0])

    # -- training (the Trainable protocol) ------------------------------------------------------
    def parameters(self) -> Any:
        """The input encoder, the projectors and the instruction seed (never the LLM)."""
        self._require_setup()
        return [p for p in self.module.parameters() if p.requires_grad]

    def training_loss(self, task: Task, examples: Sequence[Example], retrieved: Sequence[Sequence[ProfileItem]]) -> Any:
        """The frozen LLM's token cross-entropy of the gold outputs given ``[I; P]`` + input."""
        self._require_setup()
        assert self.generator is not None
        vectors, _ = self.soft_tokens(task, examples)
        requests = [self._request(task, ex, items, v) for ex, items, v in zip(examples, retrieved, vectors, strict=True)]
        return self.generator.loss(requests, [ex.gold or "" for ex in examples])

    def set_training(self, mode: bool) -> None:
        """Train mode during ``lamp train``, eval otherwise: the input encoder's and, as under the
        official HF Trainer, the frozen LLM's dropout are active while training."""
        self._require_setup()
        self.module.train(mode)
        assert self.generator is not None
        self.generator.set_train_mode(mode)

    def training_examples(self, task: Task, examples: Sequence[Example], seed: int) -> list[Example]:
        """The training set with the official augmentation (``augment`` copies per example with
        more than 2 history items; copies are named ``<id>#aug<j>``)."""
        return augmented(examples, seed, self.augment)

    def official_epochs(self, task: Task) -> int:
        """Epochs of the official run script: LaMP-3 1, every other task 2."""
        return OFFICIAL_EPOCHS.get(task.name, 2)

    def trainable_modules(self) -> list[Any]:
        """The modules holding the trained parameters (for the no-decay groups of AdamW)."""
        self._require_setup()
        return [self.module]

    def state_dict(self) -> dict[str, Any]:
        self._require_setup()
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._require_setup()
        missing, unexpected = self.module.load_state_dict(dict(state), strict=True)
        if missing or unexpected:
            raise lamp_error(
                f"the checkpoint does not match this PPlug configuration (missing "
                f"{len(missing)} tensors, {len(unexpected)} unexpected, e.g. "
                f"{(list(missing) + list(unexpected))[0]})",
                where=f"personalizer {self.name!r}",
                fix="Load it with the personalizer arguments it was trained with.",
            )

    def describe(self) -> Mapping[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "aggregation": self.aggregation,
            "instruction": self.instruction,
            "history_top_k": self.history_top_k,
            "history_size": self.history_size,
            "max_encoder_tokens": self.max_encoder_tokens,
            "input_encoder_tokens": self.input_encoder_tokens or "L+20",
            "scale": self.scale,
            "augment": self.augment,
            "pooling": self.pooling_arg,
            "encoder": self.encoder_spec,
        }
        if self.module is not None:
            info.update(encoder=self.resolved.describe(), pooling=self.pooling, query_prefix=self.query_prefix)
        return info


class PPlugRetrieval(PPlug):
    """``pplug+retrieval``: PPlug with the top-1 retrieved item's PPEP in front of ``[I; P]``."""

    name = "pplug+retrieval"
    needs_retriever = True
    retriever_use = "items"
    default_retriever = "dense"
    default_retriever_args: Mapping[str, str] = {"model": "bge"}


def _official_scale(generator: Generator, embedding_norm: float) -> float:
    """The official multiplier for ``generator``'s model: 539.9738 for FlanT5-XXL, else that
    constant rescaled by the embedding-norm ratio to FlanT5-XXL, taking the constant as FlanT5-XXL's
    typical token-embedding norm, which makes it the model's own mean embedding norm."""
    model = str(generator.describe().get("model", "")).lower()
    return OFFICIAL_SCALE if "flan-t5-xxl" in model else embedding_norm


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _load_encoder(resolved: Any, context: RunContext, device: str) -> tuple[Any, Any]:
    """The frozen HF encoder and its tokenizer, loaded once per process (``context.shared``)."""
    key = ("pplug-encoder", resolved.path, resolved.revision, device)
    if key not in context.shared:
        from transformers import AutoModel, AutoTokenizer

        from lamp_harness import loading_error, pretrained_kwargs

        kwargs = pretrained_kwargs(resolved)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.path, **kwargs)
            model = AutoModel.from_pretrained(resolved.path, **kwargs)
        except OSError as exc:
            raise loading_error(resolved, exc) from exc
        # Sentence vectors come from the token states (CLS or mean pooling); a BERT-style pooler
        # head would be dead weight in the trainable copy.
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        model.to(device).eval().requires_grad_(False)
        context.shared[key] = (model, tokenizer)
    return context.shared[key]


def _history_store(context: RunContext, resolved: Any, pooling: str, max_tokens: int) -> Any:
    """The on-disk store of history vectors: the shared embedding cache under this encoder's
    identity (the dense retrievers reuse it when their settings are the same)."""
    return _EmbeddingStore(context, resolved, pooling, max_tokens)


class _EmbeddingStore:
    """Adapter from :class:`HistoryTable` to :class:`lamp_harness.inputs.cache.EmbeddingCache`."""

    def __init__(self, context: RunContext, resolved: Any, pooling: str, max_tokens: int) -> None:
        from lamp_harness import EmbeddingCache

        self.cache = EmbeddingCache.for_model(
            context, resolved, pooling=pooling, normalize=True, max_tokens=max_tokens, role="document"
        )

    def load(self, keys: Sequence[str]) -> list[Any]:
        return self.cache.get_many(keys)

    def save(self, vectors: Mapping[str, Any]) -> None:
        self.cache.put_many({k: v.numpy() for k, v in vectors.items()})
