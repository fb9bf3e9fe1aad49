"""PPlug training cost: examples/s of a PPlug training step against the raw forward + backward of
the same frozen LLM on the same inputs, and history-encoder forward passes during training.

Targets: PPlug's overhead over the raw LLM step at most 15%; zero history-encoder forward passes
once the history table is warm (PPlug embeds every profile item once, before the loop).

The raw step runs exactly the requests PPlug builds (same prompt, same number of soft tokens in
front of it) with the soft tokens replaced by constant leaf tensors that require grad, so the LLM
does the same forward and backward work; PPlug's step adds the input encoder, the aggregation, the
projectors and the AdamW update.

    python benchmarks/training.py                     # offline preset: SmolLM2-135M + MiniLM
    python benchmarks/training.py --steps 10 --batch-size 8 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lamp-7")
    parser.add_argument("--data", default="demo", help="data source (default: demo)")
    parser.add_argument("--data-dir", default=None, help="a folder with {split}_questions/outputs.json")
    parser.add_argument("--split", default="train")
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--generator", default=None, help="generator model (default: the preset's)")
    parser.add_argument("--encoder", default=None, help="PPlug encoder (default: the preset's bge role)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (after 1 warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import GenerationRequest, RunContext, SoftTokens
    from lamp_harness.plugin.registry import host

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    context = RunContext(lamp_home=lamp_home(), preset=args.preset, seed=0, device=args.device)
    registry = host().registry
    task = registry.create("task", args.task)
    data = resolve_dataset(
        task, data=args.data, data_dir=Path(args.data_dir) if args.data_dir else None, split=args.split, context=context
    )
    gen_args = {"device": args.device, "num_beams": "1"}
    if args.generator:
        gen_args["model"] = args.generator
    generator = registry.create("generator", "hf", context, **gen_args)
    pplug_args = {"encoder": args.encoder} if args.encoder else {}
    pplug = registry.create("personalizer", "pplug", context, **pplug_args)
    pplug.setup(task, generator, context)

    started = time.perf_counter()
    pplug.prepare(task, data.examples)
    warm_s = time.perf_counter() - started
    passes_after_warmup = pplug.history.forward_passes

    n = args.batch_size
    batches = [data.examples[(i * n) % len(data.examples) :][:n] for i in range(args.steps + 1)]
    batches = [b if len(b) == n else data.examples[:n] for b in batches]
    params = pplug.parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    pplug.set_training(True)

    def pplug_step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = pplug.training_loss(task, batch, [()] * len(batch))
        loss.backward()
        optimizer.step()

    width, n_soft = generator.embedding_width, 2
    scale = generator.embedding_norm / width**0.5

    def raw_step(batch) -> None:
        requests = []
        for example in batch:
            leaf = (torch.randn(n_soft, width) * scale).requires_grad_(True)
            prompt = task.prompt(example, (), generator.tokens, generator.max_input_tokens)
            requests.append(GenerationRequest(example.id, prompt, prefix=(SoftTokens(leaf),)))
        loss = generator.loss(requests, [ex.gold or "" for ex in batch])
        loss.backward()

    def timed(step) -> list[float]:
        step(batches[0])  # warm-up
        times = []
        for batch in batches[1:]:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            step(batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return times

    # Interleave the two variants' runs so that load from other processes hits both alike.
    raw_a = timed(raw_step)
    pplug_a = timed(pplug_step)
    raw_b = timed(raw_step)
    pplug_b = timed(pplug_step)
    raw = statistics.median(raw_a + raw_b)
    ours = statistics.median(pplug_a + pplug_b)
    passes_in_training = pplug.history.forward_passes - passes_after_warmup

    described = generator.describe()
    print(
        f"generator: {described.get('model')} on {described.get('device')}; encoder: "
        f"{pplug.describe()['encoder']['model']}; batch {n}; {args.steps} timed steps x 2 per variant; "
        f"torch threads {torch.get_num_threads()} (CPUs {os.cpu_count()})"
    )
    print(
        f"history table warm-up: {len(pplug.history.vectors)} items in {warm_s:.2f} s "
        f"({passes_after_warmup} encoder forward passes)"
    )
    print(f"raw LLM forward+backward: {n / raw:8.2f} examples/s  (median {raw * 1000:.0f} ms/step)")
    print(f"PPlug training step:      {n / ours:8.2f} examples/s  (median {ours * 1000:.0f} ms/step)")
    overhead = (ours - raw) / raw * 100
    print(f"PPlug overhead: {overhead:+.1f}% (target <= 15%): {'OK' if overhead <= 15 else 'ABOVE TARGET'}")
    print(
        f"history-encoder forward passes during training: {passes_in_training} (target 0): "
        f"{'OK' if passes_in_training == 0 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    main()
