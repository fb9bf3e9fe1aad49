"""Loading, validation and resolution of LaMP splits (lamp_harness.inputs.data)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.inputs.data import (
    DataSource,
    SplitFiles,
    load_split,
    read_outputs,
    resolve_dataset,
    task_for_official_name,
    validate_split,
    write_outputs,
)
from lamp_harness.plugin.contracts import MetricResult, RunContext, Task
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.registry import PluginHost, host, reset_host


class TinyTask(Task):
    """A minimal task written against the contract only (no concrete LaMP task)."""

    name = "tiny"
    official_name = "Tiny_1"
    kind = "classification"
    labels = ("yes", "no")
    profile_fields = ("text",)

    def query(self, example):
        return example.input

    def document(self, item):
        return item.get("text")

    def ppep(self, item, free_text=None):
        return item.get("text")

    def prompt(self, example, items, tokens, max_tokens=256):
        return example.input

    def score(self, predictions, golds, *, seed=0):
        hits = [predictions[i] == golds[i] for i in golds]
        return [MetricResult("accuracy", sum(hits) / len(hits), True, n=len(hits))]


def _write(folder: Path, questions, outputs=None, split="dev") -> tuple[Path, Path | None]:
    folder.mkdir(parents=True, exist_ok=True)
    q = folder / f"{split}_questions.json"
    q.write_text(json.dumps(questions))
    o = None
    if outputs is not None:
        o = folder / f"{split}_outputs.json"
        o.write_text(json.dumps(outputs))
    return q, o


QUESTIONS = [
    {
        "id": "1",
        "input": "Is it? text: a",
        "profile": [{"id": "p1", "text": "x", "date": "2020-01-01"}, {"text": "y", "extra": 3}],
    },
    {"id": "2", "input": "Is it? text: b", "profile": [{"id": "p9", "text": "z"}]},
]
OUTPUTS = {"task": "Tiny_1", "golds": [{"id": "2", "output": "no"}, {"id": "1", "output": "yes"}]}


def test_load_split_builds_frozen_examples_with_golds_and_checksums(tmp_path):
    q, o = _write(tmp_path, QUESTIONS, OUTPUTS)
    dataset = load_split(TinyTask(), q, o, split="dev", source="local:test")
    assert [e.id for e in dataset.examples] == ["1", "2"]
    first = dataset.examples[0]
    assert first.gold == "yes" and dataset.examples[1].gold == "no"
    assert [i.id for i in first.profile] == ["p1", "1"]  # no id: its position as a string
    assert [i.position for i in first.profile] == [0, 1]
    assert dict(first.profile[0].fields) == {"text": "x", "date": "2020-01-01"}
    assert dict(first.profile[1].fields) == {"text": "y", "extra": 3}
    assert first.profile[0].date == "2020-01-01" and first.profile[1].date is None
    assert dataset.checksums == {
        "dev_questions.json": hashlib.sha256(q.read_bytes()).hexdigest(),
        "dev_outputs.json": hashlib.sha256(o.read_bytes()).hexdigest(),
    }
    assert (dataset.task, dataset.split, dataset.source) == ("tiny", "dev", "local:test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.gold = "no"  # type: ignore[misc]


def test_questions_without_outputs_have_no_golds(tmp_path):
    q, _ = _write(tmp_path, QUESTIONS, split="test")
    dataset = load_split(TinyTask(), q, None, split="test", source="x")
    assert all(e.gold is None for e in dataset.examples)
    assert list(dataset.checksums) == ["test_questions.json"]


def test_fingerprint_changes_with_the_contents(tmp_path):
    q, o = _write(tmp_path / "a", QUESTIONS, OUTPUTS)
    first = load_split(TinyTask(), q, o, split="dev", source="x").fingerprint
    changed = dict(OUTPUTS, golds=[{"id": "2", "output": "yes"}, {"id": "1", "output": "yes"}])
    q2, o2 = _write(tmp_path / "b", QUESTIONS, changed)
    assert load_split(TinyTask(), q2, o2, split="dev", source="x").fingerprint != first


def test_label_outside_the_task_labels_is_rejected(tmp_path):
    bad = dict(OUTPUTS, golds=[{"id": "1", "output": "maybe"}, {"id": "2", "output": "no"}])
    q, o = _write(tmp_path, QUESTIONS, bad)
    with pytest.raises(LampError, match=r"record 0 \(id '1'\), field 'golds\[0\]\.output': label 'maybe'"):
        load_split(TinyTask(), q, o, split="dev", source="x")


def test_validation_report_counts_and_profile_statistics(tmp_path):
    q, o = _write(tmp_path, QUESTIONS, OUTPUTS)
    report = validate_split(TinyTask(), q, o)
    assert report.ok and report.questions == 2 and report.golds == 2
    assert (report.profile.min, report.profile.max, report.profile.mean) == (1, 2, 1.5)
    assert report.official_name == "Tiny_1"


def test_read_outputs_checks_task_and_optionally_labels(tmp_path):
    path = tmp_path / "preds.json"
    write_outputs(path, "Tiny_1", {"1": "maybe", "2": "no"})
    assert read_outputs(path) == ("Tiny_1", {"1": "maybe", "2": "no"})
    assert read_outputs(path, TinyTask())[1] == {"1": "maybe", "2": "no"}  # predictions may be wrong
    with pytest.raises(LampError, match="label 'maybe'"):
        read_outputs(path, TinyTask(), check_labels=True)
    write_outputs(path, "LaMP_3", {"1": "3"})
    with pytest.raises(LampError, match="the file is for LaMP_3 but the task is tiny"):
        read_outputs(path, TinyTask())


def test_data_dir_wins_and_accepts_a_scheme_subfolder(tmp_path, lamp_home):
    _write(tmp_path / "data" / "time", QUESTIONS, OUTPUTS)
    context = RunContext(lamp_home=lamp_home)
    # `data` names no registered source: it is ignored because --data-dir wins
    dataset = resolve_dataset(
        TinyTask(), data="no-such-source", data_dir=tmp_path / "data", split="dev", scheme="time", context=context
    )
    assert len(dataset.examples) == 2
    assert dataset.source == f"local:{(tmp_path / 'data' / 'time').resolve()}"


def test_data_dir_without_the_split_names_what_it_has(tmp_path, lamp_home):
    _write(tmp_path, QUESTIONS, OUTPUTS, split="train")
    with pytest.raises(LampError, match=r"has no dev_questions.json \(it has train_questions.json\)"):
        resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="dev", context=RunContext(lamp_home=lamp_home))


def test_bad_split_and_scheme_are_one_line_errors(tmp_path, lamp_home):
    context = RunContext(lamp_home=lamp_home)
    with pytest.raises(LampError, match="unknown split 'validation'"):
        resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="validation", context=context)
    with pytest.raises(LampError, match="unknown split scheme 'random'"):
        resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="dev", scheme="random", context=context)


def test_datasets_are_parsed_once_per_context(tmp_path, lamp_home):
    _write(tmp_path, QUESTIONS, OUTPUTS)
    context = RunContext(lamp_home=lamp_home)
    first = resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="dev", context=context)
    again = resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="dev", context=context)
    assert again is first
    _write(tmp_path, QUESTIONS[:1], {"task": "Tiny_1", "golds": [{"id": "1", "output": "no"}]})
    changed = resolve_dataset(TinyTask(), data=None, data_dir=tmp_path, split="dev", context=context)
    assert len(changed.examples) == 1 and changed.examples[0].gold == "no"


class MirrorSource(DataSource):
    """A third-party data source: serves files from a folder given by the test."""

    name = "mirror"
    folder: Path = Path(".")

    def locate(self, task, split, scheme="user", *, download=True):
        return SplitFiles(
            self.folder / f"{split}_questions.json", self.folder / f"{split}_outputs.json", source=f"mirror:{scheme}"
        )


def test_a_registered_third_party_source_is_used_by_name(tmp_path, lamp_home):
    _write(tmp_path, QUESTIONS, OUTPUTS)
    MirrorSource.folder = tmp_path

    plugin = ModuleType("mirror_plugin")
    plugin.lamp_register = hookimpl(lambda registry: registry.add_data_source("mirror", MirrorSource, "test mirror"))
    reset_host(PluginHost(extra_plugins=[("mirror-plugin", plugin)]))
    dataset = resolve_dataset(TinyTask(), data="mirror", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))
    assert dataset.source == "mirror:user" and len(dataset.examples) == 2
    with pytest.raises(LampError, match="Unknown data source 'nope'. Available: .*mirror"):
        resolve_dataset(TinyTask(), data="nope", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))


def test_official_name_maps_to_the_task_and_profile_fields_break_ties():
    assert task_for_official_name("LaMP_3").name == "lamp-3"
    assert task_for_official_name("LaMP-5").name == "lamp-5"
    assert task_for_official_name("LaMP_2").name == "lamp-2"
    news_item = {"id": "1", "title": "t", "text": "x", "category": "sports"}
    assert task_for_official_name("LaMP_2", sample_item=news_item).name == "lamp-2-news"
    with pytest.raises(LampError, match="no registered task has the official name 'LaMP_9'"):
        task_for_official_name("LaMP_9")


# -- the real LaMP records beside the checkout ---------------------------------------------------


def test_real_lamp7_dev_loads_and_validates(shared_data, lamp_home):
    task = host().registry.create("task", "lamp-7")
    dataset = resolve_dataset(
        task, data=None, data_dir=shared_data / "LaMP-7" / "user", split="dev", context=RunContext(lamp_home=lamp_home)
    )
    assert len(dataset.examples) == 1500
    first = dataset.examples[0]
    assert first.id == "610" and first.gold == "got a busy day today.. but i'm bored right now "
    assert [i.id for i in first.profile[:3]] == ["0", "1", "2"]  # items carry no ids: positions
    report = validate_split(
        task, shared_data / "LaMP-7" / "user" / "dev_questions.json", shared_data / "LaMP-7" / "user" / "dev_outputs.json"
    )
    assert report.ok and report.profile.min == 9 and report.profile.max == 226
    assert round(report.profile.mean, 1) == 17.6


@pytest.mark.parametrize(
    "folder,task,splits",
    [
        ("LaMP-1", "lamp-1", {"train": 5, "dev": 3, "test": 4}),
        ("LaMP-2-news-v1", "lamp-2-news", {"train": 4, "dev": 3, "test": 4}),
    ],
)
def test_real_slices_load_every_split(shared_data, lamp_home, folder, task, splits):
    t = host().registry.create("task", task)
    for split, n in splits.items():
        dataset = resolve_dataset(
            t, data=None, data_dir=shared_data / folder / "user", split=split, context=RunContext(lamp_home=lamp_home)
        )
        assert len(dataset.examples) == n
        assert all((e.gold is None) == (split == "test") for e in dataset.examples)
        assert all(item.id for e in dataset.examples for item in e.profile)


def test_cli_validate_real_data_and_infer_the_task(shared_data, capsys):
    from lamp_harness.cli import main

    main(["data", "validate", str(shared_data / "LaMP-2-news-v1" / "user")])
    out = capsys.readouterr().out
    assert "OK lamp-2-news dev: 3 questions" in out and "OK lamp-2-news test: 4 questions" in out


def test_cli_info_overview_task_details_and_lamp6_note(lamp_home, capsys, monkeypatch):
    from lamp_harness.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # rich tables on one line each
    main(["data", "download", "--data", "demo", "--task", "all", "--split", "dev"])
    out = capsys.readouterr().out
    assert "skipped lamp-2-news dev: the demo dataset has no data for task 'lamp-2-news'" in out
    assert (lamp_home / "demo" / "v1" / "lamp-7" / "dev_outputs.json").is_file()
    main(["data", "info"])
    rows = [r.replace("│", " ").split() for r in capsys.readouterr().out.splitlines()]
    assert ["lamp-3", "user:train,", "user:dev", "-", "-", "-"] in rows  # demo has it; the hub, lamp, lamp-qa caches not
    assert ["lamp-2-news", "-", "-", "-", "-"] in rows
    main(["data", "info", "lamp-3"])
    rows = [r.replace("│", " ").split() for r in capsys.readouterr().out.splitlines()]
    assert ["demo", "user", "dev", "89.7", "KB", "40", "40", "8/14.1/15/20", "ok"] in rows
    main(["data", "info", "lamp-6"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Avocado" in out and "not redistributable" in out and "--data-dir DIR" in out
