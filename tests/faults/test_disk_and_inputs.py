"""Faults and bad inputs, round two: a full disk under --out, under LAMP_HOME's ranking cache and
under the response cache (a real ENOSPC: a small tmpfs mounted for the test, which needs root;
the tests skip elsewhere), `lamp plugins new` names that cannot work, a reporter ending the process
from a hook, contradictory or unknown per-task --data, and a checkpoint without a manifest whose
weights are garbage. Each is one line (or one warning), the right exit code, no traceback, and
nothing finished is lost."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lamp_cli import demo_run, toys_env

from lamp_harness.base.errors import LampError

BIN = Path(sys.executable).parent
TASKS = "lamp-7,lamp-3"
RUN = demo_run("--personalizer", "none,ipa", "--retriever", "bm25", task=TASKS, limit=30)


def _lamp(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lamp"), *args], env=toys_env(**extra), capture_output=True, text=True, timeout=600)


def _one_error(stderr: str) -> str:
    """The only error line of ``stderr`` (progress lines aside); fails on a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "rror" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def _results(out: Path) -> dict[str, tuple[bytes, bytes]]:
    return {
        d.name: ((d / "predictions.jsonl").read_bytes(), (d / "metrics.json").read_bytes())
        for d in sorted(out.iterdir())
        if d.is_dir()
    }


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path`` (a real file system that fills up: ENOSPC)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")

    def grow(self, size: str = "20m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Fill the disk to the last byte; returns the filler file (delete it to free the space)."""
        filler = self.path / "filler"
        with open(filler, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs is Linux's")
    disks: list[SmallDisk] = []

    def make(size: str) -> SmallDisk:
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size))
        return disks[-1]

    yield make
    for disk in disks:
        disk.unmount()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple[bytes, bytes]]:
    root = tmp_path_factory.mktemp("reference")
    done = _lamp(*RUN, "--out", str(root / "runs"), LAMP_HOME=str(root / "home"))
    assert done.returncode == 0, done.stderr
    return _results(root / "runs")


# ---------------------------------------------------------------------------------------------
# Full disks
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_under_out_is_one_line_naming_the_file_and_a_rerun_keeps_the_finished_work(
    small_disk, reference, tmp_path
) -> None:
    disk = small_disk("40k")  # room for the first cell's predictions, not for all four cells
    out = disk.path / "runs"
    done = _lamp(*RUN, "--out", str(out), LAMP_HOME=str(tmp_path / "home"))
    assert done.returncode == 2
    line = _one_error(done.stderr)
    assert line.startswith(f"Error: {out}/") and ": No space left on device. Free some space there" in line, line
    assert "finished work is saved" in line
    kept = {p.name: p.read_bytes() for p in out.glob("*/predictions.jsonl")}
    assert kept and all(kept.values())  # the predictions written before the disk filled are there
    disk.grow()
    again = _lamp(*RUN, "--out", str(out), LAMP_HOME=str(tmp_path / "home"))
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stderr  # from the predictions kept, not from scratch
    assert _results(out) == reference


@pytest.mark.slow
def test_a_full_lamp_home_under_the_ranking_cache_is_one_line_and_a_rerun_completes(small_disk, reference, tmp_path) -> None:
    disk = small_disk("1m")
    home = disk.path / "home"
    # The demo data is generated into LAMP_HOME by a run without retrieval (no rankings cached)...
    first = _lamp(*demo_run(task=TASKS, limit=2, out=tmp_path / "first"), LAMP_HOME=str(home))
    assert first.returncode == 0, first.stderr
    assert not list(home.rglob("*rank*"))
    filler = disk.fill()
    # ... so that the first write on the full disk is the ranking cache's.
    done = _lamp(*RUN, "--out", str(tmp_path / "runs"), LAMP_HOME=str(home))
    assert done.returncode == 2
    line = _one_error(done.stderr)
    assert line.startswith(f"Error: {home}/rankings/") and "No space left on device" in line, line
    filler.unlink()
    again = _lamp(*RUN, "--out", str(tmp_path / "runs"), LAMP_HOME=str(home))
    assert again.returncode == 0, again.stderr
    assert _results(tmp_path / "runs") == reference


def test_a_full_disk_under_the_response_cache_names_the_cache_file_and_keeps_the_stored_answers(small_disk) -> None:
    from lamp_plugins.openai_generator import ResponseCache

    disk = small_disk("256k")
    path = disk.path / "openai-cache.sqlite"
    cache = ResponseCache(path)
    body = {"choices": [{"message": {"content": "x" * 8000}}]}
    stored = 0
    with pytest.raises(LampError) as caught:
        for stored in range(1000):  # noqa: B007  (the count is read after the error)
            cache.put(f"key-{stored}", body)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and "disk is full" in line and "\n" not in line
    assert stored > 3
    disk.grow()
    reopened = ResponseCache(path)
    assert all(reopened.get(f"key-{i}") == body for i in range(stored))


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, says",
    [
        ("class", "a Python keyword"),
        ("import", "a Python keyword"),
        ("match", "a Python keyword"),
        ("test", "already taken here: the package 'test'"),
        ("asyncio", "a module of Python's standard library"),
        ("lamp-harness", "lamp-harness's own name"),
        ("lamp_harness", "lamp-harness's own name"),
        ("lamp-plugins", "lamp-harness's own name"),
        ("numpy", "already taken here: the installed distribution 'numpy'"),
        ("lamp-" + "x" * 295, "is 300 characters long (at most 64)"),
    ],
)
def test_plugins_new_refuses_names_that_cannot_work_before_writing_anything(cli, tmp_path, name, says) -> None:
    out = tmp_path / "new"
    code, _, err = cli("plugins", "new", name, "--out", str(out), "--kind", "retriever")
    assert code == 2 and err.count("\n") == 1 and err.startswith("Error: ") and says in err, err
    assert "Choose another name" in err
    assert not out.exists()


def test_a_reporter_raising_system_exit_in_a_hook_is_disabled_and_the_run_finishes(site, toys, cli, tmp_path) -> None:
    site.add(
        "lamp-quitter",
        "1.0",
        quitter="""
        import sys

        from lamp_harness.plugin.hookspecs import hookimpl

        @hookimpl
        def lamp_cell_started(cell):
            sys.exit(3)
    """,
    )
    out = tmp_path / "runs"
    code, _, err = cli(
        "run", "--task", "lamp-7", "--data", "demo", "--generator", "toy-echo", "--limit", "4", "--quiet", "--out", str(out)
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: plugin 'quitter' (lamp-quitter 1.0) failed in lamp_cell_started and is "
        "disabled for this run: SystemExit: 3 (<string>:8)"
    ] or (len(warnings) == 1 and "plugin 'quitter'" in warnings[0] and "SystemExit: 3" in warnings[0]), err
    assert "Traceback" not in err
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    assert (cell / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ("--task", "lamp-7", "--data", "lamp-7=lamp,lamp-7=demo"),
            "--data gives task 'lamp-7' two sources, 'lamp' and 'demo'",
        ),
        (("--task", "lamp-7", "--data", "lamp-7=demo,LaMP-7=lamp"), "--data gives task 'lamp-7' two sources"),
        (
            ("--task", "lamp-7", "--data", "lamp-5=demo"),
            "--data lamp-5=demo names a task this run does not include (its tasks: lamp-7)",
        ),
    ],
    ids=["same-name", "two-spellings", "not-in-the-run"],
)
def test_contradictory_or_unknown_per_task_data_is_one_line_before_any_work(toys, cli, tmp_path, args, says) -> None:
    out = tmp_path / "runs"
    code, _, err = cli("run", *args, "--generator", "toy-echo", "--limit", "2", "--quiet", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert not list(out.glob("*/*"))


def _checkpoint(folder: Path, weights: bytes) -> Path:
    step = folder / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (step / "weights.safetensors").write_bytes(weights)
    (step / "state.json").write_text(json.dumps({"step": 2, "finished": False}), encoding="utf-8")
    (folder / "latest.json").write_text(json.dumps({"checkpoint": "checkpoints/step-00000002"}), encoding="utf-8")
    return step


def test_a_checkpoint_without_a_manifest_is_verified_by_loading_it(toys, cli, tmp_path) -> None:
    import torch
    from safetensors.torch import save_file

    from lamp_harness.train.training import checkpoint_problem, latest_checkpoint

    # A valid one from before manifests existed is still accepted.
    good = _checkpoint(tmp_path / "good", b"")
    save_file({"w": torch.ones(3)}, str(good / "weights.safetensors"))
    assert checkpoint_problem(good) is None
    # Garbage weights: a safetensors header that promises more bytes than the file holds.
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    for name, garbage in (("random", os.urandom(512)), ("truncated", len(header).to_bytes(8, "little") + header)):
        step = _checkpoint(tmp_path / name, garbage)
        problem = checkpoint_problem(step)
        assert problem is not None and problem.startswith("weights.safetensors does not load"), problem
        code, _, err = cli(*demo_run("--checkpoint", str(step), limit=2, out=tmp_path / "runs"))
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"Error: {step}: the checkpoint is damaged (weights.safetensors does not load"), err
        # The training folder: its damaged newest checkpoint is named, then the one-line error.
        code, _, err = cli(*demo_run("--checkpoint", str(tmp_path / name), limit=2, out=tmp_path / "runs"))
        assert code == 2 and "Traceback" not in err, err
        assert err.splitlines()[0].startswith(f"warning: checkpoint {step} is damaged (weights.safetensors does not load")
        assert err.splitlines()[1].startswith(f"Error: {tmp_path / name}: no checkpoint here") and err.count("\n") == 2
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/*"))
        # `lamp train` resuming skips it with a warning (and starts from the one before, here none).
        assert latest_checkpoint(tmp_path / name) is None
