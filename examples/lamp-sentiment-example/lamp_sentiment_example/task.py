"""The ``toy-sentiment`` task: is a review positive or negative, for this user?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lamp_harness import Example, MetricResult, ProfileItem, Task, TokenCounter, metrics

INSTRUCTION = "Is this review positive or negative? Answer with one word. review: "


class ToySentiment(Task):
    """Reviews with a ``text`` and the user's own ``label`` in each profile item. Lukewarm
    reviews are labelled by the user's habit, which only the profile shows."""

    name = "toy-sentiment"
    official_name = "Toy_Sentiment"
    kind = "classification"
    labels = ("negative", "positive")
    profile_fields = ("text", "label")
    max_new_tokens = 2
    data_source = "toy-sentiment"  # used unless the run names another source for this task

    def query(self, example: Example) -> str:
        return example.input.split("review:", 1)[-1].strip()

    def document(self, item: ProfileItem) -> str:
        return item.get("text")

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        # free_text replaces the review text, the field the prompt budget truncates.
        text = item.get("text") if free_text is None else free_text
        return f'"{text}" was {item.get("label")}'

    def prompt(self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int = 256) -> str:
        prompt = example.input
        for item in reversed(items):  # best item closest to the question
            longer = f"{self.ppep(item)}. {prompt}"
            if tokens.count(longer) > max_tokens:
                break
            prompt = longer
        return prompt if tokens.count(prompt) <= max_tokens else tokens.truncate(prompt, max_tokens)

    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        ids = sorted(set(predictions) & set(golds))
        outputs = [predictions[i].strip() for i in ids]
        truth = [golds[i].strip() for i in ids]
        return [metrics.accuracy(outputs, truth, seed=seed), metrics.macro_f1(outputs, truth, self.labels, seed=seed)]
