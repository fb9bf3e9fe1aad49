"""The example's own tests: the lamp-harness conformance kit on every component, plus what makes
each one specific. Run them after installing the plugin (``pip install -e .``): ``pytest tests``."""

from __future__ import annotations

import pytest
import torch
from lamp_sentiment_example import reporter as reporter_module
from lamp_sentiment_example.data import ToySentimentSource
from lamp_sentiment_example.prior import UserPrior
from lamp_sentiment_example.reader import PriorReader
from lamp_sentiment_example.reporter import CsvReporter
from lamp_sentiment_example.task import ToySentiment

from lamp_harness import GenerationRequest, LampError, ProfileItem, RunContext
from lamp_harness.testing import (
    PluginHost,
    check_data_source,
    check_generator,
    check_personalizer,
    check_reporter,
    check_task,
    check_trainable_personalizer,
    load_split,
)


@pytest.fixture
def context(tmp_path) -> RunContext:
    return RunContext(lamp_home=tmp_path)


@pytest.fixture
def dev(context):
    files = ToySentimentSource(context).locate(ToySentiment(), "dev")
    return load_split(ToySentiment(), files.questions, files.outputs, split="dev", source=files.source).examples


def test_task_passes_the_task_checks(dev):
    check_task(ToySentiment(), dev[:4])


def test_data_source_passes_the_data_source_checks(context):
    check_data_source(ToySentimentSource(context), ToySentiment(), splits=("train", "dev"))


def test_user_prior_passes_the_personalizer_and_trainable_checks(context, dev):
    check_personalizer(UserPrior(context), ToySentiment(), examples=dev[:3])
    check_trainable_personalizer(UserPrior(context), ToySentiment(), examples=dev[:6], lr=0.5)


def test_prior_reader_passes_the_generator_checks(context):
    check_generator(PriorReader(context))


def test_csv_reporter_passes_the_reporter_checks_as_a_module_and_as_an_object():
    check_reporter(reporter_module)
    check_reporter(CsvReporter())


def test_user_prior_learns_the_user_habit(context, tmp_path):
    task = ToySentiment()
    source = ToySentimentSource(context)
    train = load_split(task, *_files(source, task, "train"), split="train", source="t").examples
    dev = load_split(task, *_files(source, task, "dev"), split="dev", source="d").examples
    prior = UserPrior(context)
    prior.setup(task, PriorReader(context), context)
    reader = PriorReader(context)

    def accuracy() -> float:
        answers = reader.generate([prior.personalize(task, e, ()) for e in dev])
        return sum(a.text == e.gold for a, e in zip(answers, dev, strict=True)) / len(dev)

    before = accuracy()
    optimizer = torch.optim.Adam(prior.parameters(), lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        prior.training_loss(task, train, [()] * len(train)).backward()
        optimizer.step()
    assert accuracy() >= 0.9 > before


def _files(source, task, split):
    files = source.locate(task, split)
    return files.questions, files.outputs


def test_prior_reader_answers_the_majority_label_of_the_retrieved_items(context):
    items = tuple(
        ProfileItem(str(i), i, {"text": "x", "label": label}) for i, label in enumerate(["positive", "negative", "positive"])
    )
    request = GenerationRequest("q", "prompt", choices=("negative", "positive"), retrieved=items)
    assert PriorReader(context).generate([request])[0].text == "positive"


def test_prior_reader_rejects_its_unknown_arguments_but_not_run_level_settings(context):
    with pytest.raises(LampError, match="unknown argument.*temperature"):
        PriorReader(context, temperature="0.7")
    assert PriorReader(context, batch_size="4").batch_size == 4


def test_installed_distribution_registers_everything_through_its_entry_points():
    host = PluginHost()
    registry = host.registry
    for kind, name in (
        ("task", "toy-sentiment"),
        ("data_source", "toy-sentiment"),
        ("personalizer", "user-prior"),
        ("generator", "prior-reader"),
    ):
        assert registry.get(kind, name).distribution == "lamp-sentiment-example"
    csv_plugin = [p for p in host.loaded if p.name == "sentiment-csv"]
    assert len(csv_plugin) == 1 and csv_plugin[0].is_reporter
