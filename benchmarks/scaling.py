"""Data-parallel scaling of ``lamp run``: examples/s with 1 process against N processes.

Each configuration runs the same cell from scratch (``lamp run --force``) with one thread per
process (``OMP_NUM_THREADS=1``), 1 process plainly and N through ``--nproc-per-node N`` (gloo on
CPU, NCCL on GPUs), and checks that the predictions are byte-identical. Two figures per run:

- **predict**: examples / the slowest rank's prediction time (``timing.json``), the scaling of
  the work that is split;
- **end to end**: examples / the command's wall time, model loading and process start included.

Target on a 2-core machine: 2 processes >= 1.7x the examples/s of 1 (predict).

Usage::

    python benchmarks/scaling.py                         # SmolLM2 (offline preset), lamp-7 demo, 40 questions
    python benchmarks/scaling.py --limit 80 --procs 1,2
    python benchmarks/scaling.py --generator /path/to/model --device cuda --procs 1,8   # GPUs: one per rank

Run it on an otherwise idle machine: other jobs on the same cores lower the N-process figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(procs: int, args: list[str], out: Path, threads: int) -> dict[str, float]:
    """One ``lamp run`` with ``procs`` processes; its figures."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [str(BIN / "lamp"), "run", *args, "--out", str(out), "--force", "--quiet"]
    if procs > 1:
        command += ["--nproc-per-node", str(procs)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - started
    (cell,) = [d for d in out.iterdir() if d.is_dir()]
    timing = json.loads((cell / "timing.json").read_text())
    ranks = timing.get("ranks") or [{"wall_s": timing["wall_s"], "examples": timing["examples_this_run"]}]
    predict = max(r["wall_s"] for r in ranks)
    return {
        "examples": timing["examples"],
        "predict_s": predict,
        "wall_s": wall,
        "predict_eps": timing["examples"] / predict,
        "wall_eps": timing["examples"] / wall,
        "predictions": (cell / "predictions.jsonl").read_bytes(),
    }  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="lamp-7")
    parser.add_argument("--personalizer", default="none")
    parser.add_argument("--generator", default=None, help="default: the offline preset's SmolLM2")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--batch-size", default="4")
    parser.add_argument("--procs", default="1,2", help="comma list of process counts")
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per configuration")
    ns = parser.parse_args()

    args = [
        "--task",
        ns.task,
        "--personalizer",
        ns.personalizer,
        "--data",
        "demo",
        "--limit",
        str(ns.limit),
        "--batch-size",
        ns.batch_size,
        "--device",
        ns.device,
    ]
    if ns.generator:
        args += ["--generator", ns.generator]
    procs = [int(p) for p in ns.procs.split(",")]
    print(
        f"lamp run {' '.join(args)}; {ns.threads} thread(s) per process; {os.cpu_count()} CPU cores; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in procs:
            best = None
            for repeat in range(ns.repeats):
                figures = run(n, args, Path(tmp) / f"p{n}-{repeat}", ns.threads)
                if best is None or figures["predict_s"] < best["predict_s"]:
                    best = figures
            assert best is not None
            results[n] = best
    base = results[procs[0]]
    print(
        f"{'processes':>9} {'examples':>8} {'predict s':>9} {'ex/s':>7} {'speed-up':>8} "
        f"{'wall s':>7} {'ex/s':>7} {'speed-up':>8} identical"
    )
    for n, r in results.items():
        print(
            f"{n:>9} {r['examples']:>8} {r['predict_s']:>9.2f} {r['predict_eps']:>7.2f} "
            f"{r['predict_eps'] / base['predict_eps']:>7.2f}x {r['wall_s']:>7.1f} {r['wall_eps']:>7.2f} "
            f"{r['wall_eps'] / base['wall_eps']:>7.2f}x {r['predictions'] == base['predictions']}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
