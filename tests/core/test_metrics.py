"""Native metrics on hand-computed cases, ROUGE against rouge-score's own numbers, and the seeded
bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamp_harness import metrics


def test_accuracy_is_exact_match_share():
    result = metrics.accuracy(["[1]", "[2]", "x"], ["[1]", "[1]", "[2]"])
    assert result.name == "accuracy" and result.higher_is_better
    assert result.value == pytest.approx(1 / 3)
    assert result.n == 3


def test_macro_f1_averages_over_every_label_and_counts_invalid_predictions_as_misses():
    labels = ["a", "b", "c", "d"]
    golds = ["a", "a", "b", "c"]
    preds = ["a", "not-a-label", "b", "b"]
    # a: tp1 fp0 fn1 -> 2/3; b: tp1 fp1 fn0 -> 2/3; c: tp0 fp0 fn1 -> 0; d: absent everywhere -> 0.
    result = metrics.macro_f1(preds, golds, labels)
    assert result.name == "f1" and result.higher_is_better
    assert result.value == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)


def test_macro_f1_perfect_predictions_over_a_partial_label_set_are_penalised_like_sklearn():
    # sklearn's f1_score(labels=range(3), average="macro") gives 2/3 here: label 2 scores 0.
    result = metrics.macro_f1(["x", "y"], ["x", "y"], ["x", "y", "z"])
    assert result.value == pytest.approx(2 / 3)


def test_mae_and_rmse_are_lower_is_better():
    mae = metrics.mae([5.0, 1.0, 3.0], [3.0, 1.0, 4.0])
    rmse = metrics.rmse([5.0, 1.0, 3.0], [3.0, 1.0, 4.0])
    assert (mae.name, rmse.name) == ("MAE", "RMSE")
    assert mae.value == pytest.approx(1.0)
    assert rmse.value == pytest.approx(math.sqrt(5 / 3))
    assert not mae.higher_is_better and not rmse.higher_is_better


def test_rouge_hand_computed():
    r1, rl = metrics.rouge(["the cat sat", "mat the"], ["the cat sat on the mat", "the mat"])
    # 1: unigram overlap 3, P=1, R=1/2 -> 2/3 for both. 2: unigrams all match -> 1; LCS 1 -> 1/2.
    assert r1.value == pytest.approx((2 / 3 + 1) / 2)
    assert rl.value == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_rouge_matches_rouge_score_itself():
    from rouge_score import rouge_scorer

    preds = [
        "Enjoying the cool weather while walking to class!",
        "I wish Torchwood was on now",
        "",
        "Running... running, running.",
    ]
    refs = [
        "Enjoying the cool weather as I walk to my Anthro class  I love the cali weather...",
        "I really wish Torchwood Children of Earth was on now ",
        "something",
        "running",
    ]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    expected = [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]
    r1, rl = metrics.rouge(preds, refs)
    assert r1.value == pytest.approx(np.mean([s["rouge1"].fmeasure for s in expected]))
    assert rl.value == pytest.approx(np.mean([s["rougeL"].fmeasure for s in expected]))
    assert r1.n == rl.n == 4 and r1.higher_is_better


def test_rouge_does_not_stem():
    r1, _ = metrics.rouge(["running"], ["run"])
    assert r1.value == 0.0


def test_bootstrap_is_reproducible_for_a_seed_and_changes_with_it():
    values = np.random.default_rng(7).random(200).tolist()
    a = metrics.mean_metric("m", values, higher_is_better=True, seed=3)
    b = metrics.mean_metric("m", values, higher_is_better=True, seed=3)
    c = metrics.mean_metric("m", values, higher_is_better=True, seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.value < a.ci_high
    # The percentile interval of a mean of 200 uniforms: about +-1.96 * 0.289 / sqrt(200) = +-0.04.
    assert 0.06 < a.ci_high - a.ci_low < 0.10


def test_bootstrap_of_a_constant_is_a_point():
    result = metrics.accuracy(["a"] * 10, ["a"] * 10)
    assert (result.value, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)


def test_resample_counts_match_drawing_examples_with_replacement():
    counts = metrics.resample_counts(5, seed=11, resamples=20)
    draws = np.random.default_rng(11).integers(0, 5, size=(20, 5))
    expected = np.stack([np.bincount(row, minlength=5) for row in draws])
    assert (counts == expected).all()
    assert (counts.sum(axis=1) == 5).all()


def test_vectorized_macro_f1_bootstrap_equals_recomputing_on_each_resample():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    golds = [labels[i] for i in rng.integers(0, 3, 40)]
    preds = [labels[i] if i < 3 else "junk" for i in rng.integers(0, 4, 40)]
    result = metrics.macro_f1(preds, golds, labels, seed=5, resamples=60)
    draws = np.random.default_rng(5).integers(0, 40, size=(60, 40))
    statistics = [
        metrics.macro_f1([preds[i] for i in row], [golds[i] for i in row], labels, resamples=1).value for row in draws
    ]
    low, high = np.percentile(statistics, [2.5, 97.5])
    assert result.ci_low == pytest.approx(min(low, result.value))
    assert result.ci_high == pytest.approx(max(high, result.value))


def test_macro_f1_interval_contains_the_value_even_when_rare_classes_vanish_in_resamples():
    labels = [str(i) for i in range(15)]
    golds = labels + ["0"] * 5  # 14 classes appear once: most resamples lose some of them
    result = metrics.macro_f1(golds, golds, labels, seed=0)
    assert result.value == 1.0
    assert result.ci_low < 1.0 and result.ci_high == 1.0


def test_rmse_interval_is_the_square_root_of_the_bootstrapped_mse():
    preds, golds = [1.0, 2.0, 5.0, 4.0, 3.0], [1.0, 4.0, 1.0, 4.0, 5.0]
    result = metrics.rmse(preds, golds, seed=2, resamples=50)
    squared = np.array([(p - g) ** 2 for p, g in zip(preds, golds, strict=True)])
    draws = np.random.default_rng(2).integers(0, 5, size=(50, 5))
    low, high = np.percentile(np.sqrt(squared[draws].mean(axis=1)), [2.5, 97.5])
    assert result.ci_low == pytest.approx(low) and result.ci_high == pytest.approx(high)


def test_bootstrap_is_fast_for_a_full_dev_set():
    import time

    rng = np.random.default_rng(1)
    labels = [str(i) for i in range(15)]
    golds = [labels[i] for i in rng.integers(0, 15, 5000)]
    preds = [labels[i] for i in rng.integers(0, 15, 5000)]
    start = time.perf_counter()
    metrics.macro_f1(preds, golds, labels)
    metrics.accuracy(preds, golds)
    assert time.perf_counter() - start < 5.0


def test_mismatched_or_empty_inputs_are_bugs():
    with pytest.raises(ValueError):
        metrics.accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        metrics.mae([], [])
