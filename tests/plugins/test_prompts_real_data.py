"""Queries and prompts on real LaMP records (the ``shared_data`` fixture: skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamp_harness.base.tokens import WhitespaceTokenCounter
from lamp_harness.plugin.contracts import Example, ProfileItem
from lamp_harness.plugin.registry import host


def task(name: str):
    return host().registry.create("task", name)


def load(folder: Path, split: str) -> list[Example]:
    """Read a questions file (and its golds when present) into Examples, as the loaders do."""
    questions = json.loads((folder / f"{split}_questions.json").read_text(encoding="utf-8"))
    outputs = folder / f"{split}_outputs.json"
    golds = {}
    if outputs.exists():
        golds = {g["id"]: g["output"] for g in json.loads(outputs.read_text(encoding="utf-8"))["golds"]}
    examples = []
    for q in questions:
        profile = tuple(
            ProfileItem(id=str(p.get("id", position)), position=position, fields={k: v for k, v in p.items() if k != "id"})
            for position, p in enumerate(q["profile"])
        )
        examples.append(Example(q["id"], q["input"], profile, golds.get(q["id"])))
    return examples


def test_ipa_prompt_of_the_first_lamp7_dev_record_is_byte_exact(shared_data):
    first = load(shared_data / "LaMP-7" / "user", "dev")[0]
    prompt = task("lamp-7").prompt(first, first.profile[:1], WhitespaceTokenCounter(), max_tokens=256)
    expected = (
        "\"@stonesimon haha. no sorry i wasn't on twitter for abit. yaa i love soaps. not as "
        'addicted as i used to be. but still love em "  are written by a person. Following the '
        "given patterns Paraphrase the following tweet without any explanation before or after "
        "it: Although I have a lot to do today, I am currently feeling unoccupied."
    )
    assert prompt == expected


def test_lamp7_dev_queries_are_the_tweets(shared_data):
    t = task("lamp-7")
    examples = load(shared_data / "LaMP-7" / "user", "dev")
    assert len(examples) == 1500
    prefix = "Paraphrase the following tweet without any explanation before or after it:"
    for ex in examples:
        assert ex.input.startswith(prefix)
        assert t.query(ex) == ex.input[len(prefix) :].strip()
        assert t.query(ex)
        assert all(set(t.profile_fields) <= set(p.fields) for p in ex.profile)
        assert t.validate_gold(ex.gold) is None


@pytest.mark.slow
def test_lamp7_dev_prompts_stay_within_budget_under_the_strict_budget(shared_data, minilm_tokens):
    t = task("lamp-7")
    examples = load(shared_data / "LaMP-7" / "user", "dev")[:150]
    for ex in examples:
        for k in (1, 4):
            prompt = t.prompt(ex, ex.profile[:k], minilm_tokens, max_tokens=256, budget="strict")
            assert minilm_tokens.count(prompt) <= 256
            assert prompt.endswith(ex.input)
        strict = t.prompt(ex, ex.profile[:8], minilm_tokens, max_tokens=64, budget="strict")
        assert minilm_tokens.count(strict) <= 64


@pytest.mark.parametrize("split", ["dev", "train", "test"])
def test_lamp1_real_records(shared_data, minilm_tokens, split):
    t = task("lamp-1")
    for ex in load(shared_data / "LaMP-1" / "user", split):
        quoted = ex.input.split('"')
        assert t.query(ex) == f"{quoted[3]} {quoted[5]}"  # the [1] and [2] titles
        assert all(set(t.profile_fields) <= set(p.fields) for p in ex.profile)
        if ex.gold is not None:
            assert t.validate_gold(ex.gold) is None
        for k in (1, 4, 16):
            prompt = t.prompt(ex, ex.profile[:k], minilm_tokens, max_tokens=256, budget="strict")
            assert minilm_tokens.count(prompt) <= 256
            assert prompt.startswith('For an author who has written the paper with the title, and "')
            assert prompt.endswith(ex.input[ex.input.index("title") + len("title") :])


def test_lamp1_real_query_by_hand(shared_data):
    first = load(shared_data / "LaMP-1" / "user", "dev")[0]
    assert task("lamp-1").query(first) == (
        "Pronunciation Modeling for Improved Spelling Correction Path following algorithm for highly redundant manipulators"
    )


@pytest.mark.parametrize("split", ["dev", "train", "test"])
def test_old_lamp2_news_real_records(shared_data, minilm_tokens, split):
    t = task("lamp-2-news")
    for ex in load(shared_data / "LaMP-2-news-v1" / "user", split):
        assert t.query(ex) == ex.input[ex.input.index("article:") + len("article:") :].strip()
        assert all(set(p.fields) == set(t.profile_fields) for p in ex.profile)
        assert all(t.validate_gold(p.get("category")) is None for p in ex.profile)
        if ex.gold is not None:
            assert t.validate_gold(ex.gold) is None
        for k in (1, 4):
            prompt = t.prompt(ex, ex.profile[:k], minilm_tokens, max_tokens=256)
            assert minilm_tokens.count(prompt) <= 256
            assert prompt.startswith('the category for the article: "')


def test_old_lamp2_news_first_dev_prompt_by_hand(shared_data):
    first = load(shared_data / "LaMP-2-news-v1" / "user", "dev")[0]
    item = first.profile[0]
    prompt = task("lamp-2-news").prompt(first, (item,), WhitespaceTokenCounter(), max_tokens=100_000)
    assert prompt == f'the category for the article: "{item.get("text")}" is "politics" . {first.input}'
