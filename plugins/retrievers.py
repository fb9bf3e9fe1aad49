"""Built-in retrievers plugin (registered through the `lamp_harness` entry-point group).

Factories are lazy ``"module:Class"`` strings: numpy, torch and transformers load only when a
retriever is used. Each is called as ``Class(context, **args)`` with the ``--retriever-arg``
strings.
"""

from __future__ import annotations

from lamp_harness import hookimpl


@hookimpl
def lamp_register(registry):
    """Register the built-in retrievers."""
    registry.add_retriever(
        "bm25",
        "lamp_plugins.bm25:BM25Retriever",
        "Official LaMP BM25 (BM25Okapi per question, whitespace tokens, k1=1.5, b=0.75, "
        "epsilon=0.25), bit-identical rankings, batched. Args: k1, b, epsilon.",
    )
    registry.add_retriever(
        "contriever",
        "lamp_plugins.dense:ContrieverRetriever",
        "Contriever: mean pooling, dot product (the preset's contriever model; MiniLM offline). "
        "Args: model, normalize, batch_size, max_length.",
    )
    registry.add_retriever(
        "dense",
        "lamp_plugins.dense:DenseRetriever",
        "Any text encoder, dot product. Args: model (required: alias, hub id, folder or preset "
        "role), pooling=mean|cls, normalize, query_prefix, batch_size, max_length.",
    )
    registry.add_retriever(
        "recency",
        "lamp_plugins.simple_retrievers:RecencyRetriever",
        "Newest profile items first by 'date' (time-based split). Args: fallback=error|profile-order.",
    )
    registry.add_retriever(
        "random",
        "lamp_plugins.simple_retrievers:RandomRetriever",
        "Seeded random permutation per example, without replacement. Args: seed.",
    )
