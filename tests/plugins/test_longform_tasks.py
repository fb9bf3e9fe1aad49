"""LongLaMP and PersonaMem tasks: METEOR equal to NLTK's, prompts within budget, no PersonaMem prompt
that sees the future, the official option extraction, and the demo runs from the CLI."""

from __future__ import annotations

import json
import random
import re

import pytest

from lamp_harness import metrics
from lamp_harness.base.errors import LampError
from lamp_harness.inputs.data import resolve_dataset
from lamp_harness.plugin.contracts import Example, ProfileItem, RunContext
from lamp_harness.plugin.registry import host


class Words:
    """A whitespace tokenizer (a TokenCounter)."""

    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[: max(max_tokens, 0)])


def _task(name: str):
    return host().registry.create("task", name)


# ---------------------------------------------------------------------------------------------
# METEOR
# ---------------------------------------------------------------------------------------------

VOCAB = [
    "the",
    "cat",
    "cats",
    "sat",
    "sitting",
    "on",
    "mat",
    "a",
    "dog",
    "dogs",
    "ran",
    "running",
    "quick",
    "fast",
    "rapid",
    "big",
    "large",
    "small",
    "little",
    "happy",
    "glad",
    "car",
    "automobile",
    "house",
    "home",
    "review",
    "product",
    "works",
    "worked",
    "great",
    "good",
    "bad",
    "terrible",
    "awful",
    ".",
]
UNICODE = ["café", "naïve", "Zürich", "東京", "🙂", "straße", "ÉCOLE", "mañana", "–", "“quoted”", "résumé"]


def _tricky_cases() -> list[tuple[str, str]]:
    rng = random.Random(23)
    cases = [
        ("", ""),
        ("", "something"),
        ("something", ""),
        ("   ", "a"),
        (".", "."),
        ("a", "a"),
        ("The cat sat on the mat.", "The cat sat on the mat."),
        ("the the the the", "the"),
        ("the", "the the the the"),
        ("cat cat dog dog", "dog dog cat cat"),
        ("Hello world. Bye now. See you!", "Hello world. Bye now. See you!"),
        ("big fast automobile", "large rapid car"),
        ("running dogs", "ran dog"),
        ("don't stop, won't stop", "do not stop; will not stop"),
        ("café naïve 東京 🙂", "cafe naive 東京 🙂"),
        ("ÉCOLE Zürich", "école zürich"),
        ("\n\ttabs\nand\nlines\n", "tabs and lines"),
    ]
    while len(cases) < 240:
        kind = len(cases) % 4
        n = rng.randint(1, 30) if kind < 3 else rng.randint(400, 900)  # every fourth: very long
        words = VOCAB + (UNICODE if kind == 1 else [])
        ref = [rng.choice(words) for _ in range(n)]
        if kind == 2:  # repeated words
            ref = [rng.choice(words[:4])] * rng.randint(2, 12) + ref
        hyp = [w if rng.random() < 0.6 else rng.choice(words) for w in ref]
        rng.shuffle(hyp) if rng.random() < 0.3 else None
        hyp = hyp[: rng.randint(0, len(hyp))] if rng.random() < 0.2 else hyp
        cases.append((" ".join(hyp), " ".join(ref)))
    return cases


@pytest.mark.slow
def test_meteor_equals_nltk_on_240_tricky_cases() -> None:
    """Our per-example METEOR against NLTK's meteor_score called the way evaluate's meteor calls it
    for one reference (its tokenization without the Punkt sentence split, see meteor_tokens):
    empty texts, unicode, repeated words, synonyms, stems and outputs of hundreds of words."""
    from nltk.corpus import wordnet as default_wordnet
    from nltk.tokenize import word_tokenize
    from nltk.translate.meteor_score import meteor_score

    cases = _tricky_cases()
    assert len(cases) >= 200
    ours = metrics.meteor_scores([h for h, _ in cases], [r for _, r in cases])
    for (hyp, ref), value in zip(cases, ours, strict=True):
        expected = meteor_score(
            [word_tokenize(ref, preserve_line=True)],
            word_tokenize(hyp, preserve_line=True),
            alpha=0.9,
            beta=3,
            gamma=0.5,
            wordnet=default_wordnet,
        )
        assert value == pytest.approx(expected, abs=1e-12), (hyp[:60], ref[:60])
    assert default_wordnet.get_version() == "3.0"
    assert any(0 < v < 1 for v in ours) and ours[0] == 0.0
    # WordNet synonyms count ("auto" matches "car"; NLTK looks synonyms up after stemming, so
    # "large" -> "larg" finds none for "big", and neither do we).
    synonym, unrelated, stemmed = metrics.meteor_scores(
        ["the auto", "the xyz", "the large"], ["the car", "the car", "the big"]
    )
    assert synonym > 0.9 and unrelated < 0.5 and stemmed == unrelated


def test_meteor_without_wordnet_is_one_line_saying_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(metrics, "wordnet_folders", lambda: [tmp_path / "nowhere"])
    with pytest.raises(LampError) as caught:
        metrics.meteor_scores(["a"], ["a"])
    message = str(caught.value)
    assert "\n" not in message and "WordNet 3.0" in message and "setup-wordnet.sh" in message


# ---------------------------------------------------------------------------------------------
# LongLaMP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["longlamp-abstract", "longlamp-review", "longlamp-topic"])
def test_longlamp_demo_prompts_fit_and_score_three_metrics(name, lamp_home) -> None:
    task = _task(name)
    context = RunContext(lamp_home=lamp_home)
    data = resolve_dataset(task, data="demo", data_dir=None, split="dev", context=context)
    assert len(data.examples) == 40 and task.max_new_tokens >= 256
    for example in data.examples[:10]:
        for k in (1, 4):
            prompt = task.prompt(example, example.profile[:k], Words(), 120)
            assert Words().count(prompt) <= 120
            assert prompt.endswith(example.input) or Words().count(example.input) > 72
        assert task.query(example) and task.document(example.profile[0])
    golds = {ex.id: ex.gold for ex in data.examples[:5]}
    scores = task.example_scores(golds, golds)
    assert [s.name for s in scores] == ["rouge-1", "rouge-L", "meteor"]
    assert all(len(s.ids) == 5 for s in scores)
    assert all(row[0] == pytest.approx(1.0, abs=1e-3) for s in scores[:2] for row in s.rows)


def test_longlamp_temporal_scheme_is_the_time_split() -> None:
    task = _task("longlamp-review")
    assert task.hub_config("user") == "product_review_user"
    assert task.hub_config("time") == "product_review_temporal"
    from lamp_harness.inputs.data import check_scheme

    assert check_scheme("temporal") == "time"


# ---------------------------------------------------------------------------------------------
# PersonaMem
# ---------------------------------------------------------------------------------------------


def test_official_option_extraction() -> None:
    from lamp_tasks.personamem import extract_option

    assert extract_option("<final_answer>(b)") == "(b)"
    assert extract_option("I think (a) fits, but <final_answer> (c) </final_answer>") == "(c)"
    assert extract_option("The answer is c") == "(c)"
    assert extract_option("(a) or (b)") == "(none)"
    assert extract_option("") == "(none)"
    assert extract_option("(d) How about some jazz?") == "(d)"


def _release(folder, n_contexts=3, messages=40, questions=5) -> None:
    """A small PersonaMem release in the official layout: every message carries a marker MSG{i}."""
    import csv

    rng = random.Random(7)
    with open(folder / "shared_contexts_32k.jsonl", "w", encoding="utf-8") as handle:
        for c in range(n_contexts):
            chat = []
            for i in range(messages):
                role = "system" if i % 8 == 0 else ("user" if i % 2 else "assistant")
                chat.append({"role": role, "content": f"ctx{c} MSG{i:03d} some words here"})
            handle.write(json.dumps({f"ctx{c}": chat}) + "\n")
    fields = [
        "persona_id",
        "question_id",
        "question_type",
        "topic",
        "user_question_or_message",
        "correct_answer",
        "all_options",
        "shared_context_id",
        "end_index_in_shared_context",
    ]
    with open(folder / "questions_32k.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for q in range(n_contexts * questions):
            options = [f"({letter}) option {letter} of {q}" for letter in "abcd"]
            writer.writerow(
                {
                    "persona_id": q % n_contexts,
                    "question_id": f"q{q}",
                    "question_type": rng.choice(["recall_user_shared_facts", "suggest_new_ideas"]),
                    "topic": "music",
                    "user_question_or_message": f"Question {q}?",
                    "correct_answer": f"({'abcd'[q % 4]})",
                    "all_options": repr(options),
                    "shared_context_id": f"ctx{q % n_contexts}",
                    "end_index_in_shared_context": rng.randint(1, messages),
                }
            )


def _converted(tmp_path):
    from lamp_tasks.hub import personamem_records

    _release(tmp_path)
    task = _task("personamem-32k")
    questions, golds = personamem_records(task, [tmp_path / "questions_32k.csv", tmp_path / "shared_contexts_32k.jsonl"])
    return task, questions, golds


def test_no_personamem_prompt_sees_context_after_the_question(tmp_path) -> None:
    import csv

    task, questions, golds = _converted(tmp_path)
    ends = {
        f"{r['question_type']}:{r['question_id']}": int(r["end_index_in_shared_context"])
        for r in csv.DictReader(open(tmp_path / "questions_32k.csv", encoding="utf-8"))
    }
    assert len(questions) == 15 and {q["id"] for q in questions} == set(ends)
    for record in questions:
        end = ends[record["id"]]
        profile = tuple(
            ProfileItem(item["id"], i, {k: v for k, v in item.items() if k != "id"})
            for i, item in enumerate(record["profile"])
        )
        example = Example(record["id"], record["input"], profile)
        assert all(item.fields["end"] <= end for item in profile)
        # none, ipa with every k and any order of retrieval, full; generous and tight budgets
        for items in [(), profile, profile[::-1], profile[:1], profile[-2:]]:
            for budget in (40, 400, 100_000):
                prompt = task.prompt(example, items, Words(), budget)
                seen = [int(m) for m in re.findall(r"MSG(\d{3})", prompt)]
                assert all(i < end for i in seen), (record["id"], end, max(seen))
        full = task.prompt(example, profile, Words(), 100_000)
        assert f"MSG{end - 1:03d}" in full  # the latest message before the question is there
    # grouped by context, then in timeline order
    keys = [(re.search(r"ctx(\d)", q["profile"][0]["text"]).group(1), ends[q["id"]]) for q in questions]
    assert keys == sorted(keys)


def test_personamem_context_is_cut_from_the_oldest_end(tmp_path) -> None:
    task, questions, _ = _converted(tmp_path)
    record = max(questions, key=lambda q: len(q["profile"]))
    profile = tuple(
        ProfileItem(item["id"], i, {k: v for k, v in item.items() if k != "id"}) for i, item in enumerate(record["profile"])
    )
    example = Example(record["id"], record["input"], profile)
    prompt = task.prompt(example, profile, Words(), 80)
    assert Words().count(prompt) <= 80 and prompt.endswith(example.input)
    share = task.truncated_share(example, profile, Words(), 80)
    assert 0 < share < 1
    seen = sorted(int(m) for m in re.findall(r"MSG(\d{3})", prompt))
    last = max(int(m) for m in re.findall(r"MSG(\d{3})", task.context_text(profile)))
    assert seen[-1] == last and seen[0] > 0  # the newest kept, the oldest dropped
    assert task.choices(example) == tuple(f"({x}) option {x} of {record['id'].split(':q')[-1]}" for x in "abcd")


def test_personamem_accuracy_per_question_type() -> None:
    task = _task("personamem-32k")
    golds = {"a:1": "(a)", "a:2": "(b)", "b:3": "(c)"}
    predictions = {"a:1": "(a) How about jazz?", "a:2": "<final_answer>(d)", "b:3": "(c)"}
    results = {m.name: m.value for m in task.score(predictions, golds)}
    assert results == pytest.approx({"accuracy": 2 / 3, "accuracy:a": 0.5, "accuracy:b": 1.0})


def test_malformed_personamem_row_is_one_line_naming_file_row_field(tmp_path) -> None:
    from lamp_tasks.hub import personamem_records

    _release(tmp_path)
    text = (tmp_path / "questions_32k.csv").read_text(encoding="utf-8").splitlines()
    text[3] = text[3].replace(",ctx", ",nosuchctx", 1)
    (tmp_path / "questions_32k.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(LampError) as caught:
        personamem_records(_task("personamem-32k"), [tmp_path / "questions_32k.csv", tmp_path / "shared_contexts_32k.jsonl"])
    message = str(caught.value)
    assert "\n" not in message and "questions_32k.csv" in message and "row 4" in message
    assert "shared_context_id" in message


def test_malformed_longlamp_row_is_one_line_naming_file_row_field(tmp_path) -> None:
    from lamp_tasks.hub import longlamp_records

    rows = [
        {"input": "x", "output": "y", "profile": [{"title": "t", "abstract": "a"}]},
        {"input": "x", "output": "y", "profile": [{"title": "t"}]},
    ]
    path = tmp_path / "val.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(LampError) as caught:
        longlamp_records(_task("longlamp-abstract"), "dev", [path])
    message = str(caught.value)
    assert "\n" not in message and "val.jsonl" in message and "row 2" in message and "abstract" in message


# ---------------------------------------------------------------------------------------------
# The CLI, with a model-free generator
# ---------------------------------------------------------------------------------------------


def test_cli_runs_longlamp_and_personamem_demo_and_the_leaderboard_shows_their_metrics(cli, toys, tmp_path):
    out = tmp_path / "runs"
    code, stdout, stderr = cli(
        "run",
        "--task",
        "longlamp-review,personamem-32k",
        "--data",
        "demo",
        "--personalizer",
        "none,ipa,full",
        "--retriever",
        "bm25",
        "--limit",
        "8",
        "--generator",
        "toy-words",
        "--decode",
        "labels",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    code, board, stderr = cli("leaderboard", str(out))
    assert code == 0, stderr
    for column in ("rouge-1", "rouge-L", "meteor", "accuracy"):
        assert column in board
    configs = [json.loads(p.read_text()) for p in out.glob("*/config.json")]
    assert len(configs) == 6
    # PersonaMem predictions record the share of the history the budget cut; other tasks' have no notes
    for cell in out.glob("personamem-32k_*"):
        rows = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
        shares = [row["notes"]["truncated_share"] for row in rows if "notes" in row]
        assert len(shares) == (0 if "_none" in cell.name else 8) and all(0 <= s <= 1 for s in shares)
    for cell in out.glob("longlamp-review_*"):
        assert '"notes"' not in (cell / "predictions.jsonl").read_text()
