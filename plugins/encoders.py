"""Text encoders for dense retrieval (and anything else that embeds texts): one way to load them.

:func:`load_encoder` resolves a model through :func:`lamp_harness.inputs.models.resolve_model` (an alias
such as ``minilm``, a hub id, or a local folder; without one, the preset's model for the role) and
loads it with plain ``transformers``. Settings come, in order of precedence, from the explicit
arguments, the alias's registered metadata (``pooling``, ``normalize``, ``query_prefix``), a
sentence-transformers folder's own configuration (``1_Pooling/config.json``, a ``Normalize``
module, ``sentence_bert_config.json``'s ``max_seq_length``), and finally mean pooling without
normalisation. Encoders are cached per process in ``context.shared``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lamp_harness import RunContext, encoder_identity, lamp_error

POOLINGS = ("mean", "cls")
DEFAULT_MAX_TOKENS = 512


class TextEncoder:
    """A transformers encoder with pooling, optional L2 normalisation and query prefix.

    The model is loaded on the first :meth:`encode` (``identity`` needs no weights).
    ``forward_passes`` counts model calls and ``encoded_texts`` the texts they covered.
    """

    def __init__(
        self,
        resolved: Any,
        *,
        pooling: str,
        normalize: bool,
        query_prefix: str,
        max_length: int,
        device: str,
        batch_size: int = 64,
    ) -> None:
        self.resolved = resolved
        self.pooling = pooling
        self.normalize = normalize
        self.query_prefix = query_prefix
        self.max_length = max_length
        self.device = device
        self.batch_size = batch_size
        self.forward_passes = 0
        self.encoded_texts = 0
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def identity(self) -> dict[str, Any]:
        """Cache key of document vectors: model id, revision, pooling, normalize, max length."""
        return encoder_identity(
            self.resolved, pooling=self.pooling, normalize=self.normalize, max_tokens=self.max_length, role="document"
        )

    @property
    def query_identity(self) -> dict[str, Any]:
        """Cache key of query vectors (the query prefix included)."""
        return encoder_identity(
            self.resolved,
            pooling=self.pooling,
            normalize=self.normalize,
            max_tokens=self.max_length,
            role="query",
            query_prefix=self.query_prefix,
        )

    def describe(self) -> dict[str, Any]:
        """What a run records about the encoder."""
        return {
            **self.resolved.describe(),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "query_prefix": self.query_prefix,
            "max_length": self.max_length,
        }

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from lamp_harness import loading_error, pretrained_kwargs

        kwargs = pretrained_kwargs(self.resolved)
        hf_logging.disable_progress_bar()  # a per-load bar would clutter the run's own progress
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.resolved.path, **kwargs)
            model = AutoModel.from_pretrained(self.resolved.path, **kwargs)
        except OSError as exc:
            raise loading_error(self.resolved, exc) from exc
        finally:
            hf_logging.enable_progress_bar()
        self._model = model.to(self.device).eval()

    def encode(self, texts: Sequence[str], *, is_query: bool = False, batch_size: int | None = None) -> np.ndarray:
        """float32 vectors ``[len(texts), dim]``, in the order of ``texts``. Texts are batched by
        length (longest first, so padding is minimal); queries get the query prefix."""
        import torch

        texts = [f"{self.query_prefix}{t}" if is_query else t for t in texts]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        self._load()
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        with torch.inference_mode():
            for start in range(0, len(order), size):
                chosen = order[start : start + size]
                batch = self._tokenizer(
                    [texts[i] for i in chosen],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                self.forward_passes += 1
                self.encoded_texts += len(chosen)
                vectors = pool(hidden, batch["attention_mask"], self.pooling)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                vectors = vectors.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[chosen] = vectors
        assert out is not None
        return out


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """Mean over the attention mask, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _st_settings(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length declared by a sentence-transformers folder."""
    found: dict[str, Any] = {}
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return found
    found["normalize"] = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            try:
                config = json.loads((folder / module.get("path", "") / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if config.get("pooling_mode_cls_token"):
                found["pooling"] = "cls"
            elif config.get("pooling_mode_mean_tokens"):
                found["pooling"] = "mean"
    try:
        st = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        if st.get("max_seq_length"):
            found["max_length"] = int(st["max_seq_length"])
    except (OSError, ValueError):
        pass
    return found


def _device(context: RunContext) -> str:
    if context.device and context.device != "auto":
        return context.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(
    context: RunContext,
    spec: str | None,
    role: str = "contriever",
    *,
    pooling: str | None = None,
    normalize: bool | None = None,
    query_prefix: str | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
) -> TextEncoder:
    """The text encoder for ``spec`` (alias, hub id or folder; ``None``: the preset's model for
    ``role``), shared per process through ``context.shared``."""
    from lamp_harness import resolve_model

    resolved = resolve_model(role, context, spec)
    meta = dict(resolved.metadata)
    folder = _st_settings(Path(resolved.path)) if resolved.is_local else {}
    chosen_pooling = pooling or meta.get("pooling") or folder.get("pooling") or "mean"
    if chosen_pooling not in POOLINGS:
        raise lamp_error(
            f"pooling {chosen_pooling!r} is not supported",
            where=f"model {resolved.name!r}",
            fix=f"Use one of: {', '.join(POOLINGS)}.",
        )
    chosen_normalize = normalize if normalize is not None else bool(meta.get("normalize", folder.get("normalize", False)))
    prefix = query_prefix if query_prefix is not None else str(meta.get("query_prefix") or "")
    length = max_length or int(meta.get("max_length") or folder.get("max_length") or DEFAULT_MAX_TOKENS)
    device = _device(context)
    key = ("text-encoder", resolved.path, resolved.revision, chosen_pooling, chosen_normalize, prefix, length, device)
    if key not in context.shared:
        context.shared[key] = TextEncoder(
            resolved,
            pooling=chosen_pooling,
            normalize=chosen_normalize,
            query_prefix=prefix,
            max_length=length,
            device=device,
            batch_size=batch_size,
        )
    return context.shared[key]
