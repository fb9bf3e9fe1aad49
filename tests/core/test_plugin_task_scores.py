"""Per-example scores for every task: a task that scores with the harness's metric helpers gets
them without extra code, a task whose metrics give none fails the conformance kit, and a plugin
task written from the docs (the worked example of ``docs/plugins.md``, taken from the page as is)
gets significance marks and ``--by profile-size`` rows on its leaderboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from toy_sources import WORDS

from lamp_harness import metrics
from lamp_harness.plugin.contracts import Example, MetricResult, Prediction, ProfileItem
from lamp_harness.report.scores import score_cell
from lamp_harness.testing import check_task

ROOT = Path(__file__).resolve().parents[2]


def docs_task_source() -> str:
    """The Task worked example of docs/plugins.md, verbatim."""
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if "class ToySentiment(Task):" in b]
    return block


def docs_task_class() -> type:
    namespace: dict = {}
    exec(compile(docs_task_source(), "docs/plugins.md", "exec"), namespace)  # noqa: S102
    return namespace["ToySentiment"]


def _examples(n: int = 12) -> list[Example]:
    out = []
    for i in range(n):
        gold = "positive" if i % 2 else "negative"
        profile = tuple(ProfileItem(f"u{i}-{j}", j, {"text": f"review {j}", "label": gold}) for j in range(2 + i % 5))
        out.append(Example(f"q{i}", f"Is this review positive or negative? review: text {i}", profile, gold))
    return out


def test_a_task_scoring_with_the_metric_helpers_gets_per_example_scores_without_extra_code():
    task = docs_task_class()()
    examples = _examples()
    # Half right: answers "negative" everywhere.
    predictions = [Prediction(e.id, "negative", "negative") for e in examples]
    scored = score_cell(task, examples, predictions, seed=3)
    assert scored.scores is not None
    assert [m.name for m in scored.scores.metrics] == ["accuracy", "f1"]
    assert scored.scores.ids == tuple(e.id for e in examples)
    assert scored.scores.profile_size == tuple(len(e.profile) for e in examples)
    # The rows are each example's own, and they reproduce the task's metrics exactly.
    accuracy = scored.scores.metric("accuracy")
    assert accuracy.rows[:, 0].tolist() == [1.0 if e.gold == "negative" else 0.0 for e in examples]
    reported = task.score({e.id: "negative" for e in examples}, {e.id: e.gold for e in examples}, seed=3)
    assert [(m.name, m.value, m.ci_low, m.ci_high) for m in scored.metrics] == [
        (m.name, m.value, m.ci_low, m.ci_high) for m in reported
    ]
    for m, s in zip(scored.metrics, scored.scores.metrics, strict=True):
        assert metrics.summarize(s).value == pytest.approx(m.value, abs=1e-12)
    check_task(task, examples)  # the conformance kit passes it


class _OwnFormula(docs_task_class()):
    """Scores with a formula of its own: no helper sees its examples."""

    def score(self, predictions, golds, *, seed=0):
        ids = sorted(set(predictions) & set(golds))
        right = sum(predictions[i].strip() == golds[i].strip() for i in ids) / len(ids)
        return [MetricResult("accuracy", right, True, n=len(ids))]


class _Filtering(docs_task_class()):
    """Scores with a helper but over a subset of the examples: its rows would not be its metric's."""

    def score(self, predictions, golds, *, seed=0):
        ids = sorted(set(predictions) & set(golds))
        kept = [i for i in ids if predictions[i] == "positive"] or ids
        return [metrics.accuracy([predictions[i] for i in kept], [golds[i] for i in kept], seed=seed)]


def test_a_task_whose_metrics_give_no_per_example_scores_fails_the_conformance_kit():
    task = _OwnFormula()
    examples = _examples()
    scored = score_cell(task, examples, [Prediction(e.id, "positive", "") for e in examples], seed=0)
    assert scored.scores is None and scored.metrics  # metrics still, but no per-example scores
    with pytest.raises(AssertionError, match="offers no per-example scores"):
        check_task(task, examples)


def test_rows_that_do_not_reproduce_the_metric_are_not_kept():
    task = _Filtering()
    examples = _examples()
    # Scored over q1, q3, q5 only (all right: 1.0), while the rows of all twelve give 0.75.
    answers = [Prediction(e.id, "positive" if i in (1, 3, 5) else "negative", "") for i, e in enumerate(examples)]
    scored = score_cell(task, examples, answers, seed=0)
    assert scored.scores is None and [m.value for m in scored.metrics] == [1.0]


# -- the acceptance: a plugin task from the docs gets † marks and profile-size rows ---------------

PLUGIN = (
    """
from pathlib import Path

from lamp_harness.plugin.contracts import Generation, Generator
from lamp_harness.inputs.data import DataSource, SplitFiles
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.base.io import atomic_write_json

"""
    + WORDS
    + '''

class Habit(Generator):
    """Answers with the label of the best retrieved review, else "negative"."""

    name = "habit"

    def __init__(self, context, **args):
        self.batch_size = 8

    @property
    def tokens(self):
        return Words()

    def generate(self, requests, *, decode="generate"):
        return [Generation(r.retrieved[0].get("label") if r.retrieved else "negative", 1, 1) for r in requests]


class Reviews(DataSource):
    """40 users; each asks once; the profile (2 to 9 reviews) shows the user's habit."""

    name = "toy-sentiment"
    schemes = ("user",)

    def locate(self, task, split, scheme="user", *, download=True):
        folder = Path(self.context.lamp_home) / "toy-sentiment"
        questions, golds = [], []
        for i in range(40):
            gold = "positive" if i % 2 else "negative"
            profile = [{"id": f"u{i}-{j}", "text": f"a lukewarm review number {j}", "label": gold}
                       for j in range(2 + i % 8)]
            questions.append({"id": f"q{i}", "input": f"Is this review positive or negative? Answer with one "
                                                      f"word. review: a lukewarm review {i}", "profile": profile})
            golds.append({"id": f"q{i}", "output": gold})
        atomic_write_json(folder / f"{split}_questions.json", questions)
        atomic_write_json(folder / f"{split}_outputs.json", {"task": "Toy_Sentiment", "golds": golds})
        return SplitFiles(folder / f"{split}_questions.json", folder / f"{split}_outputs.json", "toy-sentiment:v1")


@hookimpl
def lamp_register(registry):
    registry.add_task("toy-sentiment", ToySentiment, "Toy review sentiment (accuracy, macro-F1).")
    registry.add_generator("habit", Habit, "answers with the best retrieved review's label")
    registry.add_data_source("toy-sentiment", Reviews, "toy reviews")
'''
)


def test_a_plugin_task_written_from_the_docs_gets_significance_and_profile_size_rows(site, cli, tmp_path):
    site.add("lamp-docs-task", "1.0", docs=docs_task_source() + PLUGIN)
    out = tmp_path / "out"
    code, stdout, err = cli(
        "run",
        "--task",
        "toy-sentiment",
        "--personalizer",
        "none,ipa",
        "--retriever",
        "bm25",
        "--generator",
        "habit",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stdout + err
    cells = sorted(out.glob("*/config.json"))
    assert len(cells) == 2 and all((c.parent / "scores.json").is_file() for c in cells)

    code, md, err = cli("leaderboard", str(out), "--baseline", "none", "--by", "profile-size")
    assert code == 0, md + err
    assert "offers no per-example scores" not in md + err
    ipa_row = [line for line in md.splitlines() if "toy-sentiment" in line and "accuracy" in line][0]
    assert "†" in ipa_row  # ipa 1.0 against none 0.5 over 40 examples
    assert "## by profile-size" in md and "Q1: " in md

    code, data, err = cli("leaderboard", str(out), "--baseline", "none", "--by", "profile-size", "-f", "json")
    assert code == 0, err
    board = json.loads(data)
    (breakdown,) = board["breakdowns"]
    row = next(r for r in breakdown["rows"] if r["metric"] == "accuracy")
    assert sum(b["values"][0]["n"] for b in row["buckets"]) == 40
    values = next(r for r in board["blocks"][0]["rows"] if r["metric"] == "accuracy")["values"]
    assert any(v.get("p_value") is not None and v["p_value"] < 0.05 for v in values)
