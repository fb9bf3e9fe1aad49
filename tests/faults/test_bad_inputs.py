"""A corpus of bad inputs a new user types: each gives exit code 2, exactly one line ``Error: ...``
on stderr, no traceback, and loses nothing (a finished run folder stays byte for byte the same).

Each entry is ``(id, argv, expected fragment)``; ``{runs}`` is a finished run folder and ``{bad}``
a folder of prepared bad files (see ``bad_files``)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from lamp_cli import TOYS

from lamp_harness.cli import main

RUN = ("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--quiet", "--limit", "3")
TRAIN = ("train", "--task", "lamp-7", "--personalizer", "pplug", "--data", "demo")
RANK = ("rank", "--task", "lamp-7", "--retriever", "bm25", "--data", "demo")

CORPUS: list[tuple[str, tuple[str, ...], str]] = [
    # -- lamp run: values
    ("run-limit-zero", (*RUN, "--limit", "0"), "--limit"),
    ("run-limit-negative", (*RUN, "--limit", "-1"), "--limit"),
    ("run-limit-word", (*RUN, "--limit", "two"), "--limit"),
    ("run-k-zero", (*RUN, "--k", "0"), "k values must be at least 1"),
    ("run-k-word", (*RUN, "--k", "a"), "not a list of integers"),
    ("run-k-negative", (*RUN, "--k", "1,-2"), "at least 1"),
    ("run-batch-size-zero", (*RUN, "--batch-size", "0"), "--batch-size"),
    ("run-batch-size-word", (*RUN, "--batch-size", "big"), "--batch-size"),
    ("run-num-beams-zero", (*RUN, "--num-beams", "0"), "--num-beams"),
    ("run-num-beams-word", (*RUN, "--num-beams", "abc"), "--num-beams"),
    ("run-max-input-tokens-zero", (*RUN, "--max-input-tokens", "0"), "--max-input-tokens"),
    ("run-seed-negative", (*RUN, "--seed", "-1"), "--seed"),
    ("run-seed-word", (*RUN, "--seed", "x"), "--seed"),
    ("run-decode-unknown", (*RUN, "--decode", "maybe"), "--decode"),
    ("run-task-unknown", (*RUN, "--task", "lamp-99"), "Unknown task"),
    ("run-personalizer-unknown", (*RUN, "--personalizer", "nosuch"), "Unknown personalizer"),
    ("run-retriever-unknown", (*RUN, "--personalizer", "ipa", "--retriever", "bm52"), "Unknown retriever"),
    ("run-preset-unknown", (*RUN, "--preset", "ofline"), "Unknown preset"),
    ("run-scheme-unknown", (*RUN, "--scheme", "users"), "scheme"),
    ("run-split-unknown", (*RUN, "--split", "validate"), "split"),
    ("run-data-unknown", (*RUN, "--data", "nosuch"), "nosuch"),
    ("run-device-unknown", (*RUN, "--device", "gpu0"), "is not a device"),
    ("run-retriever-arg-no-equals", (*RUN, "--retriever-arg", "k1"), "KEY=VALUE"),
    ("run-personalizer-arg-no-equals", (*RUN, "--personalizer-arg", "=x"), "KEY=VALUE"),
    ("run-generator-arg-no-equals", (*RUN, "--generator-arg", "dtype"), "KEY=VALUE"),
    ("run-train-arg-no-equals", (*RUN, "--train-arg", "steps"), "KEY=VALUE"),
    ("run-misspelled-option", (*RUN, "--limt", "2"), "--limit"),
    ("run-option-without-value", (*RUN, "--task"), "--task"),
    ("run-missing-task", ("run", "--data", "demo", "--out", "{runs}"), "no task given"),
    # -- lamp run: paths
    ("run-data-dir-missing", (*RUN, "--data-dir", "{bad}/nope"), "does not exist"),
    ("run-data-dir-is-a-file", (*RUN, "--data-dir", "{bad}/latin1.json"), "is not a folder"),
    ("run-data-dir-symlink-loop", (*RUN, "--data-dir", "{bad}/loop"), "symbolic link loop"),
    ("run-data-dir-questions-loop", (*RUN, "--data-dir", "{bad}/split-with-loop"), "symbolic link loop"),
    ("run-data-dir-without-split", (*RUN, "--data-dir", "{bad}/empty"), "has no dev_questions.json"),
    ("run-out-is-a-file", (*RUN, "--out", "{bad}/latin1.json"), "is a file"),
    ("run-out-under-a-file", (*RUN, "--out", "{bad}/latin1.json/runs"), "not a folder"),
    ("run-checkpoint-missing", (*RUN, "--personalizer", "pplug", "--checkpoint", "{bad}/nope"), "does not exist"),
    ("run-checkpoint-empty", (*RUN, "--personalizer", "pplug", "--checkpoint", "{bad}/empty"), "no checkpoint here"),
    # -- lamp run --config: files and schema
    ("config-missing", ("run", "--config", "{bad}/nope.toml"), "not found"),
    ("config-is-a-folder", ("run", "--config", "{bad}/empty"), "is a folder"),
    ("config-not-utf8", ("run", "--config", "{bad}/latin1.toml"), "not UTF-8"),
    ("config-syntax-error", ("run", "--config", "{bad}/syntax.toml"), "syntax.toml:2"),
    ("config-unknown-key", ("run", "--config", "{bad}/retreiver.toml"), "Did you mean 'retriever'"),
    ("config-limit-string", ("run", "--config", "{bad}/limit-string.toml"), "limit"),
    ("config-limit-bool", ("run", "--config", "{bad}/limit-bool.toml"), "limit"),
    ("config-seed-string", ("run", "--config", "{bad}/seed-string.toml"), "seed"),
    ("config-data-number", ("run", "--config", "{bad}/data-number.toml"), "data = 5"),
    ("config-k-zero", ("run", "--config", "{bad}/k-zero.toml"), "k = [0]"),
    ("config-group-not-tables", ("run", "--config", "{bad}/group.toml"), "group"),
    ("config-group-bad-value", ("run", "--config", "{bad}/group-value.toml"), 'k = "x"'),
    # -- lamp train
    ("train-missing-task", ("train", "--personalizer", "pplug"), "--task"),
    ("train-epochs-zero", (*TRAIN, "--epochs", "0"), "--epochs"),
    ("train-batch-size-zero", (*TRAIN, "--batch-size", "0"), "--batch-size"),
    ("train-grad-accum-zero", (*TRAIN, "--grad-accum", "0"), "--grad-accum"),
    ("train-lr-zero", (*TRAIN, "--lr", "0"), "--lr"),
    ("train-lr-word", (*TRAIN, "--lr", "fast"), "--lr"),
    ("train-warmup-too-big", (*TRAIN, "--warmup", "2"), "warmup"),
    ("train-users-too-big", (*TRAIN, "--train-users", "1.5"), "--train-users"),
    ("train-max-steps-zero", (*TRAIN, "--max-steps", "0"), "--max-steps"),
    ("train-personalizer-unknown", ("train", "--task", "lamp-7", "--personalizer", "plug"), "Unknown personalizer"),
    ("train-preset-unknown", (*TRAIN, "--preset", "nope"), "Unknown preset"),
    ("train-out-is-a-file", (*TRAIN, "--out", "{bad}/latin1.json"), "is a file"),
    # -- lamp rank
    ("rank-top-negative", (*RANK, "--out", "{bad}/r.json", "--top", "-1"), "--top"),
    ("rank-limit-negative", (*RANK, "--out", "{bad}/r.json", "--limit", "-1"), "--limit"),
    ("rank-preset-unknown", (*RANK, "--out", "{bad}/r.json", "--preset", "nope"), "Unknown preset"),
    ("rank-out-is-a-folder", (*RANK, "--out", "{bad}/empty"), "is a folder"),
    ("rank-missing-out", RANK, "--out"),
    # -- lamp data
    ("data-validate-missing", ("data", "validate", "{bad}/nope.json", "--task", "lamp-7"), "does not exist"),
    ("data-validate-show-negative", ("data", "validate", "{bad}/latin1.json", "--show", "-1"), "--show"),
    ("data-validate-not-utf8", ("data", "validate", "{bad}/latin1.json", "--task", "lamp-7"), "not UTF-8"),
    ("data-validate-symlink-loop", ("data", "validate", "{bad}/loop.json", "--task", "lamp-7"), "loop"),
    ("data-download-task-unknown", ("data", "download", "--task", "lamp-99"), "Unknown task"),
    ("data-download-scheme-unknown", ("data", "download", "--task", "lamp-7", "--scheme", "x"), "scheme"),
    ("data-info-task-unknown", ("data", "info", "lamp-99"), "Unknown task"),
    # -- lamp evaluate
    (
        "evaluate-golds-missing",
        ("evaluate", "--golds", "{bad}/nope.json", "--predictions", "{bad}/nope.json"),
        "does not exist",
    ),
    (
        "evaluate-both-modes",
        ("evaluate", "--golds", "{bad}/g.json", "--predictions", "{bad}/g.json", "--submission", "{bad}/damaged.zip"),
        "exactly one",
    ),
    (
        "evaluate-damaged-zip",
        ("evaluate", "--golds", "{bad}/damaged.zip", "--submission", "{bad}/damaged.zip"),
        "damaged zip",
    ),
    (
        "evaluate-golds-not-utf8",
        ("evaluate", "--golds", "{bad}/latin1.json", "--predictions", "{bad}/latin1.json"),
        "not UTF-8",
    ),
    (
        "evaluate-out-is-a-folder",
        ("evaluate", "--golds", "{bad}/g.json", "--predictions", "{bad}/g.json", "--out", "{bad}/empty"),
        "is a folder",
    ),
    # -- lamp leaderboard / export / models
    ("leaderboard-missing-folder", ("leaderboard", "{bad}/nope"), "does not exist"),
    ("leaderboard-format-unknown", ("leaderboard", "{runs}", "--format", "xml"), "format"),
    ("leaderboard-reference-unknown", ("leaderboard", "{runs}", "--reference", "lamp-usr"), "lamp-usr"),
    ("leaderboard-plot-format", ("leaderboard", "{runs}", "--plot", "{bad}/board.gif"), ".png or .svg"),
    ("leaderboard-out-under-a-file", ("leaderboard", "{runs}", "--out", "{bad}/latin1.json/x.md"), "not a folder"),
    ("export-missing-submission", ("export", "{runs}"), "--submission"),
    ("export-select-no-equals", ("export", "{runs}", "--submission", "{bad}/sub", "--select", "ipa"), "KEY=VALUE"),
    ("export-no-cells-of-split", ("export", "{runs}", "--submission", "{bad}/sub"), "no finished cells for split"),
    ("export-submission-is-a-file", ("export", "{runs}", "--submission", "{bad}/latin1.json"), "is a file"),
    ("models-preset-unknown", ("models", "--preset", "nope"), "Unknown preset"),
    # -- the command line itself
    ("bare-lamp", (), "missing command"),
    ("unknown-command", ("runs",), "No such command"),
    ("unknown-subcommand", ("data", "downlaod"), "No such command"),
]


def test_the_corpus_is_big_and_unique():
    assert len(CORPUS) >= 60
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A finished `lamp run` folder (toy generator, demo data) that no bad input may touch."""
    root = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAMP_HOME", str(root / "home"))
        patch.syspath_prepend(str(TOYS))
        from lamp_harness.plugin import registry

        registry.reset_host(None)
        try:
            main([*RUN, "--out", str(root / "runs")])
        except SystemExit as exc:
            assert not exc.code, exc.code
        finally:
            registry.reset_host(None)
    return root / "runs"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    bad = tmp_path_factory.mktemp("bad")
    (bad / "empty").mkdir()
    (bad / "latin1.json").write_bytes('[{"id": "caf\xe9"}]'.encode("latin-1"))
    (bad / "latin1.toml").write_bytes('task = "caf\xe9"\n'.encode("latin-1"))
    (bad / "g.json").write_text('{"task": "LaMP_7", "golds": [{"id": "1", "output": "x"}]}')
    os.symlink(bad / "loop", bad / "loop")
    os.symlink(bad / "loop.json", bad / "loop.json")
    (bad / "split-with-loop").mkdir()
    os.symlink(bad / "split-with-loop" / "dev_questions.json", bad / "split-with-loop" / "dev_questions.json")
    with zipfile.ZipFile(bad / "whole.zip", "w") as zf:
        zf.writestr("LaMP_7.json", (bad / "g.json").read_text() * 50)
    data = (bad / "whole.zip").read_bytes()
    (bad / "damaged.zip").write_bytes(data[: len(data) // 2])
    tomls = {
        "syntax.toml": 'task = ["lamp-7"]\nlimit = = 3\n',
        "retreiver.toml": 'task = ["lamp-7"]\nretreiver = ["bm25"]\n',
        "limit-string.toml": 'task = ["lamp-7"]\nlimit = "two"\n',
        "limit-bool.toml": 'task = ["lamp-7"]\nlimit = true\n',
        "seed-string.toml": 'task = ["lamp-7"]\nseed = "abc"\n',
        "data-number.toml": 'task = ["lamp-7"]\ndata = 5\n',
        "k-zero.toml": 'task = ["lamp-7"]\nk = [0]\n',
        "group.toml": 'task = ["lamp-7"]\ngroup = 3\n',
        "group-value.toml": 'task = ["lamp-7"]\n[[group]]\nk = "x"\n',
    }
    for name, text in tomls.items():
        (bad / name).write_text(text)
    return bad


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(("name", "argv", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    name, argv, expected, finished_runs, bad_files, capsys, monkeypatch, tmp_path
):
    monkeypatch.syspath_prepend(str(TOYS))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(finished_runs)
    args = [a.format(runs=finished_runs, bad=bad_files) for a in argv]
    if argv[:1] == ("run",) and "--out" not in args and "--config" not in args:
        args[1:1] = ["--out", str(finished_runs)]  # a bad input must never touch finished results
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("Error: ") and "Traceback" not in captured.err + captured.out
    assert expected in lines[0], lines[0]
    assert _snapshot(finished_runs) == before
