"""The ``hf`` generator: any transformers model (alias, hub id or local folder) behind the Generator contract.

Encoder-decoder (T5, FlanT5, BART...) and decoder-only (Llama, SmolLM2...) models are told apart by
their config. One generator serves every kind of request:

- plain prompts (IPA, none): greedy or beam search, batched by length with the original order kept;
- label scoring (``decode="labels"``): every label's summed log-likelihood given the prompt, the
  prompt computed once per request (encoder states or the decoder's KV cache) and reused for all
  labels;
- prefixes of text and soft vectors (PPlug): placed in front of the prompt's token embeddings
  (for chat models inside the user turn, just before the prompt text) and run from
  ``inputs_embeds``;
- fusion-in-decoder (FiD): each passage encoded separately, the encoder states concatenated along
  the sequence axis, the decoder attending to all of them (encoder-decoder models only).

Arguments (``--generator-arg KEY=VALUE``; all optional):

===================  ==========================================================================
``model``            alias, hub id or local folder (default: the preset's generator)
``device``           ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``
``dtype``            ``auto`` (bf16 on a GPU that supports it, else fp32), ``float32``,
                     ``bfloat16``, ``float16``
``num_beams``        beam width (default 4 as in both papers; 1 = greedy; the offline preset
                    defaults to 1 on CPU)
``max_input_tokens`` tokens of prompt text the model sees (default 256; special and chat-template
                     tokens and soft/prefix tokens come on top)
``max_new_tokens``   generation budget when a request sets none (default 128); given
                     explicitly, also a cap on a task's own budget (LaMP-QA asks for 4,096)
``batch_size``       an integer, or ``auto`` (default): the largest that fits, found by halving on
                     out-of-memory (starts at 8 on CPU, 64 on a GPU)
``chat_template``    ``true`` (default): wrap prompts in the tokenizer's chat template when a
                     decoder-only model has one; ``false``: feed the raw prompt
===================  ==========================================================================

Any other key is passed through, like lm-eval's ``--model_args``: a key that names a
``GenerationConfig`` field (``length_penalty``, ``no_repeat_ngram_size``, ``repetition_penalty``...)
goes to ``generate``; anything else (``attn_implementation``, ``trust_remote_code``,
``device_map``...) goes to ``from_pretrained``. Prefix a key with ``generate.`` or ``load.`` to
choose explicitly. Values are parsed as int, float, ``true``/``false``/``none`` or kept as text.
A ``temperature`` above 0 without ``do_sample`` samples (nucleus sampling with ``top_p``), as a
temperature does on vLLM and OpenAI-compatible servers.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from lamp_harness import (
    DecodeMode,
    Generation,
    GenerationRequest,
    Generator,
    HFTokenCounter,
    Options,
    ResolvedModel,
    RunContext,
    SoftTokens,
    lamp_error,
    loading_error,
    option,
    preset_generator_args,
    pretrained_kwargs,
    resolve_model,
)

OWNER = "generator 'hf'"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
_AUTO_START = {"cpu": 8, "mps": 16, "cuda": 64}


@dataclass(frozen=True)
class HFOptions(Options):
    """The ``hf`` generator's options (``--generator-arg``; ``--batch-size``, ``--num-beams`` and
    ``--max-input-tokens`` set the options of the same names)."""

    passthrough: ClassVar[str] = (
        "any other KEY=VALUE goes to from_pretrained, or to generate when it is a generation setting "
        "(load.KEY / generate.KEY say which)"
    )

    device: str | None = option(None, "auto, cpu, cuda, cuda:N or mps (unset: the run's --device)")
    dtype: str = option("auto", "weights' dtype", choices=("auto", *_DTYPES))
    num_beams: int = option(4, "beam width (1: greedy)", minimum=1)
    max_input_tokens: int = option(256, "the prompt budget L in tokens", minimum=1)
    max_new_tokens: int = option(128, "new tokens per answer (also caps a task's own budget)", minimum=1)
    batch_size: int | str = option(
        "auto", "prompts per generate call (auto: the largest that fits)", minimum=1, words=("auto",)
    )
    chat_template: bool = option(True, "wrap prompts in the model's chat template when it has one")


KNOWN_ARGS = HFOptions.names()
_MARKER = "<<<LAMP-PROMPT-MARKER>>>"


# ---------------------------------------------------------------------------------------------
# Argument handling
# ---------------------------------------------------------------------------------------------


def _literal(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def split_passthrough(
    args: Mapping[str, Any], first: str, second: str, second_fields: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass-through arguments -> (``first`` kwargs, ``second`` kwargs): ``first.x`` and
    ``second.x`` say where ``x`` goes; a bare key goes to ``second`` when it is one of
    ``second_fields``, else to ``first``. Values are parsed as Python literals where they are."""
    firsts: dict[str, Any] = {}
    seconds: dict[str, Any] = {}
    for key, value in args.items():
        if key.startswith(f"{first}."):
            firsts[key[len(first) + 1 :]] = _literal(value)
        elif key.startswith(f"{second}.") or key in second_fields:
            seconds[key.removeprefix(f"{second}.")] = _literal(value)
        else:
            firsts[key] = _literal(value)
    return firsts, seconds


def _split_extra(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass-through arguments -> (from_pretrained kwargs, generate kwargs)."""
    from transformers import GenerationConfig

    return split_passthrough(args, "load", "generate", set(GenerationConfig().to_dict()))


def _pick_device(requested: str) -> str:
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise lamp_error(
            f"argument device={requested!r} is not a torch device",
            where=OWNER,
            fix="Pass device=auto, cpu, cuda, cuda:1 or mps.",
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise lamp_error(
            f"device={requested!r} was asked for but CUDA is not available here",
            where=OWNER,
            fix="Pass device=cpu or device=auto.",
        )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise lamp_error(
            f"device={requested!r} was asked for but MPS is not available here",
            where=OWNER,
            fix="Pass device=cpu or device=auto.",
        )
    return requested


def _pick_dtype(requested: str, device: str, encoder_decoder: bool) -> torch.dtype:
    if requested != "auto":
        return _DTYPES[requested]
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        # T5-family activations overflow in fp16; decoder-only models are fine in it.
        return torch.float32 if encoder_decoder else torch.float16
    return torch.float32


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------
# Loading (cached per process in context.shared)
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A loaded model and tokenizer, shared by every generator built on the same weights."""

    model: Any
    tokenizer: Any
    encoder_decoder: bool
    dtype: torch.dtype
    commit: str | None


def load_model(
    context: RunContext, resolved: ResolvedModel, device: str, dtype: str, loader_args: Mapping[str, Any]
) -> LoadedModel:
    """Load (or reuse from ``context.shared``) the model and tokenizer behind ``resolved``.

    ``dtype`` is a name or ``auto`` (decided once the config says which family the model is).
    Hub ids that are neither cached nor reachable fail at once in one line (see
    :func:`lamp_harness.inputs.models.pretrained_kwargs`).
    """
    key = (
        "hf-generator",
        resolved.path,
        resolved.revision,
        dtype,
        device,
        tuple(sorted((k, repr(v)) for k, v in loader_args.items())),
    )
    if key in context.shared:
        return context.shared[key]

    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hub = pretrained_kwargs(resolved)
    remote = {k: loader_args[k] for k in ("trust_remote_code",) if k in loader_args}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # a per-load bar would clutter the run's own progress
    try:
        config = AutoConfig.from_pretrained(resolved.path, **hub, **remote)
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        torch_dtype = _pick_dtype(dtype, device, encoder_decoder)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **hub, **remote)
        cls = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
        model = cls.from_pretrained(resolved.path, dtype=torch_dtype, **hub, **dict(loader_args))
    except OSError as exc:
        raise loading_error(resolved, exc) from None
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc) or "Unrecognized model" in str(exc):
            raise lamp_error(
                f"model {resolved.name!r} ({resolved.source}) is not a text generation model transformers can load",
                where=OWNER,
                fix="Give a causal LM or an encoder-decoder (seq2seq) model.",
            ) from None
        raise
    except TypeError as exc:
        if loader_args:
            raise lamp_error(
                f"model {resolved.name!r} rejected the loader argument(s) "
                f"{', '.join(sorted(loader_args))}: {' '.join(str(exc).split())}",
                where=OWNER,
                fix="Drop or fix those --generator-arg keys.",
            ) from None
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
    if "device_map" not in loader_args:
        model.to(device)
    model.eval()
    # Frozen by default: PPlug and FiD training only need gradients through the inputs.
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = LoadedModel(model, tokenizer, encoder_decoder, torch_dtype, getattr(config, "_commit_hash", None))
    context.shared[key] = loaded
    return loaded


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


@dataclass
class _Encoded:
    """A request turned into pieces: one sequence, or one per passage for FiD. A piece is a run
    of token ids (``list[int]``) or soft vectors (a ``[n, hidden]`` tensor)."""

    sequences: list[list[Any]]
    length: int
    fusion: bool = False


class RequestEncoding:
    """Requests -> token pieces for decoder-only and encoder-decoder models: the chat template, the
    tokenizer's special tokens, the prompt budget, prefix segments and label targets.

    Shared by every generator that tokenizes with a transformers tokenizer (``hf``, ``vllm``), so
    that they all feed the model the very same tokens. A host class sets ``tokenizer``,
    ``generation_config``, ``max_new_tokens``, ``_chat``, ``_head``, ``_tail`` and ``_eos_ids``
    (see :meth:`_init_encoding`) and provides ``tokens``, ``max_input_tokens``,
    ``is_encoder_decoder`` and ``embedding_width``.
    """

    tokenizer: Any
    generation_config: Any
    max_new_tokens: int
    use_chat_template: bool

    def _init_encoding(self) -> None:
        self._chat = self._chat_parts() if self.use_chat_template else None
        self._head, self._tail = self._special_frame()
        self._eos_ids = self._eos_token_ids()

    def _chat_parts(self) -> tuple[str, str] | None:
        if self.is_encoder_decoder or not getattr(self.tokenizer, "chat_template", None):
            return None
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": _MARKER}], tokenize=False, add_generation_prompt=True
        )
        before, found, after = str(text).partition(_MARKER)
        return (before, after) if found else None

    def _special_frame(self) -> tuple[list[int], list[int]]:
        """The special ids the tokenizer puts around a text (e.g. ``[BOS]`` and ``[]``, or ``[]``
        and ``[</s>]``), found by tokenizing a probe with and without them."""
        probe = "hello"
        bare = self._ids(probe)
        full = list(self.tokenizer(probe, add_special_tokens=True)["input_ids"])
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return full[:start], full[start + len(bare) :]
        return [], []

    def _eos_token_ids(self) -> list[int]:
        ids: list[int] = []
        configured = getattr(self.generation_config, "eos_token_id", None)
        for value in configured if isinstance(configured, list) else [configured]:
            if value is not None:
                ids.append(int(value))
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.insert(0, int(self.tokenizer.eos_token_id))
        return ids

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _prefix_pieces(self, request: GenerationRequest) -> list[Any]:
        pieces: list[Any] = []
        for segment in request.prefix:
            if isinstance(segment, SoftTokens):
                vectors = segment.vectors
                if vectors.ndim != 2 or vectors.shape[-1] != self.embedding_width:
                    raise ValueError(
                        f"soft tokens of shape {tuple(vectors.shape)} do not fit the "
                        f"model's embedding width {self.embedding_width}"
                    )
                pieces.append(vectors)
            elif segment:
                pieces.append(self._ids(segment))
        return pieces

    def _text_sequence(self, text: str, prefix: list[Any]) -> list[Any]:
        if self._chat is not None:
            before, after = self._chat
            if self.tokens.count(text) > self.max_input_tokens:
                text = self.tokens.truncate(text, self.max_input_tokens)
            if not prefix:
                return [self._ids(before + text + after)]
            return [self._ids(before), *prefix, self._ids(text + after)]
        budget = max(1, self.max_input_tokens - len(self._head) - len(self._tail))
        body = self._ids(text)[:budget]
        return [p for p in (list(self._head), *prefix, body + list(self._tail)) if len(p)]

    def _encode(self, request: GenerationRequest) -> _Encoded:
        prefix = self._prefix_pieces(request)
        texts = request.passages if request.is_fusion else (request.prompt,)
        sequences = [self._text_sequence(t, prefix) for t in texts]
        return _Encoded(
            sequences,
            sum(len(p) if isinstance(p, list) else int(p.shape[0]) for seq in sequences for p in seq),
            request.is_fusion,
        )

    def _target_ids(self, text: str) -> list[int]:
        if self.is_encoder_decoder:
            # The seq2seq convention: targets tokenized with the tokenizer's own special tokens,
            # truncated by the tokenizer itself so that a long target keeps its end token (as the
            # official ``tokenizer(output, max_length=..., truncation=True)`` does).
            return list(
                self.tokenizer(text, max_length=max(self.max_new_tokens, 2), truncation=True, verbose=False)["input_ids"]
            )
        return self._ids(text)[: self.max_new_tokens - 1] + [self._eos_ids[0]]


class HFGenerator(RequestEncoding, Generator):
    """Any transformers causal LM or seq2seq model as a lamp-harness generator (see module doc)."""

    name = "hf"
    serves_adapters = True
    options = HFOptions
    MAX_LOADED_ADAPTERS = 32
    """LoRA adapters kept loaded on the model at once (the least recently used one is dropped)."""

    def __init__(
        self,
        context: RunContext,
        model: str | None = None,
        *,
        batch_size: Any = None,
        num_beams: Any = None,
        max_input_tokens: Any = None,
        max_new_tokens: Any = None,
        **args: Any,
    ) -> None:
        self.context = context
        self.resolved = resolve_model("generator", context, model)
        # The run-level settings arrive as declared keywords (see lamp_harness.plugin.options.RUN_LEVEL_ARGS).
        run_level = {
            k: v
            for k, v in (
                ("batch_size", batch_size),
                ("num_beams", num_beams),
                ("max_input_tokens", max_input_tokens),
                ("max_new_tokens", max_new_tokens),
            )
            if v is not None
        }
        self.init_args = {**run_level, **args}  # what on_base() builds its generator with
        args = {**preset_generator_args(context.preset), **run_level, **args}
        known = {k: v for k, v in args.items() if k in KNOWN_ARGS}
        self.loader_args, self.generate_args = _split_extra({k: v for k, v in args.items() if k not in KNOWN_ARGS})
        opts = HFOptions.parse(known, OWNER)
        self.device = _pick_device(str(context.device if opts.device is None else opts.device))
        self.num_beams = opts.num_beams
        self._max_input_tokens = opts.max_input_tokens
        self.max_new_tokens = opts.max_new_tokens
        # Given explicitly, it also caps a task's own budget (LaMP-QA asks for 4,096 tokens).
        self.max_new_tokens_cap = self.max_new_tokens if "max_new_tokens" in known else None
        self.use_chat_template = opts.chat_template
        self.auto_batch = opts.batch_size == "auto"
        self.batch_size = _AUTO_START.get(self.device.split(":")[0], 8) if self.auto_batch else int(opts.batch_size)
        dtype = opts.dtype
        self.loaded = load_model(context, self.resolved, self.device, dtype, self.loader_args)
        self.dtype = self.loaded.dtype
        self.model = self.loaded.model
        self.tokenizer = self.loaded.tokenizer
        self.generation_config = self.model.generation_config
        self._counter = HFTokenCounter(self.tokenizer)
        self._init_encoding()

    # -- contract -------------------------------------------------------------------------------
    @property
    def tokens(self) -> HFTokenCounter:
        """The model's tokenizer as a token counter (no special tokens counted)."""
        return self._counter

    @property
    def is_encoder_decoder(self) -> bool:
        return self.loaded.encoder_decoder

    @property
    def max_input_tokens(self) -> int:
        """The prompt budget (``max_input_tokens`` argument, default 256)."""
        return self._max_input_tokens

    @property
    def model_device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def describe(self) -> Mapping[str, Any]:
        """Model alias, source, revision, dtype, device, family and decoding settings."""
        return {
            "name": self.name,
            "model": self.resolved.alias or self.resolved.name,
            "source": self.resolved.source,
            "revision": self.resolved.revision or self.loaded.commit,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.model_device),
            "family": "encoder-decoder" if self.is_encoder_decoder else "decoder-only",
            "num_beams": self.num_beams,
            "max_input_tokens": self.max_input_tokens,
            "max_new_tokens": self.max_new_tokens,
            **({"max_new_tokens_cap": self.max_new_tokens_cap} if self.max_new_tokens_cap else {}),
            "chat_template": self._chat is not None,
            "substitutes": self.resolved.substitutes,
            **({"loader_args": dict(self.loader_args)} if self.loader_args else {}),
            **({"generate_args": dict(self.generate_args)} if self.generate_args else {}),
        }

    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        """One generation per request, in order. ``decode="labels"`` picks, for requests with
        ``choices``, the label with the highest summed log-likelihood (others are generated)."""
        if not requests:
            return []
        adapters = list(dict.fromkeys(r.adapter for r in requests))
        if adapters != [None]:
            # Questions grouped by adapter (per-user LoRA): each adapter is switched on once for
            # its requests, on the same base model (never reloaded); an adapter trained on a
            # merged model folder (its config names it) is answered on that model (on_base).
            results: list[Generation | None] = [None] * len(requests)
            for adapter in adapters:
                idx = [i for i, r in enumerate(requests) if r.adapter == adapter]
                base = self._base_of(adapter)
                if base is not self:
                    answers = base.generate([requests[i] for i in idx], decode=decode)
                else:
                    with self._adapter(adapter):
                        answers = self._generate([requests[i] for i in idx], decode)
                for i, gen in zip(idx, answers, strict=True):
                    results[i] = gen
            return [r for r in results if r is not None]
        with self._adapter(None):
            return self._generate(requests, decode)

    def _generate(self, requests: Sequence[GenerationRequest], decode: DecodeMode) -> list[Generation]:
        self._check_fusion(requests)
        encoded = [self._encode(r) for r in requests]
        results: list[Generation | None] = [None] * len(requests)
        if decode == "labels":
            scored = [i for i, r in enumerate(requests) if r.choices]
            self._batched(
                scored,
                encoded,
                lambda idx: self._score_labels([requests[i] for i in idx], [encoded[i] for i in idx]),
                results,
                group=lambda i: len(requests[i].choices),
            )
        todo = [i for i in range(len(requests)) if results[i] is None]
        budget = {
            i: min(requests[i].max_new_tokens or self.max_new_tokens, self.max_new_tokens_cap or 1 << 30) for i in todo
        }
        self._batched(
            todo,
            encoded,
            lambda idx: self._generate_batch([encoded[i] for i in idx], budget[idx[0]]),
            results,
            group=lambda i: budget[i],
        )
        return [r for r in results if r is not None]

    def loss(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> torch.Tensor:
        """Mean token cross-entropy of ``targets`` (each followed by end-of-sequence) given the
        requests; prompt tokens are masked out; soft tokens keep their graph."""
        if len(requests) != len(targets):
            raise ValueError(f"{len(requests)} requests but {len(targets)} targets")
        self._check_fusion(requests)
        encoded = [self._encode(r) for r in requests]
        target_ids = [self._target_ids(t) for t in targets]
        device = self.model_device
        if self.is_encoder_decoder:
            inputs = self._encoder_inputs(encoded)
            labels = _pad([torch.tensor(t) for t in target_ids], -100).to(device)
            return self.model(**inputs, labels=labels).loss
        sequences = [[*e.sequences[0], list(t)] for e, t in zip(encoded, target_ids, strict=True)]
        batch = self._assemble(sequences, pad_left=True)
        width = batch["attention_mask"].shape[1]
        labels = torch.full((len(sequences), width), -100, dtype=torch.long)
        for row, t in enumerate(target_ids):
            labels[row, width - len(t) :] = torch.tensor(t)
        return self.model(**batch, labels=labels.to(device)).loss

    @property
    def embedding_width(self) -> int:
        """Width of the input token embeddings (the size soft tokens must have)."""
        return int(self.model.get_input_embeddings().embedding_dim)

    @property
    def embedding_norm(self) -> float:
        """Mean L2 norm of the rows the input embedding layer produces (scale included)."""
        if not hasattr(self, "_embedding_norm"):
            layer = self.model.get_input_embeddings()
            scale = float(getattr(layer, "embed_scale", 1.0) or 1.0)
            with torch.no_grad():
                norms = layer.weight.float().norm(dim=-1)
            self._embedding_norm = float(norms.mean()) * scale
        return self._embedding_norm

    def input_embeddings(self) -> torch.Tensor:
        """The loaded model's input-embedding matrix (scale included), detached."""
        layer = self.model.get_input_embeddings()
        scale = float(getattr(layer, "embed_scale", 1.0) or 1.0)
        return layer.weight.detach() * scale if scale != 1.0 else layer.weight.detach()

    def trainable_module(self) -> torch.nn.Module:
        """The model, unfrozen for fine-tuning. It is dropped from the shared model cache so that
        other cells of the run never see fine-tuned weights."""
        for key, value in list(self.context.shared.items()):
            if value is self.loaded:
                del self.context.shared[key]
        self.model.requires_grad_(True)
        return self.model

    def set_train_mode(self, mode: bool) -> None:
        """Train mode (dropout on) or eval mode; the weights stay frozen."""
        self.model.train(mode)

    def adapter_module(self) -> torch.nn.Module:
        """The shared, frozen model: LoRA adapters are added to it, trained, saved and deleted
        (see :mod:`lamp_plugins.lora`), so its base weights never change."""
        return self.model

    # -- per-user LoRA adapters -----------------------------------------------------------------
    def on_base(self, folder: str | Path) -> HFGenerator:
        """This generator's settings on the model in ``folder`` (e.g. a task LoRA merged into
        this model, OPPU's stage 1): built once per run, and the same object every time, so the
        adapters trained on it and the questions answered with them share one loaded model. One
        such model is kept at a time (asking for another releases the previous one)."""
        path = str(Path(folder).resolve())
        if path == str(Path(self.resolved.path).resolve()):
            return self
        key = ("hf-on-base", path, tuple(sorted((k, repr(v)) for k, v in self.init_args.items())))
        if key not in self.context.shared:
            for other in [k for k in self.context.shared if isinstance(k, tuple) and k[:1] == ("hf-on-base",)]:
                held = self.context.shared.pop(other)
                for cached in [k for k, v in self.context.shared.items() if v is held.loaded]:
                    del self.context.shared[cached]
            self.context.shared[key] = HFGenerator(self.context, path, **self.init_args)
        return self.context.shared[key]

    def _base_of(self, adapter: str | None) -> HFGenerator:
        """The generator that answers with ``adapter``: this one, or :meth:`on_base` of the merged
        model the adapter was trained on."""
        from lamp_plugins import lora

        base = lora.local_base(adapter) if adapter else None
        return self if base is None else self.on_base(base)

    @contextlib.contextmanager
    def _adapter(self, folder: str | None) -> Any:
        """The model answering with the LoRA adapter in ``folder`` (loaded once, by name; the
        least recently used beyond :attr:`MAX_LOADED_ADAPTERS` is deleted), or with no adapter."""
        from lamp_plugins import lora

        loaded: dict[str, str] = self.__dict__.setdefault("_adapters", {})
        if folder is None:
            if loaded:
                lora.activate(self.model, None)
            yield
            return
        key = str(Path(folder).resolve())
        name = loaded.pop(key, None)
        if name is None:
            if not (Path(key) / lora.CONFIG_FILE).is_file():
                raise lamp_error(
                    f"{folder}: no LoRA adapter here ({lora.CONFIG_FILE} is missing)",
                    where=OWNER,
                    fix="Train the adapter again (its folder is incomplete).",
                )
            while len(loaded) >= self.MAX_LOADED_ADAPTERS:
                lora.delete(self.model, loaded.pop(next(iter(loaded))))
            name = "lamp_" + hashlib.sha256(key.encode()).hexdigest()[:16]
            lora.load(self.model, Path(key), name)
        loaded[key] = name  # most recently used last
        lora.activate(self.model, name)
        try:
            yield
        finally:
            lora.activate(self.model, None)

    # -- requests -> token pieces ---------------------------------------------------------------
    def _check_fusion(self, requests: Sequence[GenerationRequest]) -> None:
        if not self.is_encoder_decoder and any(r.is_fusion for r in requests):
            raise lamp_error(
                f"the personalizer 'fid' (fusion-in-decoder) needs an encoder-decoder "
                f"model, and {self.resolved.name!r} is decoder-only",
                where=OWNER,
                fix="Use an encoder-decoder generator, e.g. --generator google/flan-t5-base.",
            )

    # -- pieces -> tensors ----------------------------------------------------------------------
    def _assemble(self, sequences: Sequence[Sequence[Any]], *, pad_left: bool) -> dict[str, torch.Tensor]:
        """Pad sequences of pieces into ``input_ids`` (all text) or ``inputs_embeds`` (any soft
        piece), with the attention mask and, for decoder-only models, position ids."""
        device = self.model_device
        lengths = [sum(len(p) if isinstance(p, list) else int(p.shape[0]) for p in seq) for seq in sequences]
        width = max(lengths)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, n in enumerate(lengths):
            if pad_left:
                mask[row, width - n :] = 1
            else:
                mask[row, :n] = 1
        soft = any(not isinstance(p, list) for seq in sequences for p in seq)
        batch: dict[str, torch.Tensor] = {}
        if not soft:
            ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
            for row, seq in enumerate(sequences):
                flat = [t for p in seq for t in p]
                if pad_left:
                    ids[row, width - len(flat) :] = torch.tensor(flat, dtype=torch.long)
                else:
                    ids[row, : len(flat)] = torch.tensor(flat, dtype=torch.long)
            batch["input_ids"] = ids.to(device)
        else:
            layer = self.model.get_input_embeddings()
            dtype = layer.weight.dtype
            rows = []
            for seq, n in zip(sequences, lengths, strict=True):
                parts = [
                    layer(torch.tensor(p, dtype=torch.long, device=device))
                    if isinstance(p, list)
                    else p.to(device=device, dtype=dtype)
                    for p in seq
                ]
                row = torch.cat(parts, dim=0)
                pad = row.new_zeros((width - n, row.shape[-1]))
                rows.append(torch.cat([pad, row] if pad_left else [row, pad], dim=0))
            batch["inputs_embeds"] = torch.stack(rows)
        batch["attention_mask"] = mask.to(device)
        if not self.is_encoder_decoder:
            batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        return batch

    def _encoder_inputs(self, encoded: Sequence[_Encoded]) -> dict[str, Any]:
        """Encoder-side inputs for a batch: plain ``input_ids``/``inputs_embeds``, or, when any
        request is a FiD one, ``encoder_outputs`` holding each request's passages' states
        concatenated along the sequence axis."""
        if any(e.fusion for e in encoded):
            return self._fused_encoder(encoded)
        return self._assemble([e.sequences[0] for e in encoded], pad_left=False)

    def _fused_encoder(self, encoded: Sequence[_Encoded]) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutput

        flat = [seq for e in encoded for seq in e.sequences]
        batch = self._assemble(flat, pad_left=False)
        states = self.model.get_encoder()(**batch, return_dict=True).last_hidden_state
        lengths = batch["attention_mask"].sum(-1).tolist()
        fused, start = [], 0
        for e in encoded:
            k = len(e.sequences)
            # Passages are right-padded: keep each one's real tokens only, then concatenate.
            fused.append(torch.cat([states[start + j, : int(lengths[start + j])] for j in range(k)], dim=0))
            start += k
        width = max(f.shape[0] for f in fused)
        hidden = states.new_zeros((len(fused), width, states.shape[-1]))
        mask = torch.zeros((len(fused), width), dtype=torch.long, device=states.device)
        for row, f in enumerate(fused):
            hidden[row, : f.shape[0]] = f
            mask[row, : f.shape[0]] = 1
        return {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden), "attention_mask": mask}

    # -- batching -------------------------------------------------------------------------------
    def _batched(
        self,
        indices: Sequence[int],
        encoded: Sequence[_Encoded],
        work: Callable[[list[int]], list[Generation]],
        results: list[Generation | None],
        group: Callable[[int], Any],
    ) -> None:
        """Run ``work`` over ``indices`` in batches of similar length (longest first, so an
        out-of-memory shows up on the first batch), writing results back in request order.
        With ``batch_size=auto`` a batch that runs out of memory is retried at half the size."""
        order = sorted(indices, key=lambda i: (str(group(i)), -encoded[i].length, i))
        pos = 0
        while pos < len(order):
            size = self.batch_size
            chunk = [order[pos]]
            for i in order[pos + 1 : pos + size]:
                if group(i) != group(chunk[0]):
                    break
                chunk.append(i)
            try:
                outputs = work(chunk)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                self._free_memory()
                if self.auto_batch and len(chunk) > 1:
                    self.batch_size = max(1, len(chunk) // 2)
                    continue
                raise lamp_error(
                    f"model {self.resolved.name!r} ran out of memory on {self.device} with a batch of {len(chunk)}",
                    where=OWNER,
                    fix="Pass batch_size=auto or a smaller batch_size, a smaller max_input_tokens, or dtype=bfloat16.",
                ) from None
            for i, out in zip(chunk, outputs, strict=True):
                results[i] = out
            pos += len(chunk)

    def _free_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif self.device.startswith("mps"):
            torch.mps.empty_cache()

    # -- generation -----------------------------------------------------------------------------
    def _generate_batch(self, encoded: Sequence[_Encoded], max_new_tokens: int) -> list[Generation]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": False,
            "num_return_sequences": 1,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._eos_ids,
        }
        kwargs.update(self.generate_args)
        if "do_sample" not in self.generate_args and float(self.generate_args.get("temperature") or 0) > 0:
            kwargs["do_sample"] = True  # a temperature asks for sampling, as on vLLM and OpenAI servers
        if self.is_encoder_decoder:
            inputs = self._encoder_inputs(encoded)
        else:
            inputs = self._assemble([e.sequences[0] for e in encoded], pad_left=True)
            inputs.pop("position_ids")  # generate derives them from the mask, also for new tokens
        torch.manual_seed(self.context.seed)
        with torch.no_grad(), _eval_mode(self.model):
            output = self.model.generate(**inputs, **kwargs)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        if self.is_encoder_decoder:
            new = sequences[:, 1:]  # drop the decoder start token
        elif "input_ids" in inputs:
            new = sequences[:, inputs["input_ids"].shape[1] :]
        else:
            new = sequences  # from inputs_embeds generate returns the new tokens only
        return [self._finish(row.tolist(), e.length) for row, e in zip(new, encoded, strict=True)]

    def _finish(self, ids: list[int], prompt_tokens: int) -> Generation:
        stop = set(self._eos_ids)
        kept: list[int] = []
        for token in ids:
            if token in stop:
                break
            kept.append(token)
        while kept and kept[-1] == self.tokenizer.pad_token_id:
            kept.pop()
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=prompt_tokens, generated_tokens=len(kept))

    # -- label scoring --------------------------------------------------------------------------
    def _score_labels(self, requests: Sequence[GenerationRequest], encoded: Sequence[_Encoded]) -> list[Generation]:
        with torch.no_grad(), _eval_mode(self.model):
            if self.is_encoder_decoder:
                scores = self._label_scores_seq2seq(requests, encoded)
            else:
                scores = self._label_scores_causal(requests, encoded)
        results = []
        for request, e, row in zip(requests, encoded, scores, strict=True):
            best = max(range(len(row)), key=lambda j: (row[j], -j))
            label = request.choices[best]
            results.append(Generation(text=label, prompt_tokens=e.length, generated_tokens=len(self._target_ids(label))))
        return results

    def label_scores(self, requests: Sequence[GenerationRequest]) -> list[list[float]]:
        """Summed log-likelihood of every choice of every request (the numbers label decoding
        maximises), for inspection and tests."""
        self._check_fusion(requests)
        encoded = [self._encode(r) for r in requests]
        with torch.no_grad(), _eval_mode(self.model):
            if self.is_encoder_decoder:
                return self._label_scores_seq2seq(requests, encoded)
            return self._label_scores_causal(requests, encoded)

    def _label_rows(self, requests: Sequence[GenerationRequest]) -> tuple[list[int], list[list[int]]]:
        owner, labels = [], []
        for i, request in enumerate(requests):
            for choice in request.choices:
                owner.append(i)
                labels.append(self._target_ids(choice))
        return owner, labels

    def _label_scores_seq2seq(self, requests, encoded) -> list[list[float]]:
        from transformers.modeling_outputs import BaseModelOutput

        inputs = self._encoder_inputs(encoded)
        if "encoder_outputs" in inputs:
            states = inputs["encoder_outputs"].last_hidden_state
        else:
            encoder_in = {k: v for k, v in inputs.items() if k in ("input_ids", "inputs_embeds", "attention_mask")}
            states = self.model.get_encoder()(**encoder_in, return_dict=True).last_hidden_state
        owner, labels = self._label_rows(requests)
        index = torch.tensor(owner, device=states.device)
        target = _pad([torch.tensor(t) for t in labels], -100).to(states.device)
        # The prompt is encoded once; each label only runs the decoder over its own tokens.
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states[index]),
            attention_mask=inputs["attention_mask"][index],
            labels=target,
        ).logits
        return _group(_sum_logprobs(logits, target), owner, len(requests))

    def _label_scores_causal(self, requests, encoded) -> list[list[float]]:
        batch = self._assemble([e.sequences[0] for e in encoded], pad_left=True)
        extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(self.model) else {}
        out = self.model(**batch, use_cache=True, **extra)
        if not hasattr(out.past_key_values, "batch_select_indices"):
            return self._label_scores_causal_full(requests, encoded)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        owner, labels = self._label_rows(requests)
        index = torch.tensor(owner, device=first.device)
        scores = first[index, torch.tensor([t[0] for t in labels], device=first.device)]
        longest = max(len(t) for t in labels)
        if longest > 1:
            # Reuse the prompt's KV cache for every label: feed label tokens [:-1] after it.
            cache = out.past_key_values
            cache.batch_select_indices(index)
            feed = _pad([torch.tensor(t[:-1]) for t in labels], self.tokenizer.pad_token_id, width=longest - 1).to(
                first.device
            )
            feed_mask = _pad([torch.ones(len(t) - 1, dtype=torch.long) for t in labels], 0, width=longest - 1).to(
                first.device
            )
            prompt_mask = batch["attention_mask"][index]
            start = prompt_mask.sum(-1, keepdim=True)
            positions = start + torch.arange(longest - 1, device=first.device).unsqueeze(0)
            logits = self.model(
                input_ids=feed,
                attention_mask=torch.cat([prompt_mask, feed_mask], dim=1),
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            ).logits
            target = _pad([torch.tensor(t[1:]) for t in labels], -100, width=longest - 1).to(first.device)
            scores = scores + _sum_logprobs(logits, target)
        return _group(scores, owner, len(requests))

    def _label_scores_causal_full(self, requests, encoded) -> list[list[float]]:
        """Label scores from full prompt+label sequences, for models whose cache cannot be
        expanded per label. Same numbers as the cached path, ~C times the prompt compute (the
        generation benchmark measures the difference)."""
        owner, labels = self._label_rows(requests)
        sequences = [[*encoded[i].sequences[0], list(t)] for i, t in zip(owner, labels, strict=True)]
        batch = self._assemble(sequences, pad_left=True)
        logits = self.model(**batch).logits
        width = batch["attention_mask"].shape[1]
        target = torch.full((len(labels), width), -100, dtype=torch.long)
        for row, t in enumerate(labels):
            target[row, width - len(t) :] = torch.tensor(t)
        # logits at position p predict the token at p + 1.
        scores = _sum_logprobs(logits[:, :-1], target[:, 1:].to(logits.device))
        return _group(scores, owner, len(requests))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


class _eval_mode:
    """Evaluation mode for the block (dropout off), restoring the previous mode after."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def _forward_params(model: Any) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _pad(rows: Sequence[torch.Tensor], value: int, width: int | None = None) -> torch.Tensor:
    width = width if width is not None else max(int(r.shape[0]) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def _sum_logprobs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row sum of log p(target) where target != -100; ``logits[:, t]`` predicts ``target[:, t]``."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    safe = target.clamp(min=0)
    picked = logprobs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (picked * (target != -100)).sum(-1)


def _group(scores: torch.Tensor, owner: Sequence[int], n: int) -> list[list[float]]:
    grouped: list[list[float]] = [[] for _ in range(n)]
    for value, i in zip(scores.tolist(), owner, strict=True):
        grouped[i].append(float(value))
    return grouped
