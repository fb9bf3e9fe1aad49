"""Dense retrievers: ``contriever`` (the LaMP paper's) and ``dense`` (any encoder).

Both embed every profile item and the query with a text encoder (:mod:`lamp_plugins.encoders`)
and rank by dot product, best first; equal scores keep profile order. Profile-item vectors come
from the shared embedding cache (:class:`lamp_harness.inputs.cache.EmbeddingCache`), so each distinct
text is encoded once across questions, splits and runs; query vectors are cached the same way
under a separate identity (which includes the query prefix).

- ``contriever``: mean pooling over the attention mask, dot product (facebook/contriever in the
  paper presets; the preset's stand-in offline, e.g. MiniLM, which is L2-normalised by its own
  configuration so its dot product is a cosine). Arguments: ``model``, ``normalize``,
  ``batch_size``, ``max_length``.
- ``dense``: ``model`` is required: an alias (``minilm``, ``bge-base``...), a hub id, a local
  folder, or a role of the preset (``bge``, ``contriever``); plus ``pooling=mean|cls``,
  ``normalize=true|false``, ``query_prefix=...``, ``batch_size``, ``max_length``. Unset settings
  come from the model's registered metadata or its sentence-transformers configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from lamp_plugins.encoders import POOLINGS, TextEncoder, load_encoder

from lamp_harness import (
    EmbeddingCache,
    Options,
    Ranking,
    RankQuery,
    Retriever,
    RunContext,
    lamp_error,
    option,
)


@dataclass(frozen=True)
class ContrieverOptions(Options):
    """The ``contriever`` retriever's options."""

    model: str | None = option(None, "the encoder: a model alias, hub id, folder or preset role (unset: the preset's)")
    normalize: bool | None = option(None, "L2-normalise the vectors (unset: the model's own convention)")
    batch_size: int = option(64, "texts per encoder forward pass", minimum=1)
    max_length: int | None = option(None, "encoder tokens per text (unset: the model's own limit)", minimum=1)


@dataclass(frozen=True)
class DenseOptions(ContrieverOptions):
    """The ``dense`` retriever's options (``model`` is required)."""

    model: str | None = option(None, "the encoder (required): a model alias, hub id, folder or preset role")
    pooling: str | None = option(None, "how token vectors become one (unset: the model's own)", choices=POOLINGS)
    query_prefix: str | None = option(None, "text put before each query (unset: the model's own)")


class DenseRetriever(Retriever):
    """Dot-product retrieval with any text encoder (``--retriever-arg model=...``)."""

    name = "dense"
    role: ClassVar[str] = "dense"
    options: ClassVar[type[Options]] = DenseOptions

    def __init__(self, context: RunContext, **args: str) -> None:
        owner = f"retriever {self.name!r}"
        opts = self.options.parse(args, owner)
        self.context = context
        role, spec = self._model(context, getattr(opts, "model", None), owner)
        self.encoder: TextEncoder = load_encoder(
            context,
            spec,
            role,
            pooling=getattr(opts, "pooling", None) or self._default_pooling(),
            normalize=getattr(opts, "normalize", None),
            query_prefix=getattr(opts, "query_prefix", None),
            max_length=getattr(opts, "max_length", None),
            batch_size=getattr(opts, "batch_size", 64),
        )

    def _default_pooling(self) -> str | None:
        return None

    def _model(self, context: RunContext, model: str | None, owner: str) -> tuple[str, str | None]:
        """(role, explicit model) for :func:`load_encoder`."""
        if not model:
            raise lamp_error(
                "needs a model",
                where=owner,
                fix="Pass --retriever-arg model=ALIAS|HUB_ID|FOLDER, e.g. model=minilm, or a preset role such as model=bge.",
            )
        from lamp_harness import preset_roles

        try:
            roles = preset_roles(context.preset)
        except Exception:  # an unknown preset is reported by resolve_model below, not here
            roles = {}
        if model in roles and model != self.role:
            return model, None  # a role of the preset: whatever model the preset puts there
        # core-internal: whether `model` is a registered alias, and which roles it serves, is in the
        # process's registry; the plugin API does not hand a component the registry yet.
        from lamp_harness.plugin.registry import host, normalize

        registry = host().registry
        if normalize(model) in registry.names("model"):
            # An alias declares the roles it serves; ``dense`` accepts any of them.
            served = registry.get("model", model).metadata.get("role", ())
            served = (served,) if isinstance(served, str) else tuple(served)
            if served and self.role not in served:
                return served[0], model
        return self.role, model

    def cache_key(self) -> Mapping[str, Any]:
        return {
            "name": self.name,
            "encoder": self.encoder.identity,
            "query_prefix": self.encoder.query_prefix,
            "score": "dot",
            "order": "stable-descending",
            "version": 1,
        }

    def describe(self) -> Mapping[str, Any]:
        return {"name": self.name, **self.encoder.describe()}

    def text_encoder(self) -> Mapping[str, Any]:
        """The encoder model (its resolved path), pooling and query prefix, e.g. for PPlug."""
        resolved = self.encoder.resolved
        model = resolved.path
        if not resolved.is_local and resolved.revision:
            model = f"{model}@{resolved.revision}"
        return {
            "model": model,
            "pooling": self.encoder.pooling,
            "query_prefix": self.encoder.query_prefix,
            "name": resolved.name,
        }

    def rank(self, queries: Sequence[RankQuery]) -> list[Ranking]:
        if not queries:
            return []
        documents = [d for q in queries for d in q.documents]
        doc_cache = EmbeddingCache(self.context, self.encoder.identity)
        query_cache = EmbeddingCache(self.context, self.encoder.query_identity)
        doc_vectors = doc_cache.get_or_encode(documents, self.encoder.encode)
        query_vectors = query_cache.get_or_encode(
            [q.query for q in queries], lambda texts: self.encoder.encode(texts, is_query=True)
        )
        rankings: list[Ranking] = []
        start = 0
        for i, query in enumerate(queries):
            block = doc_vectors[start : start + len(query.documents)]
            start += len(query.documents)
            scores = block @ query_vectors[i] if len(block) else np.zeros(0, dtype=np.float32)
            rankings.append(tuple(np.argsort(-scores, kind="stable").tolist()))
        return rankings


class ContrieverRetriever(DenseRetriever):
    """Contriever: mean pooling over the attention mask, dot-product scores (LaMP paper)."""

    name = "contriever"
    role = "contriever"
    options = ContrieverOptions

    def _default_pooling(self) -> str | None:
        return "mean"

    def _model(self, context: RunContext, model: str | None, owner: str) -> tuple[str, str | None]:
        return self.role, model or None
