"""The module the ``sentiment`` entry point names: it only registers, lazily."""

from __future__ import annotations

from lamp_harness import Registry, hookimpl


@hookimpl
def lamp_register(registry: Registry) -> None:
    """Add the task, its data source, the personalizer and the generator."""
    registry.add_task(
        "toy-sentiment",
        "lamp_sentiment_example.task:ToySentiment",
        "Toy review sentiment, positive or negative, with a per-user bias on lukewarm "
        "reviews (accuracy, macro-F1); its data comes from the 'toy-sentiment' source.",
    )
    registry.add_data_source(
        "toy-sentiment",
        "lamp_sentiment_example.data:ToySentimentSource",
        "Generated toy-sentiment data (train 60 / dev 30 questions), no network.",
    )
    registry.add_personalizer(
        "user-prior",
        "lamp_sentiment_example.prior:UserPrior",
        "Trainable: a logistic model of the user's label habit and the input's cue "
        "words; passes label scores to the generator. Args: none.",
    )
    registry.add_generator(
        "prior-reader",
        "lamp_sentiment_example.reader:PriorReader",
        "Model-free: answers the best label score a personalizer sent, else the "
        "majority label of the retrieved items. Args: none.",
    )
