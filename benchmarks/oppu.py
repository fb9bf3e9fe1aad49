"""OPPU: per-user LoRA training (users/minute, 1 vs 2 processes) and serving (examples/s, the ``hf``
generator switching adapters on one model vs the ``vllm`` generator's multi-LoRA engine).

Data: the LaMP-7 demo dev split (one user per question, 10-20 history items each); the offline
model (SmolLM2-135M-Instruct) unless ``--generator`` names another; OPPU's LoRA (rank 8, q/v).

- training: ``lamp train --personalizer oppu --split dev --limit N`` into a fresh folder, once with
  1 process and once with ``--nproc-per-node 2`` (users dealt to the ranks); users/minute is
  what ``lamp train`` reports (trained users over the wall time of the per-user training: model
  loading and stage 1 excluded; stage 1, the task LoRA on the demo's 80 training questions, is
  trained by the first run and read by the second, its time is reported apart);
- serving: the adapters of the 1-process run answer the N questions, greedy, the task's 128 new
  tokens: ``hf`` (``HFGenerator.generate``: questions grouped by adapter, each adapter switched on
  once, the base model never reloaded) and, when ``vllm`` imports (run in ``.venv-vllm``), the
  ``vllm`` generator (one LoRA-enabled engine, a ``LoRARequest`` per question), engine start
  excluded; agreement = greedy texts equal between the two.

Every process runs with ``--threads`` torch threads (default 1, what ``torchrun`` gives each rank),
so 1 and 2 processes are compared at the same threads per process.

    .venv/bin/python benchmarks/oppu.py --users 4 --epochs 1          # training + hf serving
    .venv-vllm/bin/python benchmarks/oppu.py --users 4 --epochs 1     # + vllm serving
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def train(users: int, epochs: int, nproc: int, out: Path, home: Path, generator: str | None) -> dict:
    command = [
        str(BIN / "lamp"),
        "train",
        "--task",
        "lamp-7",
        "--personalizer",
        "oppu",
        "--data",
        "demo",
        "--split",
        "dev",
        "--limit",
        str(users),
        "--personalizer-arg",
        f"epochs={epochs}",
        "--quiet",
        "--out",
        str(out),
    ]
    if generator:
        command += ["--generator", generator]
    if nproc > 1:
        command += ["--nproc-per-node", str(nproc)]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "LAMP_HOME": str(home)}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("trained "))
    rate = re.search(r"([\d.]+) users/minute", line)
    return {
        "processes": nproc,
        "users": users,
        "wall_s_with_loading": round(time.perf_counter() - started, 1),
        "users_per_minute": float(rate.group(1)) if rate else None,
        "line": line,
    }


def serve(users: int, epochs: int, adapters: Path, home: Path, generator: str | None, name: str) -> dict:
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import GenerationRequest, RunContext
    from lamp_harness.plugin.options import generator_kwargs, generator_spec
    from lamp_harness.plugin.registry import host

    context = RunContext(lamp_home=home, seed=0, device="cpu")
    registry = host().registry
    task = registry.create("task", "lamp-7")
    examples = resolve_dataset(task, data="demo", data_dir=None, split="dev", context=context).examples[:users]
    plugin, model = generator_spec(generator, registry.names("generator"))
    if name == "vllm":
        plugin = "vllm"
    factory = registry.get("generator", plugin).load()
    gen = factory(context, **generator_kwargs(factory, {"num_beams": "1", "dtype": "float32"}, model))
    oppu = registry.create("personalizer", "oppu", context, adapters=str(adapters), epochs=str(epochs))
    oppu.setup(task, gen, context)
    oppu.use_train_split(lambda: resolve_dataset(task, data="demo", data_dir=None, split="train", context=context).examples)
    oppu.prepare(task, examples)  # finds the stage-1 model and the adapters (trains nothing)
    requests = [oppu.personalize(task, ex, ()) for ex in examples]
    if name == "vllm":  # start the LoRA engine outside the timing
        gen.generate([GenerationRequest("warm", "hello", max_new_tokens=1, adapter=requests[0].adapter)])
    started = time.perf_counter()
    texts = [g.text for g in gen.generate(requests)]
    wall = time.perf_counter() - started
    return {
        "generator": name,
        "examples": len(requests),
        "adapters": len({r.adapter for r in requests}),
        "wall_s": round(wall, 2),
        "examples_per_s": round(len(requests) / wall, 3),
        "texts": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--generator", default=None)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="Folder for the adapters (a rerun resumes there: users/minute counts the users trained)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (torchrun gives each rank 1; the same for 1 process)",
    )
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="oppu-bench-"))
    home = Path(os.environ.get("LAMP_HOME", work / "home"))
    result: dict = {"users": args.users, "epochs": args.epochs}
    if not args.skip_training:
        result["training"] = [train(args.users, args.epochs, n, work / f"p{n}", home, args.generator) for n in (1, 2)]
    else:
        train(args.users, args.epochs, 1, work / "p1", home, args.generator)
    for manifest in sorted((home / "checkpoints").glob("lamp-7-oppu-stage1-*/manifest.json")):
        stage1 = json.loads(manifest.read_text(encoding="utf-8"))
        result["stage1"] = {k: stage1[k] for k in ("examples", "steps", "train_s")}
    serving = [serve(args.users, args.epochs, work / "p1", home, args.generator, "hf")]
    try:
        import vllm  # noqa: F401

        serving.append(serve(args.users, args.epochs, work / "p1", home, args.generator, "vllm"))
    except ImportError:
        pass
    if len(serving) == 2:
        same = sum(a == b for a, b in zip(serving[0]["texts"], serving[1]["texts"], strict=True))
        result["agreement"] = round(same / len(serving[0]["texts"]), 3)
    result["serving"] = [{k: v for k, v in s.items() if k != "texts"} for s in serving]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
