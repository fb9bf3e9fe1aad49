"""Paired significance tests against a baseline: the statistics, and `lamp leaderboard --baseline`
end to end on real run folders (toy-echo generator on the demo data)."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from lamp_cli import demo_run
from lamp_cli import lamp_output as lamp
from rouge_score import rouge_scorer
from run_folders import rewrite_config

from lamp_harness import metrics
from lamp_harness.report import significance as sig
from lamp_harness.run.store import SCORES

# -- an independent paired approximate randomization test (plain Python, per-trial loop) ----------


def reference_ar(a_rows, b_rows, metric, trials=4000, seed=7):
    """Noreen's paired approximate randomization: swap each pair with probability 1/2, recompute
    ``metric`` (a function of a list of per-example rows) on both sides, count trials at least as
    far apart as observed; p = (c + 1) / (trials + 1)."""
    rng = random.Random(seed)
    observed = abs(metric(b_rows) - metric(a_rows))
    count = 0
    for _ in range(trials):
        x, y = [], []
        for ra, rb in zip(a_rows, b_rows, strict=True):
            if rng.random() < 0.5:
                ra, rb = rb, ra
            x.append(ra)
            y.append(rb)
        if abs(metric(y) - metric(x)) >= observed - 1e-9:
            count += 1
    return (count + 1) / (trials + 1)


def mean_of(rows):
    return sum(rows) / len(rows)


def macro_f1_of(labels):
    def f1(pairs):  # pairs of (prediction, gold)
        scores = []
        for label in labels:
            tp = sum(p == label and g == label for p, g in pairs)
            fp = sum(p == label and g != label for p, g in pairs)
            fn = sum(p != label and g == label for p, g in pairs)
            scores.append(0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
        return sum(scores) / len(scores)

    return f1


def rmse_of(pairs):  # pairs of (prediction, gold)
    return math.sqrt(sum((p - g) ** 2 for p, g in pairs) / len(pairs))


def test_approximate_randomization_agrees_with_an_independent_implementation():
    rng = np.random.default_rng(3)
    n = 150
    # A mean metric (ROUGE-like per-example scores) with a small true difference.
    a = rng.random(n)
    b = np.clip(a + rng.normal(0.0, 0.2, n), 0, 1)  # clipping alone shifts the mean a little
    ours = sig.paired_test(
        metrics.example_scores("rouge-1", a, statistic="mean", higher_is_better=True),
        metrics.example_scores("rouge-1", b, statistic="mean", higher_is_better=True),
    )
    theirs = reference_ar(list(a), list(b), mean_of)
    assert abs(ours.p_value - theirs) <= 0.03, (ours.p_value, theirs)
    assert 0.01 < theirs < 0.9  # a case where the p-value is informative
    assert ours.trials == 10_000 and ours.n == n and ours.delta == pytest.approx(b.mean() - a.mean())

    # Macro-F1, a corpus-level statistic, recomputed on every trial.
    labels = [f"c{i}" for i in range(5)]
    gold = [labels[i] for i in rng.integers(0, 5, n)]
    pred_a = [g if rng.random() < 0.5 else labels[rng.integers(0, 5)] for g in gold]
    pred_b = [g if rng.random() < 0.62 else labels[rng.integers(0, 5)] for g in gold]
    ours = sig.paired_test(metrics.macro_f1_scores(pred_a, gold, labels), metrics.macro_f1_scores(pred_b, gold, labels))
    theirs = reference_ar(
        list(zip(pred_a, gold, strict=True)), list(zip(pred_b, gold, strict=True)), macro_f1_of(labels), trials=1500
    )
    assert abs(ours.p_value - theirs) <= 0.03, (ours.p_value, theirs)

    # RMSE from squared errors.
    gold_r = rng.integers(1, 6, n).astype(float)
    pa = np.clip(gold_r + rng.integers(-2, 3, n), 1, 5)
    pb = np.clip(gold_r + rng.integers(-2, 3, n) * (rng.random(n) < 0.8), 1, 5)
    ours = sig.paired_test(
        metrics.squared_error_scores(list(pa), list(gold_r)), metrics.squared_error_scores(list(pb), list(gold_r))
    )
    theirs = reference_ar(list(zip(pa, gold_r, strict=True)), list(zip(pb, gold_r, strict=True)), rmse_of, trials=3000)
    assert abs(ours.p_value - theirs) <= 0.03, (ours.p_value, theirs)


def test_identical_systems_get_p_one_and_a_clear_difference_a_tiny_p():
    rng = np.random.default_rng(0)
    a = metrics.example_scores("m", rng.random(200), statistic="mean", higher_is_better=True)
    better = metrics.example_scores("m", np.asarray(a.rows)[:, 0] + 0.2, statistic="mean", higher_is_better=True)
    for test in sig.TESTS:
        assert sig.paired_test(a, a, test=test).p_value == 1.0
        result = sig.paired_test(a, better, test=test)
        assert result.p_value == pytest.approx(1 / (sig.DEFAULT_TRIALS[test] + 1))
        assert result.trials == sig.DEFAULT_TRIALS[test]


def test_bootstrap_agrees_roughly_with_randomization_and_seeds_are_reproducible():
    rng = np.random.default_rng(5)
    a = rng.random(300)
    b = np.clip(a + rng.normal(0.02, 0.25, 300), 0, 1)
    x = metrics.example_scores("m", a, statistic="mean", higher_is_better=True)
    y = metrics.example_scores("m", b, statistic="mean", higher_is_better=True)
    ar, bs = sig.paired_test(x, y, test="ar", seed=1), sig.paired_test(x, y, test="bootstrap", seed=1)
    assert abs(ar.p_value - bs.p_value) < 0.1
    assert sig.paired_test(x, y, seed=1) == ar
    assert sig.paired_test(x, y, seed=2).p_value != ar.p_value


def test_only_shared_examples_are_paired():
    a = metrics.example_scores(
        "m", [1.0, 0.0, 1.0, 0.0], statistic="mean", higher_is_better=True, ids=["q1", "q2", "q3", "q4"]
    )
    b = metrics.example_scores("m", [0.0, 1.0, 1.0], statistic="mean", higher_is_better=True, ids=["q4", "q3", "q9"])
    result = sig.paired_test(a, b)
    assert result.n == 2  # q3 and q4, matched by id whatever the order
    assert result.delta == pytest.approx((1.0 + 0.0) / 2 - (1.0 + 0.0) / 2)


def test_holm_correction():
    assert sig.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert sig.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    adjusted = sig.holm([0.02, float("nan")])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])
    assert sig.correct([0.01, 0.04], "none") == [0.01, 0.04]


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def runs(toys, tmp_path, capsys):
    """Real cells: lamp-7 and lamp-3 on 24 demo questions, none vs IPA (BM25, k=1 and k=2), with the
    toy generator that answers from its prompt's words."""
    out = tmp_path / "runs"
    for task in ("lamp-7", "lamp-3"):
        code, _, err = lamp(
            capsys,
            *demo_run(
                "--personalizer",
                "none,ipa",
                "--retriever",
                "bm25",
                "--k",
                "1,2",
                task=task,
                generator="toy-words",
                limit=24,
                out=out,
            ),
        )
        assert code == 0, err
    return out


def golds_of(task):
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.registry import host

    task_ = host().registry.create("task", task)
    data = resolve_dataset(task_, data="demo", data_dir=None, split="dev", context=RunContext(lamp_home()))
    return {ex.id: ex.gold for ex in data.examples}, {ex.id: len(ex.profile) for ex in data.examples}


def predictions_of(cell: Path):
    lines = (cell / "predictions.jsonl").read_text().splitlines()
    return {r["example_id"]: r["output"] for r in map(json.loads, lines)}


def test_scores_are_stored_beside_the_predictions(runs):
    for cell in runs.iterdir():
        if not (cell / "metrics.json").is_file():
            continue
        stored = json.loads((cell / SCORES).read_text())
        task = json.loads((cell / "config.json").read_text())["task"]
        golds, sizes = golds_of(task)
        assert len(stored["ids"]) == 24 and set(stored["ids"]) <= set(golds)
        assert stored["profile_size"] == [sizes[i] for i in stored["ids"]]
        names = {m["name"]: m for m in stored["metrics"]}
        recorded = {m["name"]: m["value"] for m in json.loads((cell / "metrics.json").read_text())["metrics"]}
        if task == "lamp-7":
            scorer = rouge_scorer.RougeScorer(["rouge1"])
            outputs = predictions_of(cell)
            expected = [scorer.score(golds[i], outputs[i])["rouge1"].fmeasure for i in stored["ids"]]
            assert [r[0] for r in names["rouge-1"]["rows"]] == pytest.approx(expected)
            assert recorded["rouge-1"] == pytest.approx(sum(expected) / len(expected))
        else:
            assert names["RMSE"]["statistic"] == "root_mean"
            assert recorded["RMSE"] == pytest.approx(math.sqrt(mean_of([r[0] for r in names["RMSE"]["rows"]])))


def test_baseline_none_in_every_format_with_p_values_an_independent_test_confirms(runs, capsys, tmp_path):
    code, out, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["significance"] == {
        "baseline": "none",
        "test": "ar",
        "trials": 10000,
        "correction": "holm",
        "seed": 0,
        "alpha": 0.05,
    }
    (block,) = data["blocks"]
    labels = [c["label"] for c in block["columns"]]
    base = next(i for i, c in enumerate(block["columns"]) if c["baseline"])
    assert labels[base].startswith("none")
    # so few demo examples: the leaderboard warns
    assert "fewer than 30 shared examples" in err
    scorer = rouge_scorer.RougeScorer(["rouge1"])
    per_example = {
        "rouge-1": lambda p, g: scorer.score(g, p)["rouge1"].fmeasure,
        "MAE": lambda p, g: abs(float(p) - float(g)),
        "RMSE": lambda p, g: (float(p) - float(g)) ** 2,
    }
    checked = 0
    for row in block["rows"]:
        if row["metric"] not in per_example:
            continue
        golds, _ = golds_of(row["task"])
        base_cell = next(runs / v["cell_id"] for v in row["values"] if v["baseline"])
        tested = [v for v in row["values"] if v and not v["baseline"]]
        assert len(tested) == 2
        for entry in tested:
            assert set(entry) >= {
                "task",
                "metric",
                "column",
                "value",
                "ci_low",
                "ci_high",
                "p_value",
                "significant",
                "test",
                "n_paired",
            }
            assert entry["test"] == "ar" and entry["n_paired"] == 24
            outputs_a, outputs_b = predictions_of(base_cell), predictions_of(runs / entry["cell_id"])
            ids = sorted(outputs_a)
            score = per_example[row["metric"]]
            a = [score(outputs_a[i], golds[i]) for i in ids]
            b = [score(outputs_b[i], golds[i]) for i in ids]
            statistic = (lambda r: math.sqrt(mean_of(r))) if row["metric"] == "RMSE" else mean_of
            assert abs(entry["p_value"] - reference_ar(a, b, statistic, trials=10000)) <= 0.03
            assert entry["delta"] == pytest.approx(statistic(b) - statistic(a))
            checked += 1
        ps = [e["p_value"] for e in tested]
        assert sorted(e["p_adjusted"] for e in tested) == pytest.approx(sorted(sig.holm(ps)))
        assert all(e["significant"] == (e["p_adjusted"] < 0.05) for e in tested)
    assert checked == 6
    # the toy's IPA copies the retrieved tweet, far closer to the gold paraphrase than the bare input
    lamp7 = next(r for r in block["rows"] if (r["task"], r["metric"]) == ("lamp-7", "rouge-1"))
    assert all(v["significant"] for v in lamp7["values"] if not v["baseline"])

    code, md, _ = lamp(capsys, "leaderboard", str(runs), "--baseline", "none")
    assert code == 0
    assert "none / toy-words (baseline)" in md and "†" in md
    assert "† p < 0.05 against the baseline column `none` (paired approximate randomization, 10,000 trials" in md

    code, text, _ = lamp(
        capsys,
        "leaderboard",
        str(runs),
        "--baseline",
        "none",
        "--test",
        "bootstrap",
        "--correction",
        "none",
        "--seed",
        "3",
        "-f",
        "csv",
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {"task", "metric", "column", "value", "ci_low", "ci_high", "p_value", "significant", "test", "n_paired"} <= set(
        rows[0]
    )
    tested = [r for r in rows if r["p_value"]]
    assert len(tested) == 2 * 2 * 2  # tasks x metrics x non-baseline columns
    assert all(r["test"] == "bootstrap" and r["p_value"] == r["p_adjusted"] for r in tested)
    assert all(r["baseline"] == "true" for r in rows if not r["p_value"])


def test_cells_without_stored_scores_are_rescored_from_their_data(runs, capsys):
    _, before, _ = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "json")
    for path in runs.glob(f"*/{SCORES}"):
        path.unlink()
    _, after, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "json")
    assert json.loads(after)["blocks"] == json.loads(before)["blocks"]
    assert "no per-example scores" not in err
    # ... once: the rescored statistics are saved beside the predictions
    assert len(list(runs.glob(f"*/{SCORES}"))) == 6


def test_a_cell_that_cannot_be_rescored_is_named_with_the_reason(runs, capsys):
    victim = next(d for d in runs.iterdir() if d.name.startswith("lamp-7_ipa_bm25_k2"))
    (victim / SCORES).unlink()
    for cell in runs.glob("lamp-7_*"):  # the data here is not the lamp-7 cells' (one table: one data set)
        rewrite_config(cell, lambda c: c["data"].__setitem__("checksums", {"dev_outputs.json": "0" * 64}))
    code, out, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "-f", "json")
    assert code == 0
    assert f"{victim}: no per-example scores" in err and "checksums differ" in err
    row = next(r for r in json.loads(out)["blocks"][0]["rows"] if r["task"] == "lamp-7")
    entry = next(v for v in row["values"] if v["cell_id"] == victim.name)
    assert entry["p_value"] is None and entry["value"] is not None


def test_baseline_that_matches_nothing_or_too_much_is_a_one_line_error(runs, capsys):
    code, _, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "fid")
    assert code == 2 and "no column matches --baseline 'fid'" in err and len(err.strip().splitlines()) == 1
    code, _, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "ipa")
    assert code == 2 and "matches 2 columns" in err
    code, _, err = lamp(capsys, "leaderboard", str(runs), "--baseline", "none", "--test", "t-test")
    assert code == 2 and "unknown test" in err
    # a full label or a cell-id prefix works
    code, out, _ = lamp(capsys, "leaderboard", str(runs), "--baseline", "ipa / bm25 / k=1 / toy-words", "-f", "json")
    assert code == 0 and json.loads(out)["blocks"][0]["columns"][0]["baseline"]


def test_breakdowns_by_profile_size_and_the_win_rate_summary(runs, capsys):
    code, out, err = lamp(
        capsys,
        "leaderboard",
        str(runs),
        "--baseline",
        "none",
        "--by",
        "profile-size",
        "--by",
        "user",
        "--summary",
        "-f",
        "json",
    )
    assert code == 0, err
    data = json.loads(out)
    breakdown, users = data["breakdowns"]
    assert (breakdown["by"], users["by"]) == ("profile-size", "user")
    row = next(r for r in breakdown["rows"] if (r["task"], r["metric"]) == ("lamp-7", "rouge-1"))
    assert sum(b["values"][0]["n"] for b in row["buckets"]) == 24
    assert [b["label"][:2] for b in row["buckets"]] == sorted(b["label"][:2] for b in row["buckets"])
    # demo profile items carry ids, so questions are grouped by user (each demo user asks once here)
    row = next(r for r in users["rows"] if (r["task"], r["metric"]) == ("lamp-7", "rouge-1"))
    (bucket,) = row["buckets"]
    assert [v["n"] for v in bucket["values"]] == [24, 24, 24]
    assert bucket["detail"][:2] == ["24↑ 0↓ of 24 users"] * 2 and bucket["detail"][2] == ""
    (summary,) = data["summaries"]
    rates = {r["column"]: r["win_rate"] for r in summary["rates"]}
    assert set(rates) == {c["label"] for c in data["blocks"][0]["columns"]}
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    # the three columns' rates are shares of pairwise wins: they sum to 3 x (3 - 1) / 2 / 2 per row
    assert sum(rates.values()) == pytest.approx(1.5)
    code, md, _ = lamp(capsys, "leaderboard", str(runs), "--by", "profile-size", "--summary")
    assert "## by profile-size" in md and "Q1: " in md and "## mean win rate" in md
