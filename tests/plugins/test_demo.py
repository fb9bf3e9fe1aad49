"""The synthetic demo dataset: deterministic, valid for all seven tasks, with its planted signals."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from lamp_tasks import demo

from lamp_harness.base.errors import LampError
from lamp_harness.inputs.data import resolve_dataset, validate_split
from lamp_harness.plugin.contracts import RunContext
from lamp_harness.plugin.registry import host

TASKS = ("lamp-1", "lamp-2", "lamp-3", "lamp-4", "lamp-5", "lamp-6", "lamp-7")


def _load(task: str, split: str, home: Path):
    t = host().registry.create("task", task)
    return t, resolve_dataset(t, data="demo", data_dir=None, split=split, context=RunContext(lamp_home=home))


def test_two_generations_are_byte_identical(tmp_path):
    for task in TASKS:
        a = demo.ensure_demo(tmp_path / "a", task)
        b = demo.ensure_demo(tmp_path / "b", task)
        for name in ("train_questions.json", "train_outputs.json", "dev_questions.json", "dev_outputs.json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), (task, name)
    assert demo.render(demo.generate("lamp-3", "dev")) == demo.render(demo.generate("lamp-3", "dev"))
    assert demo.generate("lamp-3", "dev") != demo.generate("lamp-3", "train")


def test_generation_is_atomic_and_reused(tmp_path):
    folder = demo.ensure_demo(tmp_path, "lamp-7")
    stamp = (folder / "dev_questions.json").stat().st_mtime_ns
    assert demo.ensure_demo(tmp_path, "lamp-7") == folder
    assert (folder / "dev_questions.json").stat().st_mtime_ns == stamp  # not regenerated
    assert [p.name for p in tmp_path.iterdir()] == ["lamp-7"]  # no temporary folder left


@pytest.mark.parametrize("task", TASKS)
def test_every_task_loads_and_validates(task, lamp_home):
    t, dev = _load(task, "dev", lamp_home)
    _, train = _load(task, "train", lamp_home)
    assert (len(train.examples), len(dev.examples)) == (80, 40)
    assert dev.source == f"demo:v{demo.VERSION}"
    folder = lamp_home / "demo" / f"v{demo.VERSION}" / task
    for split in ("train", "dev"):
        report = validate_split(t, folder / f"{split}_questions.json", folder / f"{split}_outputs.json")
        assert report.ok, report.problems[:3]
        assert 8 <= report.profile.min and report.profile.max <= 20
    for example in dev.examples:
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", item.date or "") for item in example.profile)
        assert task_query_is_the_payload(t, example)
    # user-based split: train and dev users (their profile items) are disjoint
    train_items = {i.id for e in train.examples for i in e.profile}
    assert not train_items & {i.id for e in dev.examples for i in e.profile}
    # the time-based scheme is served from the same files
    _, timed = (
        t,
        resolve_dataset(t, data="demo", data_dir=None, split="dev", scheme="time", context=RunContext(lamp_home=lamp_home)),
    )
    assert timed.fingerprint == dev.fingerprint


def task_query_is_the_payload(task, example) -> bool:
    """The task's query extraction finds the payload in the demo's input (official templates)."""
    query = task.query(example)
    instruction = example.input.split(":", 1)[0]  # the template's words before the payload
    return (
        bool(query.strip())
        and _words(query) <= _words(example.input)
        and len(query) < len(example.input)
        and instruction not in query
    )


def test_demo_has_no_test_split_and_no_other_tasks(lamp_home):
    with pytest.raises(LampError, match="no test split"):
        _load("lamp-4", "test", lamp_home)
    with pytest.raises(LampError, match="no data for task 'lamp-2-news'"):
        _load("lamp-2-news", "dev", lamp_home)


# -- planted signals (read from the files only) ---------------------------------------------------


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_lamp1_correct_reference_shares_words_with_the_users_papers(lamp_home):
    _, dev = _load("lamp-1", "dev", lamp_home)
    golds = Counter()
    for e in dev.examples:
        refs = re.findall(r'\[(\d)\]: "([^"]+)"', e.input)
        profile_words = set().union(*(_words(i.get("title")) for i in e.profile))
        generic = {"for", "systems"} | {w.lower() for w in demo.TITLE_ADJ + demo.TITLE_NOUN}
        overlap = {n: len((_words(t) - generic) & profile_words) for n, t in refs}
        right = e.gold.strip("[]")
        wrong = "2" if right == "1" else "1"
        assert overlap[right] >= 2 and overlap[wrong] == 0, (e.id, refs)
        # the paper title of the question gives nothing away
        title = re.search(r'title "([^"]+)"', e.input).group(1)
        assert title in demo.GENERIC_TITLES
        golds[e.gold] += 1
    assert min(golds.values()) >= 12  # both answers occur: no constant guess wins


def test_lamp2_gold_is_the_users_favourite_tag_and_the_input_is_ambiguous(lamp_home):
    _, dev = _load("lamp-2", "dev", lamp_home)
    for e in dev.examples:
        tags = Counter(i.get("tag") for i in e.profile)
        assert tags.most_common(1)[0][0] == e.gold
        description = e.input.split("description:", 1)[1]
        cued = [t for t, cues in demo.TAG_CUES.items() if any(c in _words(description) for c in cues)]
        assert e.gold in cued and len(cued) >= 2  # a cue for the gold and for a distractor


def test_lamp3_users_rate_with_a_constant_bias(lamp_home):
    _, dev = _load("lamp-3", "dev", lamp_home)
    phrase_score = {p: s for s, phrases in demo.SENTIMENT.items() for p in phrases}

    def sentiment(text: str) -> int:
        return next(s for p, s in phrase_score.items() if f" {p}." in text)

    biases = []
    for e in dev.examples:
        offsets = {int(i.get("score")) - sentiment(i.get("text")) for i in e.profile}
        assert len(offsets) == 1  # the profile shows one bias
        review = e.input.split("review:", 1)[1]
        assert int(e.gold) - sentiment(review) == offsets.pop()
        biases.append(int(e.gold) - sentiment(review))
    assert Counter(biases)[0] < len(biases) / 2  # most users are biased


@pytest.mark.parametrize(
    "task,field,signature",
    [
        ("lamp-4", "title", lambda s: s.split()[0]),
        ("lamp-5", "title", lambda s: s.split()[0]),
        ("lamp-6", "title", lambda s: s.split()[0]),
        ("lamp-7", "text", lambda s: " ".join(w for w in s.split() if w.isupper() or w.startswith("#"))),
    ],
)
def test_generation_users_have_a_signature_the_input_lacks(lamp_home, task, field, signature):
    _, dev = _load(task, "dev", lamp_home)
    signatures = set()
    for e in dev.examples:
        mine = {signature(i.get(field)) for i in e.profile}
        assert mine == {signature(e.gold)}, (e.id, mine, e.gold)
        assert signature(e.gold) not in e.input  # only the profile reveals it
        signatures.add(signature(e.gold))
    assert len(signatures) >= 4  # users differ


def test_demo_files_are_in_the_official_format(lamp_home):
    _load("lamp-5", "dev", lamp_home)
    folder = lamp_home / "demo" / f"v{demo.VERSION}" / "lamp-5"
    questions = json.loads((folder / "dev_questions.json").read_text())
    outputs = json.loads((folder / "dev_outputs.json").read_text())
    assert set(questions[0]) == {"id", "input", "profile"}
    assert set(questions[0]["profile"][0]) == {"id", "title", "abstract", "date"}
    assert outputs["task"] == "LaMP_5" and set(outputs["golds"][0]) == {"id", "output"}
    assert questions[0]["input"].startswith("Generate a title for the following abstract of a paper: ")
