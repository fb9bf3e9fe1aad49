"""Data-parallel ``lamp run`` on real torch.distributed (gloo, CPU): launched by ``--nproc-per-node``
and by torchrun (one node and two local "nodes"), equal to one process byte for byte, resumable
with any world size after a rank is killed, and one line when a rank raises."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lamp_cli import demo_run, toys_env

from lamp_harness.base.distributed import World, deal, detect_world
from lamp_harness.cli.run_cmd import without_option
from lamp_harness.plugin.contracts import Example, Prediction
from lamp_harness.run.store import CellStore

BIN = Path(sys.executable).parent
# The toy generator's outputs depend on the batch each example ran in, so equal files prove
# that the ranks generated exactly the batches one process generates.
MATRIX = demo_run("--personalizer", "none,ipa", "--retriever", "bm25", task="lamp-7,lamp-3", limit=14)


def _train(generator: Path, *extra: str, max_steps: int, limit: int) -> tuple[str, ...]:
    """``lamp train`` of IPA with BM25 on lamp-7's demo data, no evaluation split, quiet; EXTRA follows."""
    return (
        "train", "--task", "lamp-7", "--personalizer", "ipa", "--retriever", "bm25", "--data", "demo",
        "--generator", str(generator), "--max-steps", str(max_steps), "--limit", str(limit), "--eval-split", "none",
        "--quiet", *extra,
    )  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    values = toys_env(OMP_NUM_THREADS="1", LAMP_DIST_TIMEOUT="120")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID"):
        values.pop(name, None)
    return {**values, **extra}


def lamp(*args: str, launcher: tuple[str, ...] = (), **extra: str) -> subprocess.CompletedProcess[str]:
    command = [*launcher, str(BIN / "lamp"), *args] if launcher else [str(BIN / "lamp"), *args]
    return subprocess.run(command, env=env(**extra), capture_output=True, text=True, timeout=600)


def results(out: Path) -> dict[str, tuple[bytes, bytes]]:
    """Each cell's predictions and metrics, as bytes."""
    return {
        d.name: ((d / "predictions.jsonl").read_bytes(), (d / "metrics.json").read_bytes())
        for d in sorted(out.iterdir())
        if d.is_dir()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple[bytes, bytes]]:
    out = tmp_path_factory.mktemp("one-process")
    done = lamp(*MATRIX, "--out", str(out / "runs"), LAMP_HOME=str(out / "home"))
    assert done.returncode == 0, done.stderr
    found = results(out / "runs")
    assert len(found) == 4
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def test_the_world_comes_from_torchrun_accelerate_or_slurm_variables() -> None:
    assert detect_world({}) == World(0, 1, 0)
    assert detect_world({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == World(3, 8, 1)
    assert detect_world({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}) == World(5, 16, 1)
    # torchrun inside a Slurm allocation: torchrun's variables win.
    assert detect_world({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == World(1, 2, 0)
    assert detect_world({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == World()


def test_batches_are_dealt_balanced_and_deterministically() -> None:
    costs = [9, 1, 1, 1, 4, 4, 1, 1]
    shares = deal(costs, 2)
    assert shares == deal(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))
    loads = [sum(costs[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 1
    assert deal(costs, 1) == [list(range(len(costs)))]
    assert deal([], 3) == [[], [], []]


def test_the_launcher_hands_on_every_option_but_its_own() -> None:
    argv = ["run", "--task", "lamp-7", "--nproc-per-node", "2", "--k", "1", "--nproc-per-node=4"]
    assert without_option(argv, "--nproc-per-node") == ["run", "--task", "lamp-7", "--k", "1"]


def test_shards_of_any_world_size_resume_by_example_id_keeping_whole_batches(tmp_path) -> None:
    examples = [Example(f"q{i}", f"input {i}", ()) for i in range(6)]
    batches = [examples[0:2], examples[2:4], examples[4:6]]

    def pred(i: int) -> Prediction:
        return Prediction(f"q{i}", f"out {i}", f"out {i}", f"prompt {i}", (), 2, 1)

    store = CellStore(tmp_path / "cell")
    store.shard(0).append_predictions([pred(4), pred(5)])
    store.shard(1).append_predictions([pred(0), pred(1), pred(2)])  # batch 1 cut short
    with open(store.shard(1).dir / "predictions.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"example_id": "q3", "out')  # a torn line
    kept = store.consolidate_shards(batches)
    assert kept == {"q0", "q1", "q4", "q5"}
    assert store.has_shards()  # until merged, predictions.jsonl holds whole batches, not a prefix
    store.shard(3).append_predictions([pred(2), pred(3)])  # a later job with another world size
    merged = store.merge_shards(examples, kept)
    assert [p.example_id for p in merged] == [ex.id for ex in examples]
    assert not store.has_shards()
    one = CellStore(tmp_path / "one")
    for batch in batches:
        one.append_predictions([pred(int(ex.id[1:])) for ex in batch])
    assert (store.dir / "predictions.jsonl").read_bytes() == (one.dir / "predictions.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------
# Real jobs
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_nproc_per_node_equals_one_process(reference, tmp_path) -> None:
    done = lamp(*MATRIX, "--out", str(tmp_path / "runs"), "--nproc-per-node", "2", LAMP_HOME=str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    assert results(tmp_path / "runs") == reference
    for cell in (tmp_path / "runs").iterdir():
        if cell.is_dir():
            timing = json.loads((cell / "timing.json").read_text())
            assert timing["world_size"] == 2 and [r["rank"] for r in timing["ranks"]] == [0, 1]
            assert sum(r["examples"] for r in timing["ranks"]) == timing["examples"] == 14
            assert not (cell / "shards").exists()


@pytest.mark.slow
def test_torchrun_launched_job_equals_one_process(reference, tmp_path) -> None:
    done = lamp(
        *MATRIX,
        "--out",
        str(tmp_path / "runs"),
        LAMP_HOME=str(tmp_path / "home"),
        launcher=(str(BIN / "torchrun"), "--nproc-per-node", "2", "--standalone", "--no-python"),
    )
    assert done.returncode == 0, done.stderr
    assert results(tmp_path / "runs") == reference


@pytest.mark.slow
def test_two_local_nodes_through_a_rendezvous_equal_one_process(reference, tmp_path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    command = [
        str(BIN / "torchrun"),
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        "lamp-test",
        "--no-python",
        str(BIN / "lamp"),
        *MATRIX,
        "--out",
        str(tmp_path / "runs"),
    ]
    nodes = [
        subprocess.Popen(
            command, env=env(LAMP_HOME=str(tmp_path / "home")), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err
    assert results(tmp_path / "runs") == reference


@pytest.mark.slow
def test_a_raising_rank_ends_the_job_with_one_line(tmp_path) -> None:
    done = lamp(
        *demo_run("--nproc-per-node", "2", limit=6, out=tmp_path / "runs"),
        LAMP_HOME=str(tmp_path / "home"),
        LAMP_TOY_FAIL_RANK="1",
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "rror" in line or "Traceback" in line]
    assert errors == ["Error: rank 1: ValueError: toy-echo failed on purpose"], done.stderr


def _workers(pid: int) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            ranks = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"RANK=")]
            if ranks:
                found[int(ranks[0])] = int(child)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find the workers")
@pytest.mark.parametrize("rerun", ["1", "2"])
def test_a_killed_rank_then_a_rerun_with_any_world_size_completes_identically(reference, tmp_path, rerun) -> None:
    out, home = tmp_path / "runs", str(tmp_path / "home")
    args = [str(BIN / "lamp"), *MATRIX, "--out", str(out), "--nproc-per-node", "2"]
    job = subprocess.Popen(
        args, env=env(LAMP_HOME=home, LAMP_TOY_DELAY="0.3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*/shards/rank-00001/predictions.jsonl")):
            assert time.monotonic() < deadline and job.poll() is None, job.stderr.read() if job.stderr else ""
            time.sleep(0.05)
        os.kill(_workers(job.pid)[1], signal.SIGKILL)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 2
    assert "Error: rank 1: killed by signal 9 (SIGKILL)" in err, err
    resumed = lamp(*MATRIX, "--out", str(out), *(["--nproc-per-node", rerun] if rerun != "1" else []), LAMP_HOME=home)
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == reference


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_training_equals_one_process_with_the_same_effective_batch(tmp_path, tiny_llama_dir) -> None:
    from safetensors.torch import load_file

    args = _train(tiny_llama_dir, "--save-every", "2", "--batch-size", "2", "--lr", "1e-3", max_steps=3, limit=10)
    home = str(tmp_path / "home")
    one = lamp(*args, "--grad-accum", "2", "--out", str(tmp_path / "one"), LAMP_HOME=home)
    assert one.returncode == 0, one.stderr
    two = lamp(*args, "--nproc-per-node", "2", "--out", str(tmp_path / "two"), LAMP_HOME=home)
    assert two.returncode == 0, two.stderr
    assert "effective batch: 4 examples per step (2 per process x 2 process(es) x 1 accumulation)" in two.stdout

    def final(folder: str) -> tuple[dict, list[float]]:
        step = tmp_path / folder / "checkpoints" / "step-00000003"
        return (load_file(str(step / "weights.safetensors")), json.loads((step / "state.json").read_text())["losses"])

    (w1, l1), (w2, l2) = final("one"), final("two")
    assert l1 == pytest.approx(l2, abs=1e-5)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    assert len(l1) == 3 and l1[0] != l1[2]

    # Resume with another world size: the 2-process run's step-2 checkpoint, finished by 1 process.
    import shutil

    shutil.rmtree(tmp_path / "two" / "checkpoints" / "step-00000003")
    resumed = lamp(*args, "--grad-accum", "2", "--out", str(tmp_path / "two"), LAMP_HOME=home)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 2" in resumed.stdout
    w3, l3 = final("two")
    assert l3 == pytest.approx(l1, abs=1e-5)
    assert max(float((w1[k] - w3[k]).abs().max()) for k in w1) < 1e-5


@pytest.mark.slow
def test_ranks_started_by_srun_find_each_other_from_slurm_variables(reference, tmp_path) -> None:
    """What ``srun`` gives each task (no torchrun): SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID,
    and MASTER_ADDR / MASTER_PORT from the batch script."""
    port = str(free_port())
    tasks = [
        subprocess.Popen(
            [str(BIN / "lamp"), *MATRIX, "--out", str(tmp_path / "runs")],
            env=env(
                LAMP_HOME=str(tmp_path / "home"),
                SLURM_PROCID=str(rank),
                SLURM_NTASKS="2",
                SLURM_LOCALID=str(rank),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for task in tasks:
        _, err = task.communicate(timeout=600)
        assert task.returncode == 0, err
    assert results(tmp_path / "runs") == reference


@pytest.mark.slow
def test_bf16_mixed_precision_trains_through_accelerate_autocast(tmp_path, tiny_llama_dir) -> None:
    args = _train(tiny_llama_dir, "--batch-size", "2", max_steps=2, limit=8)
    losses = {}
    for precision in ("no", "bf16"):
        done = lamp(
            *args, "--mixed-precision", precision, "--out", str(tmp_path / precision), LAMP_HOME=str(tmp_path / "home")
        )
        assert done.returncode == 0, done.stderr
        state = tmp_path / precision / "checkpoints" / "step-00000002" / "state.json"
        losses[precision] = json.loads(state.read_text())["losses"]
        config = json.loads((tmp_path / precision / "config.json").read_text())
        assert config["mixed_precision"] == precision
    # bf16 autocast computes the same losses, rounded differently.
    assert losses["bf16"] != losses["no"]
    assert losses["bf16"] == pytest.approx(losses["no"], abs=0.05)
    bad = lamp(*args, "--mixed-precision", "fp8", "--out", str(tmp_path / "fp8"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("Error: --mixed-precision")


# ---------------------------------------------------------------------------------------------
# Lifetime: ranks die with their launcher, Ctrl-C/SIGTERM end the job, one job per cell
# ---------------------------------------------------------------------------------------------

SLOW_RUN = demo_run(limit=40)


TORCHRUN = (str(BIN / "torchrun"), "--nproc-per-node", "2", "--standalone", "--no-python")


def _start(args: tuple[str, ...], tmp_path: Path, launcher: tuple[str, ...] = (), **extra: str) -> subprocess.Popen:
    """``lamp ARGS`` as the leader of a process group of its own (as a shell starts a job)."""
    return subprocess.Popen(
        [*launcher, str(BIN / "lamp"), *args],
        env=env(LAMP_HOME=str(tmp_path / "home"), **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(job: subprocess.Popen, pattern: str, root: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob(pattern)):
        assert job.poll() is None, job.communicate()[1]
        assert time.monotonic() < deadline, f"no {pattern} after {timeout} s"
        time.sleep(0.05)


def _alive(pids) -> list[int]:
    """The processes of ``pids`` that still run (zombies do not)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _gone(pids, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _kill_group_then_watch(job: subprocess.Popen, pattern: str, out: Path, still_for: float) -> dict[int, int]:
    """Once ``pattern`` exists under ``out``, kill -9 the launcher's process group (torch starts each
    rank in a session of its own); assert that no rank outlives it and that nothing under ``out``
    changes for ``still_for`` seconds afterwards. The ranks it found (rank -> pid)."""
    try:
        _wait_for(job, pattern, out)
        ranks = _workers(job.pid)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert _gone(ranks.values()) == []
        before = _snapshot(out)
        time.sleep(still_for)
        assert _snapshot(out) == before
    finally:
        for pid in _alive(_workers(job.pid).values() if job.poll() is None else ()):
            os.kill(pid, signal.SIGKILL)
    return ranks


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("launcher", ["nproc-per-node", "torchrun"])
def test_kill_9_of_the_launchers_group_leaves_no_rank_alive_and_no_shard_written_afterwards(tmp_path, launcher) -> None:
    out = tmp_path / "runs"
    if launcher == "torchrun":
        job = _start((*SLOW_RUN, "--out", str(out)), tmp_path, TORCHRUN, LAMP_TOY_DELAY="0.3")
    else:
        job = _start((*SLOW_RUN, "--out", str(out), "--nproc-per-node", "2"), tmp_path, LAMP_TOY_DELAY="0.3")
    ranks = _kill_group_then_watch(job, "*/shards/rank-0000[01]/predictions.jsonl", out, still_for=2)
    assert sorted(ranks) == [0, 1]
    # Nothing lost: a rerun finishes the cell from the shards the ranks wrote.
    resumed = lamp(*SLOW_RUN, "--out", str(out), LAMP_HOME=str(tmp_path / "home"))
    assert resumed.returncode == 0, resumed.stderr
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    assert CellStore(cell).finished


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_every_rank_with_one_line_and_exit_130(tmp_path, sig) -> None:
    out = tmp_path / "runs"
    job = _start((*SLOW_RUN, "--out", str(out), "--nproc-per-node", "2"), tmp_path, LAMP_TOY_DELAY="0.3")
    try:
        _wait_for(job, "*/shards/rank-0000[01]/predictions.jsonl", out)
        ranks = _workers(job.pid)
        job.send_signal(sig)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130, err
    assert "Traceback" not in err and "rror" not in err, err
    assert err.strip().splitlines()[-1] == "Interrupted: finished work is saved; run the same command again to resume."
    assert err.count("Interrupted") == 1, err  # the launcher's line; the ranks print nothing
    assert _gone(ranks.values()) == []
    resumed = lamp(*SLOW_RUN, "--out", str(out), LAMP_HOME=str(tmp_path / "home"))
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_a_second_job_cannot_compute_a_cell_the_first_job_holds(tmp_path) -> None:
    out = tmp_path / "runs"
    # 7 batches of 8 s per rank: the first job is still computing when the second one asks.
    first = _start((*SLOW_RUN, "--out", str(out), "--nproc-per-node", "2"), tmp_path, LAMP_TOY_DELAY="8")
    try:
        _wait_for(first, "*/shards/rank-0000[01]/predictions.jsonl", out)
        (cell,) = [d for d in out.iterdir() if d.is_dir()]
        pid, _ = CellStore(cell).holder()
        assert pid == _workers(first.pid)[0]  # rank 0 holds the cell's lock for the job
        second = lamp(*SLOW_RUN, "--out", str(out), "--nproc-per-node", "2", LAMP_HOME=str(tmp_path / "home"))
        assert first.poll() is None  # the check did not end before the second job's answer
        assert second.returncode == 2
        lines = [line for line in second.stderr.splitlines() if "rror" in line or "Traceback" in line]
        # Every rank learns the refusal from rank 0; whichever reports first gives the one line.
        assert len(lines) == 1 and re.match(r"Error: rank [01]: 1 cell\(s\) are being computed", lines[0]), second.stderr
        assert f"being computed by process {pid}" in lines[0] and "run the same command again" in lines[0]
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err
    assert CellStore(cell).finished and not (cell / "shards").exists()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_two_process_training_does_not_finish_on_its_own(tmp_path, tiny_llama_dir) -> None:
    out = tmp_path / "train"
    args = _train(
        tiny_llama_dir,
        "--save-every",
        "1",
        "--batch-size",
        "1",
        "--out",
        str(out),
        "--nproc-per-node",
        "2",
        max_steps=400,
        limit=10,
    )
    job = _start(args, tmp_path)
    _kill_group_then_watch(job, "checkpoints/step-*/weights.safetensors", out, still_for=3)
    assert not (out / "checkpoints" / "step-00000400").exists()


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"LAMP_DIST_TIMEOUT": "-5"}, "LAMP_DIST_TIMEOUT='-5' is not a number of seconds above 0"),
        ({"LAMP_DIST_TIMEOUT": "0"}, "LAMP_DIST_TIMEOUT='0' is not a number of seconds above 0"),
        ({"LAMP_DIST_TIMEOUT": "nan"}, "LAMP_DIST_TIMEOUT='nan' is not a number of seconds above 0"),
        ({"LAMP_DIST_TIMEOUT": "inf"}, "LAMP_DIST_TIMEOUT='inf' is not a number of seconds above 0"),
        ({"LAMP_DIST_TIMEOUT": "abc"}, "LAMP_DIST_TIMEOUT='abc' is not a number of seconds above 0"),
        ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 is outside a world of WORLD_SIZE=2 processes"),
        ({"RANK": "abc", "WORLD_SIZE": "2"}, "RANK='abc' is not a whole number >= 0"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not a whole number >= 1"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK is not set"),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1' is not a whole number >= 0"),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=2 is outside"),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "2"}, "SLURM_PROCID=3 is outside a world of SLURM_NTASKS=2"),
    ],
)
def test_the_job_environment_is_validated_in_one_line(monkeypatch, variables, message) -> None:
    from lamp_harness.base.distributed import check_environment
    from lamp_harness.base.errors import LampError

    for name in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "LAMP_DIST_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LampError) as caught:
        check_environment()
    assert str(caught.value).startswith(f"environment: {message}") and "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variables, launcher",
    [
        ({"LAMP_DIST_TIMEOUT": "nan"}, True),
        ({"RANK": "5", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, False),
    ],
    ids=["timeout-under-nproc-per-node", "rank-outside-the-world"],
)
def test_a_bad_job_environment_is_one_line_before_any_rendezvous(tmp_path, variables, launcher) -> None:
    started = time.monotonic()
    done = lamp(
        *SLOW_RUN,
        "--out",
        str(tmp_path / "runs"),
        *(["--nproc-per-node", "2"] if launcher else []),
        LAMP_HOME=str(tmp_path / "home"),
        **variables,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("Error: environment: "), done.stderr
    assert time.monotonic() - started < 60  # no rendezvous wait
    assert not list((tmp_path / "runs").glob("*/*"))
