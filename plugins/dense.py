"""Dense retrievers: ``contriever`` (the LaMP paper's) and ``dense`` (any encoder).

Both embed every profile item and the query with a text encoder (:mod:`lamp_plugins.encoders`)
and rank by dot product, best first; equal scores keep profile order. Profile-item vectors come
from the shared embedding cache (:class:`lamp_harness.cache.EmbeddingCache`), so each distinct
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
from typing import Any, ClassVar

import numpy as np
from lamp_plugins.encoders import POOLINGS, TextEncoder, load_encoder

from lamp_harness import (
    EmbeddingCache,
    Ranking,
    RankQuery,
    Retriever,
    RunContext,
    bool_arg,
    int_arg,
    lamp_error,
    reject_unknown_args,
)


class DenseRetriever(Retriever):
    """Dot-product retrieval with any text encoder (``--retriever-arg model=...``)."""

    name = "dense"
    role: ClassVar[str] = "dense"
    arguments: ClassVar[tuple[str, ...]] = ("model", "pooling", "normalize", "query_prefix", "batch_size", "max_length")

    def __init__(self, context: RunContext, **args: str) -> None:
        owner = f"retriever {self.name!r}"
        reject_unknown_args(args, self.arguments, owner)
        self.context = context
        pooling = args.get("pooling") or self._default_pooling()
        if pooling is not None and pooling not in POOLINGS:
            raise lamp_error(
                f"argument pooling={pooling!r} is not supported", where=owner, fix=f"Use one of: {', '.join(POOLINGS)}."
            )
        normalize = bool_arg(args, "normalize", False, owner) if "normalize" in args else None
        max_length = int_arg(args, "max_length", 0, owner, minimum=1) if "max_length" in args else None
        role, spec = self._model(context, args.get("model"), owner)
        self.encoder: TextEncoder = load_encoder(
            context,
            spec,
            role,
            pooling=pooling,
            normalize=normalize,
            query_prefix=args.get("query_prefix"),
            max_length=max_length,
            batch_size=int_arg(args, "batch_size", 64, owner, minimum=1),
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
        from lamp_harness.registry import host, normalize

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
    arguments = ("model", "normalize", "batch_size", "max_length")

    def _default_pooling(self) -> str | None:
        return "mean"

    def _model(self, context: RunContext, model: str | None, owner: str) -> tuple[str, str | None]:
        return self.role, model or None
