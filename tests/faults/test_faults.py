"""Fault injection: kill -9 at seeded random moments, damaged cache and store files, unwritable
paths. Each fault must cost nothing: the rerun gives byte-identical results, or the user gets one
line saying what to do."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lamp_cli import LAMP_PROCESS, demo_run, pplug_train, toys_env
from lamp_cli import lamp_code as _lamp

from lamp_harness.run.store import METRICS, PREDICTIONS

RUN = demo_run("--personalizer", "ipa", "--retriever", "bm25", limit=24)
SEED = 20260


def _lamp_process(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [*LAMP_PROCESS, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _lines(out: Path) -> int:
    found = list(out.glob("*/predictions.jsonl")) if out.exists() else []
    return found[0].read_bytes().count(b"\n") if found else 0


@pytest.fixture
def reference_run(toys, tmp_path):
    """One uninterrupted `lamp run` of the toy matrix, in this process."""
    assert _lamp(*RUN, "--out", str(tmp_path / "reference")) == 0
    (cell,) = [d for d in (tmp_path / "reference").iterdir() if d.is_dir()]
    return cell


@pytest.mark.slow
def test_kill_9_at_seeded_random_moments_of_lamp_run_then_resume_is_byte_identical(reference_run, tmp_path):
    rng = random.Random(SEED)
    out, home = tmp_path / "runs", tmp_path / "home"
    env = toys_env(LAMP_HOME=str(home), LAMP_TOY_DELAY="0.15")
    # Kill moments: while starting up (seeded delay), then at seeded prediction counts plus a
    # seeded extra pause, so kills land between and during batch writes.
    killed = 0
    moments = [("time", rng.uniform(0.2, 1.5))] + [("lines", n) for n in sorted(rng.sample(range(1, 22), 3))]
    for kind, value in moments:
        proc = _lamp_process([*RUN, "--out", str(out)], env)
        deadline = time.time() + 120
        if kind == "time":
            time.sleep(value)
        else:
            while _lines(out) < value and proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed += proc.returncode == -signal.SIGKILL
        cell = out / reference_run.name
        assert not (cell / METRICS).exists() or proc.returncode == 0
    assert killed == len(moments)  # every kill landed before the run finished
    proc = _lamp_process([*RUN, "--out", str(out)], toys_env(LAMP_HOME=str(home), LAMP_TOY_DELAY="0"))
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()
    cell = out / reference_run.name
    assert (cell / PREDICTIONS).read_bytes() == (reference_run / PREDICTIONS).read_bytes()
    assert json.loads((cell / METRICS).read_text()) == json.loads((reference_run / METRICS).read_text())


@pytest.mark.slow
def test_kill_9_at_seeded_random_moments_of_lamp_train_then_resume_gives_the_same_weights(
    tiny_llama_dir, tiny_encoder_dir, tmp_path
):
    from safetensors.torch import load_file

    from lamp_harness.train.training import latest_checkpoint

    args = [
        *pplug_train(tiny_llama_dir, tiny_encoder_dir),
        "--limit",
        "8",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--save-every",
        "1",
        "--eval-split",
        "none",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--quiet",
    ]
    env = toys_env(LAMP_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    assert _lamp(*args, "--out", str(tmp_path / "whole")) == 0  # uninterrupted, in this process

    rng = random.Random(SEED)
    killed = 0
    cut = tmp_path / "cut"
    for target in sorted(rng.sample(range(1, 4), 2)):
        proc = _lamp_process([*args, "--out", str(cut)], env)
        deadline = time.time() + 180
        while proc.poll() is None and time.time() < deadline:
            try:
                if json.loads((cut / "latest.json").read_text())["step"] >= target:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.2))  # lands inside a step or a checkpoint write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed += proc.returncode == -signal.SIGKILL
    assert killed == 2  # both kills landed before training finished
    assert _lamp(*args, "--out", str(cut)) == 0  # resumes
    a = load_file(str(latest_checkpoint(tmp_path / "whole") / "weights.safetensors"))
    b = load_file(str(latest_checkpoint(cut) / "weights.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


# -- damaged cache and store files ----------------------------------------------------------------


def _garble_entry(path: Path) -> None:
    data = json.loads(path.read_text())
    first = next(iter(data["rankings"]))
    data["rankings"][first][1] = [999] + data["rankings"][first][1][1:]  # out of range
    path.write_text(json.dumps(data))


def _swap_entry(path: Path) -> None:
    """A still-valid permutation, different from the computed one: only the checksum sees it."""
    data = json.loads(path.read_text())
    entry = next(e for e in data["rankings"].values() if len(e[1]) > 1)
    entry[1][0], entry[1][1] = entry[1][1], entry[1][0]
    path.write_text(json.dumps(data))


RANKING_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbled": lambda p: p.write_bytes(b"\x00\xff" * 50),
    "deleted": lambda p: p.unlink(),
    "entry-out-of-range": _garble_entry,
    "entry-swapped": _swap_entry,
}


@pytest.mark.parametrize("damage", sorted(RANKING_DAMAGE))
def test_a_damaged_ranking_cache_is_rebuilt_not_used(damage, toys, tmp_path, lamp_home, capsys):
    args = demo_run("--personalizer", "ipa", "--retriever", "bm25", limit=6)
    assert _lamp(*args, "--out", str(tmp_path / "first")) == 0
    (cache,) = (lamp_home / "rankings").rglob("*.json")
    RANKING_DAMAGE[damage](cache)
    capsys.readouterr()
    assert _lamp(*args, "--out", str(tmp_path / "second")) == 0
    err = capsys.readouterr().err
    if damage != "deleted":
        assert "warning:" in err and str(cache) in err
    (first,) = [d for d in (tmp_path / "first").iterdir() if d.is_dir()]
    second = tmp_path / "second" / first.name
    assert (second / PREDICTIONS).read_bytes() == (first / PREDICTIONS).read_bytes()
    assert json.loads(cache.read_text())["sha256"]  # rewritten whole


def _shard(lamp_home: Path) -> Path:
    return sorted((lamp_home / "embeddings").rglob("shard-*.npz"))[0]


EMBEDDING_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "garbled": lambda p: p.write_bytes(p.read_bytes()[:-40] + b"\x01" * 40),
    "deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", sorted(EMBEDDING_DAMAGE))
def test_a_damaged_embedding_shard_is_re_encoded(damage, tmp_path, lamp_home, capsys):
    import numpy as np

    from lamp_harness.inputs.cache import EmbeddingCache

    texts = [f"text {i}" for i in range(5)]

    def encode(batch):
        return np.array([[float(len(t)), float(t[-1] == "3"), 1.0] for t in batch])

    first = EmbeddingCache(lamp_home, {"model": "toy"}).get_or_encode(texts, encode)
    EMBEDDING_DAMAGE[damage](_shard(lamp_home))
    capsys.readouterr()
    again = EmbeddingCache(lamp_home, {"model": "toy"})
    assert np.array_equal(again.get_or_encode(texts, encode), first)
    assert again.encoded == 5
    if damage != "deleted":
        assert "is corrupt" in capsys.readouterr().err


def test_concurrent_encoders_of_one_cache_take_turns(lamp_home):
    """Two caches of one identity (two processes, in effect): the second waits for the first's
    lock and then reuses its vectors instead of encoding them again."""
    import threading

    import numpy as np

    from lamp_harness.inputs.cache import EmbeddingCache

    texts = [f"text {i}" for i in range(8)]
    started = threading.Event()

    def slow(batch):
        started.set()
        time.sleep(0.3)
        return np.ones((len(batch), 4))

    a, b = EmbeddingCache(lamp_home, {"model": "toy"}), EmbeddingCache(lamp_home, {"model": "toy"})
    b._load()  # opened before a writes anything
    worker = threading.Thread(target=a.get_or_encode, args=(texts, slow))
    worker.start()
    started.wait(5)
    b.get_or_encode(texts, slow)
    worker.join()
    assert a.encoded == 8 and b.encoded == 0


CHECKPOINT_DAMAGE = {
    "weights-truncated": lambda c: (c / "weights.safetensors").write_bytes((c / "weights.safetensors").read_bytes()[:50]),
    "weights-garbled": lambda c: (c / "weights.safetensors").write_bytes(
        (c / "weights.safetensors").read_bytes()[:-8] + b"\x00" * 8
    ),
    "trainer-state-garbled": lambda c: (c / "trainer_state.pt").write_bytes(b"not a torch file"),
    "config-deleted": lambda c: (c / "config.json").unlink(),
}


@pytest.fixture(scope="module")
def trained(tiny_llama_dir, tiny_encoder_dir, tmp_path_factory):
    """A finished tiny PPlug training folder with two checkpoints (steps 1 and 2)."""
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.train.training import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        task="lamp-7",
        personalizer="pplug",
        personalizer_args={"encoder": str(tiny_encoder_dir)},
        generator=str(tiny_llama_dir),
        generator_args={"num_beams": "1"},
        data="demo",
        eval_split=None,
        limit=4,
        batch_size=2,
        max_steps=2,
        save_every=1,
        seed=1,
        device="cpu",
    )
    context = RunContext(lamp_home=root / "home", seed=1, device="cpu")
    train(config, root / "run", context=context, progress=False)
    return root / "run", config, context


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_is_skipped_when_resuming_and_refused_when_given(damage, trained, tmp_path, capsys):
    import shutil

    from lamp_harness.base.errors import LampError
    from lamp_harness.train.training import latest_checkpoint, load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    newest = latest_checkpoint(run)
    CHECKPOINT_DAMAGE[damage](newest)
    capsys.readouterr()
    fallback = latest_checkpoint(run)
    assert fallback is not None and fallback != newest and fallback.name < newest.name
    assert "is damaged" in capsys.readouterr().err
    with pytest.raises(LampError) as info:
        load_checkpoint(object(), newest)  # the user's own checkpoint: a one-line error, no guess
    assert "\n" not in str(info.value) and "damaged" in str(info.value) and "lamp train" in str(info.value)


def test_a_damaged_download_is_fetched_again(tmp_path, lamp_home, capsys):
    from lamp_tasks import download

    folder = lamp_home / "data" / "lamp" / "user" / "lamp-7"
    folder.mkdir(parents=True)
    good = b'[{"id": "1", "input": "x", "profile": []}]'
    (folder / "dev_questions.json").write_bytes(good)
    from lamp_harness.base.io import atomic_write_json, file_sha256

    atomic_write_json(
        folder / download.CHECKSUMS,
        {"dev_questions.json": {"sha256": file_sha256(folder / "dev_questions.json"), "bytes": len(good), "url": "x"}},
    )
    recorded = download._read_checksums(folder)
    assert download._intact(folder / "dev_questions.json", recorded)
    (folder / "dev_questions.json").write_bytes(good.replace(b"x", b"y"))  # same size, other bytes
    assert not download._intact(folder / "dev_questions.json", recorded)
    assert "damaged" in capsys.readouterr().err


def test_a_damaged_converted_model_is_detected_by_its_manifest(tmp_path):
    from lamp_plugins import models

    from lamp_harness.base.io import atomic_write_json, folder_manifest

    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    (folder / "config.json").write_text("{}")
    atomic_write_json(folder / models.SOURCE_FILE, {"files": folder_manifest(folder, skip=(models.SOURCE_FILE,))})
    assert models._problem(folder) is None
    time.sleep(0.05)  # damage comes later than the conversion (a later write, a later mtime)
    (folder / "model.safetensors").write_bytes(b"weightz" * 100)
    assert "checksum" in models._problem(folder)
    (folder / "config.json").unlink()
    assert "missing" in models._problem(folder)
    (folder / models.SOURCE_FILE).write_text("{")
    assert "unreadable" in models._problem(folder)


# -- unwritable paths ------------------------------------------------------------------------------


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


def _a_file(folder: Path) -> Path:
    (folder / "f").write_text("x")
    return folder / "f"


UNWRITABLE = {
    "out-is-a-file": _a_file,
    "out-under-a-file": lambda t: _a_file(t) / "runs",
    "out-in-proc": lambda t: Path("/proc/lamp-harness-test/runs"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_an_unwritable_out_is_one_line_before_any_work(case, toys, tmp_path, capsys):
    out = UNWRITABLE[case](tmp_path)
    code = _lamp("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--quiet", "--out", str(out))
    assert "--out" in _one_line(capsys, code)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_one_line(toys, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = _lamp("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--out", str(folder))
        assert "not writable" in _one_line(capsys, code)
    finally:
        folder.chmod(0o755)


def test_a_lamp_home_that_is_a_file_is_one_line(toys, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home-file"
    home.write_text("x")
    monkeypatch.setenv("LAMP_HOME", str(home))
    code = _lamp("run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--out", str(tmp_path / "r"))
    assert "LAMP_HOME" in _one_line(capsys, code)


def test_concurrent_rankers_of_one_cache_file_take_turns(task, demo_train, context):
    """Two processes ranking the same (task, retriever, data) wait on the cache file's lock: the
    second reuses the first's rankings instead of computing them again."""
    import threading

    from lamp_harness.inputs.cache import rank_examples

    calls: list[int] = []
    started = threading.Event()

    class Slow:
        name = "slow"

        def cache_key(self):
            return {"name": "slow"}

        def rank(self, queries):
            calls.append(len(queries))
            started.set()
            time.sleep(0.3)
            return [list(range(len(q.items)))[::-1] for q in queries]

    examples = demo_train[:6]
    results = []
    worker = threading.Thread(
        target=lambda: results.append(rank_examples(Slow(), task, "fp", examples, context, progress=False))
    )
    worker.start()
    started.wait(5)
    second = rank_examples(Slow(), task, "fp", examples, context, progress=False)
    worker.join()
    assert len(calls) == 1 and results == [second]
