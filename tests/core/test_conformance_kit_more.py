"""The conformance kit's checks for trainable personalizers, data sources and reporters pass
conforming components and name the rule a broken one violates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lamp_harness.base.errors import lamp_error
from lamp_harness.inputs.data import DataSource, SplitFiles, split_file_names
from lamp_harness.plugin.contracts import GenerationRequest, Personalizer, RunContext
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.registry import host
from lamp_harness.testing import check_data_source, check_reporter, check_trainable_personalizer, sample_examples


class WordBias(Personalizer):
    """A trainable personalizer: one learned weight per word position (enough for the kit)."""

    name = "word-bias"
    needs_retriever = False
    trainable = True

    def __init__(self, context=None, *, frozen: bool = False, lossy: bool = False) -> None:
        self.weight = torch.nn.Parameter(torch.zeros(4))
        self.frozen, self.lossy = frozen, lossy

    def setup(self, task, generator, context):
        self.generator = generator

    def personalize(self, task, example, retrieved):
        prompt = task.prompt(example, retrieved, self.generator.tokens, self.generator.max_input_tokens)
        return GenerationRequest(example.id, prompt, choices=task.labels, max_new_tokens=task.max_new_tokens)

    def parameters(self):
        return [self.weight]

    def training_loss(self, task, examples, retrieved):
        lengths = torch.tensor([float(len(e.input.split())) for e in examples])
        loss = ((self.weight.sum() - lengths) ** 2).mean()
        return loss * 0 if self.frozen else loss

    def state_dict(self):
        return {"weight": self.weight.detach().clone()}

    def load_state_dict(self, state):
        if not self.lossy:
            with torch.no_grad():
                self.weight.copy_(state["weight"])


@pytest.fixture
def lamp7():
    return host().registry.create("task", "lamp-7")


def test_a_conforming_trainable_personalizer_passes(lamp7):
    check_trainable_personalizer(WordBias(), lamp7)


def test_a_training_step_that_changes_nothing_is_caught(lamp7):
    with pytest.raises(AssertionError, match="gives no parameter a non-zero gradient"):
        check_trainable_personalizer(WordBias(frozen=True), lamp7)


def test_a_state_dict_that_does_not_load_back_is_caught(lamp7):
    with pytest.raises(AssertionError, match="differs after a state_dict round trip"):
        check_trainable_personalizer(WordBias(lossy=True), lamp7)


def test_a_personalizer_without_the_trainable_flag_is_caught(lamp7):
    class Unflagged(WordBias):
        trainable = False

    with pytest.raises(AssertionError, match="trainable = True"):
        check_trainable_personalizer(Unflagged(), lamp7)


class SampleSource(DataSource):
    """Writes the kit's sample examples as the task's official files."""

    name = "samples"
    schemes = ("user",)
    drift = False
    golds = True

    def locate(self, task, split, scheme="user", *, download=True):
        if split not in ("train", "dev"):
            raise lamp_error(f"no {split!r} split", fix="Use train or dev.")
        folder = Path(self.context.lamp_home) / "samples" / task.name
        folder.mkdir(parents=True, exist_ok=True)
        q_name, o_name = split_file_names(split)
        examples = sample_examples(task)
        if self.drift:  # a different number of questions on every call
            self.calls = getattr(self, "calls", 0) + 1
            examples = examples[: 1 + self.calls % 2]
        records = [
            {"id": e.id, "input": e.input, "profile": [{"id": i.id, **i.fields} for i in e.profile]} for e in examples
        ]
        (folder / q_name).write_text(json.dumps(records), encoding="utf-8")
        outputs = None
        if self.golds:
            outputs = folder / o_name
            outputs.write_text(
                json.dumps({"task": task.official_name, "golds": [{"id": e.id, "output": e.gold} for e in examples]}),
                encoding="utf-8",
            )
        return SplitFiles(folder / q_name, outputs, "samples:v1")


def test_a_conforming_data_source_passes(lamp7, tmp_path):
    check_data_source(SampleSource(RunContext(lamp_home=tmp_path)), lamp7, splits=("train", "dev"))


def test_data_that_changes_between_calls_is_caught(lamp7, tmp_path):
    source = SampleSource(RunContext(lamp_home=tmp_path))
    source.drift = True
    with pytest.raises(AssertionError, match="data changed between two calls"):
        check_data_source(source, lamp7)


def test_a_dev_split_without_golds_is_caught(lamp7, tmp_path):
    source = SampleSource(RunContext(lamp_home=tmp_path))
    source.golds = False
    with pytest.raises(AssertionError, match="must come with golds"):
        check_data_source(source, lamp7)


class Counter:
    """A reporter counting finished cells."""

    def __init__(self) -> None:
        self.finished = 0

    @hookimpl
    def lamp_cell_finished(self, cell, metrics, timing):
        self.finished += 1


def test_a_conforming_reporter_passes_and_sees_a_whole_run():
    reporter = Counter()
    check_reporter(reporter)
    assert reporter.finished == 6  # three cells, run twice


def test_a_reporter_that_raises_is_caught():
    class Fragile:
        @hookimpl
        def lamp_cell_finished(self, cell, metrics, timing):
            metrics[0].name  # noqa: B018  (fails on the test split's empty metrics)

    with pytest.raises(AssertionError, match="raised in a lifecycle hook: lamp_cell_finished: IndexError"):
        check_reporter(Fragile())


def test_a_reporter_missing_hookimpl_or_misspelling_a_hook_is_caught():
    class Undecorated:
        def lamp_cell_finished(self, cell, metrics, timing):
            pass

        @hookimpl
        def lamp_run_started(self, run):
            pass

    class Misspelled:
        @hookimpl
        def lamp_cell_finishd(self, cell):
            pass

    with pytest.raises(AssertionError, match="'lamp_cell_finished' looks like the 'lamp_cell_finished' hook but has no"):
        check_reporter(Undecorated())
    with pytest.raises(AssertionError, match="did you mean 'lamp_cell_finished'"):
        check_reporter(Misspelled())
