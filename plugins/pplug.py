"""PPlug (persona-plug, Liu et al. ACL 2025): a user embedding plugged in front of a frozen LLM.

The method, as REFERENCE §7 describes it:

- a frozen history encoder embeds every profile item once (``h_i``; the last 512 items of the
  profile). The vectors are computed before any training step or generation, in batches, by
  :meth:`PPlug.prepare`, and kept in the embedding cache (in memory per process, and on disk under
  ``$LAMP_HOME`` when the shared embedding cache is available), so training never runs the history
  encoder;
- a trainable input encoder of the same architecture, initialised from the history encoder,
  embeds the input's query text (``task.query``) behind the model's query instruction;
- an input-aware aggregator ``w_i = softmax_i(x · h_i)`` (padding masked) and
  ``P = Σ_i w_i · Proj(h_i)`` with ``Proj`` a Linear → GELU → Linear MLP from the encoder width
  to the LLM's embedding width;
- a trainable instruction embedding ``I`` through its own MLP of the same shape;
- ``[I; P]`` go to the generator as :class:`~lamp_harness.contracts.SoftTokens` in the request
  prefix, in front of the input, each scaled to the LLM's typical token-embedding norm
  (L2-normalised, then multiplied by ``generator.embedding_norm``).

Only the input encoder, the two projectors and the instruction seed train; the LLM is frozen.

Pooling and query instruction follow the encoder model's registered metadata (``bge-base``: CLS
pooling and BGE's instruction, as in the paper). The offline stand-in MiniLM is a mean-pooling
model with no instruction, so by default it is used the way it was trained (mean pooling, no
prefix); ``pooling=cls`` and ``query_prefix=...`` force the paper's settings on any model.

Arguments (``--personalizer-arg k=v``):

- ``encoder``: the encoder model (alias, hub id or folder); default: the preset's ``bge`` role;
- ``pooling``: ``model`` (default: the model's metadata, CLS when it has none), ``cls`` or ``mean``;
- ``query_prefix``: the instruction in front of the input's query (default: the model's metadata,
  BGE's instruction when the model has none);
- ``aggregation``: ``input`` (default, input-aware softmax) or ``mean`` (ablation: plain mean);
- ``instruction``: ``true`` (default) or ``false`` (ablation: no instruction embedding ``I``);
- ``history_top_k``: ``0`` (default, all items) or K (ablation "with selection": only the top-K
  items by ``w_i``, softmax renormalised over them);
- ``history_size``: the most recent items of the profile used (default 512);
- ``max_encoder_tokens``: encoder input length (default 512);
- ``encode_batch_size``: batch size of the history precomputation (default 64).

PPlug + retrieval: when the cell has a retriever, the top-1 retrieved item's PPEP (REFERENCE §4)
goes as text in front of ``[I; P]``: prefix ``(ppep, SoftTokens([I; P]))``. The PPEP is cut to
the prompt budget left after the input (``generator.max_input_tokens`` minus the input's tokens
and the soft tokens). ``pplug+retrieval`` is the same method with the preset's BGE-style dense
retriever as its default retriever.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from lamp_plugins.encoders import pool

from lamp_harness.contracts import (
    Example,
    GenerationRequest,
    Generator,
    Personalizer,
    ProfileItem,
    RunContext,
    SoftTokens,
    Task,
)
from lamp_harness.errors import lamp_error
from lamp_harness.options import bool_arg, int_arg, reject_unknown_args

BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
_ARGS = {"encoder", "pooling", "query_prefix", "aggregation", "instruction", "history_top_k",
         "history_size", "max_encoder_tokens", "encode_batch_size"}


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

    return torch.nn.Sequential(torch.nn.Linear(width_in, width_out), torch.nn.GELU(),
                               torch.nn.Linear(width_out, width_out))


def _build_module(encoder: Any, encoder_width: int, llm_width: int, instruction: bool) -> Any:
    """The trainable part of PPlug as one ``nn.Module`` (its ``state_dict`` is the checkpoint)."""
    import torch

    module = torch.nn.Module()
    if encoder is not None:
        module.input_encoder = encoder
    module.projector = _mlp(encoder_width, llm_width)
    if instruction:
        # A random (not zero) seed: a zero soft token has no direction to normalise.
        module.instruction_seed = torch.nn.Parameter(torch.randn(encoder_width) * encoder_width ** -0.5)
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

    def __init__(self, encoder: Any, tokenizer: Any, *, pooling: str, max_tokens: int,
                 batch_size: int, device: str, store: Any = None) -> None:
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
            batch = missing[start:start + self.batch_size]
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
            batch = self.tokenizer(list(texts), padding=True, truncation=True,
                                   max_length=self.max_tokens, return_tensors="pt").to(self.device)
            hidden = self.encoder(**batch).last_hidden_state
            self.forward_passes += 1
            vectors = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling),
                                                    dim=-1)
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
    """``pplug``: a frozen-LLM personalizer driven by a learned user embedding (REFERENCE §7)."""

    name = "pplug"
    needs_retriever = False
    accepts_retriever = True
    trainable = True

    def __init__(self, context: RunContext, **args: str) -> None:
        owner = f"personalizer {self.name!r}"
        reject_unknown_args(args, _ARGS, owner)
        self.context = context
        self.encoder_spec = args.get("encoder") or None
        self.pooling_arg = (args.get("pooling") or "model").strip().lower()
        if self.pooling_arg not in ("model", "cls", "mean"):
            raise lamp_error(f"argument pooling={self.pooling_arg!r} is not model, cls or mean",
                             where=owner, fix="Pass pooling=cls (the paper) or pooling=mean.")
        self.query_prefix_arg = args.get("query_prefix")
        self.aggregation = (args.get("aggregation") or "input").strip().lower()
        if self.aggregation not in ("input", "mean"):
            raise lamp_error(f"argument aggregation={self.aggregation!r} is not input or mean",
                             where=owner, fix="Pass aggregation=input (PPlug) or aggregation=mean "
                                              "(the plain-mean ablation).")
        self.instruction = bool_arg(args, "instruction", True, owner)
        self.history_top_k = int_arg(args, "history_top_k", 0, owner)
        self.history_size = int_arg(args, "history_size", 512, owner, minimum=1)
        self.max_encoder_tokens = int_arg(args, "max_encoder_tokens", 512, owner, minimum=8)
        self.encode_batch_size = int_arg(args, "encode_batch_size", 64, owner, minimum=1)
        if self.aggregation == "mean" and self.history_top_k:
            raise lamp_error("history_top_k selects items by the input-aware weights, which "
                             "aggregation=mean does not compute", where=owner,
                             fix="Use one ablation at a time.")
        self.module: Any = None
        self.generator: Generator | None = None

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, task: Task, generator: Generator, context: RunContext) -> None:
        """Load the encoder (once per process), build the trainable module for ``generator``."""
        import torch

        from lamp_harness.models import resolve_model

        if self.module is not None and self.generator is generator:
            return
        self.generator = generator
        self.task = task
        self.device = resolve_device(context.device)
        self.resolved = resolve_model("bge", context, self.encoder_spec)
        meta = self.resolved.metadata
        self.pooling = (str(meta.get("pooling") or "cls") if self.pooling_arg == "model"
                        else self.pooling_arg)
        if self.pooling not in ("cls", "mean"):
            self.pooling = "cls"
        if self.query_prefix_arg is not None:
            self.query_prefix = self.query_prefix_arg
        else:
            self.query_prefix = str(meta["query_prefix"]) if "query_prefix" in meta else BGE_QUERY_PREFIX
        frozen, tokenizer = _load_encoder(self.resolved, context, self.device)
        self.tokenizer = tokenizer
        key = ("pplug-history", self.resolved.path, self.resolved.revision, self.pooling,
               self.max_encoder_tokens)
        if key not in context.shared:
            context.shared[key] = HistoryTable(
                frozen, tokenizer, pooling=self.pooling, max_tokens=self.max_encoder_tokens,
                batch_size=self.encode_batch_size, device=self.device,
                store=_history_store(context, self.resolved, self.pooling, self.max_encoder_tokens))
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

    def prepare(self, task: Task, examples: Sequence[Example]) -> None:
        """Embed every history item of ``examples`` (batched; already known ones are skipped)."""
        self._require_setup()
        texts = list(dict.fromkeys(task.document(item) for ex in examples
                                   for item in self._history_items(ex)))
        missing = [t for t in texts if HistoryTable.key(t) not in self.history.vectors]
        if not missing:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=True) as bar:
            tid = bar.add_task("PPlug: embedding history items", total=len(missing))
            self.history.ensure(missing, progress=lambda n: bar.advance(tid, n))

    # -- the method -----------------------------------------------------------------------------
    def _require_setup(self) -> None:
        if self.module is None:
            raise RuntimeError("PPlug.setup(task, generator, context) must be called first")

    def _history_items(self, example: Example) -> tuple[ProfileItem, ...]:
        return example.profile[-self.history_size:]

    def _encode_inputs(self, task: Task, examples: Sequence[Example]) -> Any:
        import torch

        texts = [self.query_prefix + task.query(ex) for ex in examples]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_encoder_tokens,
                               return_tensors="pt").to(self.device)
        hidden = self.module.input_encoder(**batch).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling), dim=-1)

    def _history_batch(self, task: Task, examples: Sequence[Example]) -> tuple[Any, Any]:
        """Padded history vectors ``[B, n, d]`` and mask ``[B, n]`` from the table."""
        import torch

        rows = [[task.document(item) for item in self._history_items(ex)] for ex in examples]
        width = max((len(r) for r in rows), default=0) or 1
        dim = int(self.module.projector[0].in_features)
        history = torch.zeros(len(rows), width, dim)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, texts in enumerate(rows):
            if texts:
                # At generation time an example the runner did not prepare is embedded here; in
                # training every text is already in the table (prepare ran before the loop).
                history[b, :len(texts)] = self.history.lookup(texts, compute_missing=True)
                mask[b, :len(texts)] = True
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
        persona = self._scale(torch.einsum("bn,bnd->bd", weights, projected))
        rows = [persona.unsqueeze(1)]
        if self.instruction:
            seed = self.module.instruction_seed.unsqueeze(0)
            instruction = self._scale(self.module.instruction_projector(seed))
            rows.insert(0, instruction.unsqueeze(1).expand(len(examples), 1, -1))
        vectors = torch.cat(rows, dim=1)
        return [vectors[b] for b in range(len(examples))], weights

    def _scale(self, vectors: Any) -> Any:
        import torch

        return torch.nn.functional.normalize(vectors, dim=-1, eps=1e-6) * self.embedding_norm

    def _request(self, task: Task, example: Example, retrieved: Sequence[ProfileItem],
                 vectors: Any) -> GenerationRequest:
        assert self.generator is not None
        tokens = self.generator.tokens
        budget = self.generator.max_input_tokens
        prompt = task.prompt(example, (), tokens, budget)
        prefix: tuple[Any, ...] = (SoftTokens(vectors),)
        if retrieved:
            room = budget - tokens.count(prompt) - int(vectors.shape[0])
            if room > 0:
                text = task.ppep(retrieved[0])
                if tokens.count(text) > room:
                    text = tokens.truncate(text, room)
                if text.strip():
                    prefix = (text, *prefix)
        return GenerationRequest(example.id, prompt, prefix=prefix, choices=task.labels,
                                 max_new_tokens=task.max_new_tokens)

    def personalize(self, task: Task, example: Example,
                    retrieved: Sequence[ProfileItem]) -> GenerationRequest:
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

    def training_loss(self, task: Task, examples: Sequence[Example],
                      retrieved: Sequence[Sequence[ProfileItem]]) -> Any:
        """The frozen LLM's token cross-entropy of the gold outputs given ``[I; P]`` + input."""
        self._require_setup()
        assert self.generator is not None
        vectors, _ = self.soft_tokens(task, examples)
        requests = [self._request(task, ex, items, v)
                    for ex, items, v in zip(examples, retrieved, vectors, strict=True)]
        return self.generator.loss(requests, [ex.gold or "" for ex in examples])

    def set_training(self, mode: bool) -> None:
        """Train mode (dropout in the input encoder) during ``lamp train``, eval otherwise."""
        self._require_setup()
        self.module.train(mode)

    def state_dict(self) -> dict[str, Any]:
        self._require_setup()
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._require_setup()
        missing, unexpected = self.module.load_state_dict(dict(state), strict=True)
        if missing or unexpected:
            raise lamp_error(f"the checkpoint does not match this PPlug configuration (missing "
                             f"{len(missing)} tensors, {len(unexpected)} unexpected, e.g. "
                             f"{(list(missing) + list(unexpected))[0]})", where=f"personalizer {self.name!r}",
                             fix="Load it with the personalizer arguments it was trained with.")

    def describe(self) -> Mapping[str, Any]:
        info: dict[str, Any] = {
            "name": self.name, "aggregation": self.aggregation, "instruction": self.instruction,
            "history_top_k": self.history_top_k, "history_size": self.history_size,
            "max_encoder_tokens": self.max_encoder_tokens, "pooling": self.pooling_arg,
            "encoder": self.encoder_spec}
        if self.module is not None:
            info.update(encoder=self.resolved.describe(), pooling=self.pooling,
                        query_prefix=self.query_prefix)
        return info


class PPlugRetrieval(PPlug):
    """``pplug+retrieval``: PPlug with the top-1 retrieved item's PPEP in front of ``[I; P]``."""

    name = "pplug+retrieval"
    needs_retriever = True
    default_retriever = "dense"
    default_retriever_args: Mapping[str, str] = {"model": "bge"}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _load_encoder(resolved: Any, context: RunContext, device: str) -> tuple[Any, Any]:
    """The frozen HF encoder and its tokenizer, loaded once per process (``context.shared``)."""
    key = ("pplug-encoder", resolved.path, resolved.revision, device)
    if key not in context.shared:
        from transformers import AutoModel, AutoTokenizer

        from lamp_harness.models import loading_error, pretrained_kwargs

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
    """Adapter from :class:`HistoryTable` to :class:`lamp_harness.cache.EmbeddingCache`."""

    def __init__(self, context: RunContext, resolved: Any, pooling: str, max_tokens: int) -> None:
        from lamp_harness.cache import EmbeddingCache

        self.cache = EmbeddingCache.for_model(context, resolved, pooling=pooling, normalize=True,
                                              max_tokens=max_tokens, role="document")

    def load(self, keys: Sequence[str]) -> list[Any]:
        return self.cache.get_many(keys)

    def save(self, vectors: Mapping[str, Any]) -> None:
        self.cache.put_many({k: v.numpy() for k, v in vectors.items()})
