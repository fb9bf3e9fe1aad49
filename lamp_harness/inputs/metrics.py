"""Task-agnostic metrics with seeded bootstrap 95% intervals.

Every metric is computed natively from per-example values (no scikit-learn, no ``evaluate``), and
its interval is a percentile bootstrap over examples: ``resamples`` resamples of the examples with
replacement drawn from ``numpy.random.default_rng(seed)``, the statistic recomputed on each, and
the 2.5th and 97.5th percentiles reported (widened, if need be, to contain the value). All
resamples are drawn at once as a count matrix (``resamples x n``: how often each example appears
in each resample), so every statistic is a matrix product, fast for thousands of examples.

Names follow the official LaMP scorer's keys: ``accuracy``, ``f1`` (macro), ``MAE``, ``RMSE``,
``rouge-1``, ``rouge-L``; long-form tasks add ``meteor`` (NLTK's METEOR, see :func:`meteor_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamp_harness.plugin.contracts import ExampleScores, MetricResult

if TYPE_CHECKING:
    import numpy as np

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95

_CAPTURED: ContextVar[tuple[list[ExampleScores], bool] | None] = ContextVar("lamp_harness_captured_scores", default=None)


@contextmanager
def capturing(*, rows_only: bool = False) -> Iterator[list[ExampleScores]]:
    """Collect, in a list, the per-example scores behind every metric the helpers of this module
    compute inside the block (:func:`summarize` and everything built on it, and
    :func:`mean_metric` without a transform). How the harness gets per-example scores from a
    task that computes its metrics with these helpers and writes no ``example_scores``.
    ``rows_only``: the helpers skip their bootstrap (their metrics come without intervals), for
    when only the rows are wanted."""
    captured: list[ExampleScores] = []
    token = _CAPTURED.set((captured, rows_only))
    try:
        yield captured
    finally:
        _CAPTURED.reset(token)


def _capture(scores: ExampleScores) -> bool:
    """Record ``scores`` when capturing; whether the caller may skip its bootstrap."""
    state = _CAPTURED.get()
    if state is None:
        return False
    state[0].append(scores)
    return state[1]


def resample_counts(n: int, *, seed: int, resamples: int = DEFAULT_RESAMPLES) -> np.ndarray:
    """A ``resamples x n`` matrix: how often each of ``n`` examples is drawn in each bootstrap
    resample (each row sums to ``n``). The same ``seed`` and ``n`` give the same matrix, so every
    metric of a run is bootstrapped over the same resamples."""
    import numpy as np

    if n <= 0:
        raise ValueError("cannot bootstrap an empty set of examples")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = np.arange(resamples)[:, None] * n
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)


def percentile_interval(statistics: np.ndarray, value: float) -> tuple[float, float]:
    """The central ``CONFIDENCE`` percentile interval of bootstrap statistics, widened to contain
    ``value`` (the statistic on the full sample). A biased statistic can fall outside its own
    percentile interval: macro-F1 over a fixed label set drops in every resample that loses a
    rare class, so its resamples sit below the full-sample value."""
    import numpy as np

    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    statistics = np.asarray(statistics, dtype=np.float64)
    statistics = statistics[~np.isnan(statistics)]
    if not len(statistics):
        return value, value
    low, high = np.percentile(statistics, [tail, 100.0 - tail])
    return min(float(low), value), max(float(high), value)


STATISTICS = ("mean", "root_mean", "macro_f1", "ratio")
"""How summed per-example rows become a metric (see :func:`combine`)."""


def combine(statistic: str, totals: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """The metric from per-example rows summed over a set of ``n`` examples.

    ``totals`` has the rows' width in its last axis and any leading shape (one total per
    resample, trial or bucket), so thousands of resamples are one call. ``mean``: the mean of the
    one column; ``root_mean``: its square root (RMSE from squared errors); ``macro_f1``: the
    columns are per-label true positive, false positive and false negative counts, and the
    result is scikit-learn's macro-F1 over every label (0 for a label absent from both sides);
    ``ratio``: the sum of the first column over the sum of the second (a metric over a subgroup of
    the examples, e.g. accuracy per question type: rows ``[correct and in the group, in the group]``;
    a resample without a member of the group gives NaN, which intervals skip).
    """
    import numpy as np

    totals = np.asarray(totals, dtype=np.float64)
    if statistic == "mean":
        return totals[..., 0] / n
    if statistic == "root_mean":
        return np.sqrt(totals[..., 0] / n)
    if statistic == "macro_f1":
        tp, fp, fn = np.split(totals, 3, axis=-1)
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            per_label = np.where(denominator > 0, 2 * tp / denominator, 0.0)
        return per_label.mean(axis=-1)
    if statistic == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals[..., 1] > 0, totals[..., 0] / totals[..., 1], np.nan)
    raise ValueError(f"unknown statistic {statistic!r} (known: {', '.join(STATISTICS)})")


def summarize(scores: ExampleScores, *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> MetricResult:
    """The metric of per-example ``scores`` with its bootstrap interval: the statistic
    recomputed from the rows summed over each resample."""
    import numpy as np

    rows_only = _capture(scores)
    rows = np.asarray(scores.rows, dtype=np.float64)
    n = len(rows)
    if rows_only:
        value = float(combine(scores.statistic, rows.sum(axis=0), n))
        return MetricResult(scores.name, value, scores.higher_is_better, None, None, n)
    counts = resample_counts(n, seed=seed, resamples=resamples).astype(np.float64)
    # One column: a matrix-vector product, so the sums are bit-identical to a plain mean's.
    totals = (counts @ rows[:, 0])[:, None] if rows.shape[1] == 1 else counts @ rows
    statistics = combine(scores.statistic, totals, n)
    value = float(combine(scores.statistic, rows.sum(axis=0), n))
    low, high = percentile_interval(statistics, value)
    return MetricResult(scores.name, value, scores.higher_is_better, low, high, n)


def example_scores(
    name: str,
    rows: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    statistic: str,
    higher_is_better: bool,
    ids: Sequence[str] | None = None,
) -> ExampleScores:
    """Per-example ``rows`` as :class:`ExampleScores` (``ids`` default to positions)."""
    import numpy as np

    array = np.asarray(rows, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r} (known: {', '.join(STATISTICS)})")
    names = tuple(str(i) for i in ids) if ids is not None else tuple(str(i) for i in range(len(array)))
    if len(names) != len(array):
        raise ValueError(f"{len(names)} ids for {len(array)} rows")
    return ExampleScores(name, higher_is_better, statistic, names, array)


def mean_metric(
    name: str,
    values: Sequence[float],
    *,
    higher_is_better: bool,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> MetricResult:
    """A metric that is the mean of per-example ``values`` (optionally passed through
    ``transform``, e.g. a square root for RMSE), with its bootstrap interval."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    # A plain mean: its per-example rows are the values.
    if transform is None and _capture(example_scores(name, array, statistic="mean", higher_is_better=higher_is_better)):
        return MetricResult(name, float(array.mean()), higher_is_better, None, None, n)
    counts = resample_counts(n, seed=seed, resamples=resamples)
    means = counts @ array / n
    value = np.asarray(array.mean())
    if transform is not None:
        means, value = transform(means), transform(value)
    low, high = percentile_interval(means, float(value))
    return MetricResult(name, float(value), higher_is_better, low, high, n)


# -- per-example rows of the LaMP scorer's metrics ----------------------------------------------


def shared_ids(task: str, predictions: Mapping[str, object], golds: Mapping[str, object]) -> list[str]:
    """The ids of ``golds`` that ``predictions`` answers, in gold order: the examples a task
    scores. None in common is a one-line error naming the task (predictions of another task or
    split)."""
    ids = [i for i in golds if i in predictions]
    if not ids:
        from lamp_harness.base.errors import lamp_error

        raise lamp_error(
            f"no prediction id matches a gold id ({len(predictions)} predictions, {len(golds)} golds)",
            where=f"task {task}",
            fix="Score predictions against the golds of the same task and split.",
        )
    return ids


def accuracy_scores(predictions: Sequence[str], golds: Sequence[str], ids: Sequence[str] | None = None) -> ExampleScores:
    """``accuracy`` rows: 1 where the prediction equals its gold (exact string match)."""
    _check_lengths(predictions, golds)
    correct = [float(p == g) for p, g in zip(predictions, golds, strict=True)]
    return example_scores("accuracy", correct, statistic="mean", higher_is_better=True, ids=ids)


def macro_f1_scores(
    predictions: Sequence[str],
    golds: Sequence[str],
    labels: Sequence[str],
    *,
    name: str = "f1",
    ids: Sequence[str] | None = None,
) -> ExampleScores:
    """Macro-F1 rows: per label, whether the example is a true positive, false positive or false
    negative (see :func:`macro_f1` for the semantics)."""
    import numpy as np

    _check_lengths(predictions, golds)
    index = {label: i for i, label in enumerate(labels)}
    gold_idx = np.array([index.get(g, -1) for g in golds])
    pred_idx = np.array([index.get(p, -1) for p in predictions])
    classes = np.arange(len(labels))
    gold_is = gold_idx[:, None] == classes[None, :]
    pred_is = pred_idx[:, None] == classes[None, :]
    rows = np.concatenate([gold_is & pred_is, pred_is & ~gold_is, gold_is & ~pred_is], axis=1)
    return example_scores(name, rows, statistic="macro_f1", higher_is_better=True, ids=ids)


def absolute_error_scores(
    predictions: Sequence[float], golds: Sequence[float], ids: Sequence[str] | None = None
) -> ExampleScores:
    """``MAE`` rows: absolute errors."""
    _check_lengths(predictions, golds)
    errors = [abs(float(p) - float(g)) for p, g in zip(predictions, golds, strict=True)]
    return example_scores("MAE", errors, statistic="mean", higher_is_better=False, ids=ids)


def squared_error_scores(
    predictions: Sequence[float], golds: Sequence[float], ids: Sequence[str] | None = None
) -> ExampleScores:
    """``RMSE`` rows: squared errors (the metric is the root of their mean)."""
    _check_lengths(predictions, golds)
    squared = [(float(p) - float(g)) ** 2 for p, g in zip(predictions, golds, strict=True)]
    return example_scores("RMSE", squared, statistic="root_mean", higher_is_better=False, ids=ids)


def rouge_example_scores(
    predictions: Sequence[str], references: Sequence[str], ids: Sequence[str] | None = None
) -> list[ExampleScores]:
    """``rouge-1`` and ``rouge-L`` rows: per-example F-measures."""
    rouge1, rouge_l = rouge_scores(predictions, references)
    return [
        example_scores("rouge-1", rouge1, statistic="mean", higher_is_better=True, ids=ids),
        example_scores("rouge-L", rouge_l, statistic="mean", higher_is_better=True, ids=ids),
    ]


METEOR_PARAMETERS = {"alpha": 0.9, "beta": 3.0, "gamma": 0.5}
"""NLTK's (and ``evaluate``'s) METEOR defaults."""
WORDNET_ENV = "LAMP_NLTK_DATA"
"""A folder holding ``corpora/wordnet`` (WordNet 3.0) for METEOR, searched first."""
WORDNET_FIX = (
    "Install it with: bash scripts/setup-wordnet.sh (copies Debian's wordnet-base and "
    "wordnet-sense-index into .venv/share/lamp-harness/nltk_data; or pass a folder and set "
    f"{WORDNET_ENV} to it)."
)


def wordnet_folders() -> list[Path]:
    """Where METEOR looks for WordNet (``corpora/wordnet`` below each), in order:
    ``$LAMP_NLTK_DATA``, ``$LAMP_HOME/nltk_data``, and the virtualenv's
    ``share/lamp-harness/nltk_data`` (where ``scripts/setup-wordnet.sh`` installs it)."""
    import os
    import sys

    from lamp_harness.base.io import lamp_home

    folders = [Path(os.environ[WORDNET_ENV])] if os.environ.get(WORDNET_ENV) else []
    folders += [lamp_home() / "nltk_data", Path(sys.prefix) / "share" / "lamp-harness" / "nltk_data"]
    return folders


def wordnet() -> Any:
    """NLTK's WordNet 3.0 reader, loaded from :func:`wordnet_folders` only (never from NLTK's
    other default places, so every machine scores with the same data). A missing or other-version
    WordNet is a one-line :class:`~lamp_harness.base.errors.LampError` saying how to install it."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from lamp_harness.base.errors import lamp_error

    for folder in wordnet_folders():
        root = folder / "corpora" / "wordnet"
        if (root / "lexnames").is_file() and (root / "data.noun").is_file():
            key = str(root.resolve())
            if key not in _WORDNETS:
                import nltk

                # NLTK reads corpora only below a folder of its data path.
                if str(folder.resolve()) not in nltk.data.path:
                    nltk.data.path.append(str(folder.resolve()))
                import warnings

                with warnings.catch_warnings():  # "multilingual functions are not available": not used
                    warnings.simplefilter("ignore", UserWarning)
                    reader = WordNetCorpusReader(key, None)
                version = reader.get_version()
                if version != "3.0":
                    raise lamp_error(f"METEOR needs WordNet 3.0, found WordNet {version}", where=str(root), fix=WORDNET_FIX)
                _WORDNETS[key] = reader
            return _WORDNETS[key]
    looked = ", ".join(str(f / "corpora" / "wordnet") for f in wordnet_folders())
    raise lamp_error(f"METEOR needs WordNet 3.0, which is not installed (looked in {looked})", fix=WORDNET_FIX)


_WORDNETS: dict[str, Any] = {}


def meteor_tokens(text: str) -> list[str]:
    """The tokens METEOR compares: NLTK's ``word_tokenize`` with ``preserve_line=True`` (the
    Treebank word tokenizer over the whole text). ``evaluate``'s ``meteor`` calls ``word_tokenize``
    without it, which first splits sentences with NLTK's Punkt model (``punkt_tab``); that model is
    no registry package, so it is not used: sentence-final periods inside a text stay attached to
    their word (``"end."``) where the Punkt split would make them tokens of their own."""
    from nltk.tokenize import word_tokenize

    return word_tokenize(text, preserve_line=True)


def meteor_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Per-example METEOR: NLTK's ``single_meteor_score(reference_tokens, prediction_tokens)``
    with :data:`METEOR_PARAMETERS`, WordNet 3.0 synonyms (:func:`wordnet`), Porter stems and
    :func:`meteor_tokens`, one reference per example (as ``evaluate``'s ``meteor`` with one
    reference)."""
    from nltk.translate.meteor_score import single_meteor_score

    _check_lengths(predictions, references)
    reader = wordnet()
    return [
        float(single_meteor_score(meteor_tokens(r), meteor_tokens(p), wordnet=reader, **METEOR_PARAMETERS))
        for p, r in zip(predictions, references, strict=True)
    ]


def meteor_example_scores(
    predictions: Sequence[str], references: Sequence[str], ids: Sequence[str] | None = None
) -> ExampleScores:
    """``meteor`` rows: per-example METEOR (:func:`meteor_scores`)."""
    return example_scores("meteor", meteor_scores(predictions, references), statistic="mean", higher_is_better=True, ids=ids)


# -- the metrics themselves -----------------------------------------------------------------------


def accuracy(
    predictions: Sequence[str], golds: Sequence[str], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> MetricResult:
    """Share of predictions equal to their gold (exact string match; callers strip first)."""
    return summarize(accuracy_scores(predictions, golds), seed=seed, resamples=resamples)


def macro_f1(
    predictions: Sequence[str],
    golds: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    name: str = "f1",
) -> MetricResult:
    """Macro-F1 over the FULL label set, with scikit-learn's
    ``f1_score(labels=range(len(labels)), average="macro")`` semantics:

    - per label, F1 = 2·TP / (2·TP + FP + FN), and 0 when the label is absent from both the golds
      and the predictions (scikit-learn's ``zero_division`` default);
    - the macro average is over every label, present or not;
    - a prediction outside ``labels`` is a miss (a false negative) for its gold's label and a false
      positive for no label.

    The bootstrap resamples whole examples and recomputes the confusion counts per resample.
    """
    scores = macro_f1_scores(predictions, golds, labels, name=name)
    return summarize(scores, seed=seed, resamples=resamples)


def mae(
    predictions: Sequence[float], golds: Sequence[float], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> MetricResult:
    """Mean absolute error (lower is better)."""
    return summarize(absolute_error_scores(predictions, golds), seed=seed, resamples=resamples)


def rmse(
    predictions: Sequence[float], golds: Sequence[float], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> MetricResult:
    """Root mean squared error (lower is better); the interval is the square root of the
    bootstrapped mean squared error."""
    return summarize(squared_error_scores(predictions, golds), seed=seed, resamples=resamples)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[float]]:
    """Per-example ROUGE-1 and ROUGE-L F-measures from rouge-score (no stemming, its default
    tokenizer, one reference per example)."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    rouge1, rouge_l = [], []
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        rouge1.append(scores["rouge1"].fmeasure)
        rouge_l.append(scores["rougeL"].fmeasure)
    return rouge1, rouge_l


def rouge(
    predictions: Sequence[str], references: Sequence[str], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> list[MetricResult]:
    """``rouge-1`` and ``rouge-L``: the mean per-example F-measure. (The official scorer reports
    the median of 1,000 unseeded bootstrap means, which is the mean up to resampling noise.)"""
    return [summarize(s, seed=seed, resamples=resamples) for s in rouge_example_scores(predictions, references)]


def _check_lengths(predictions: Sequence[object], golds: Sequence[object]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("no examples to score")
