"""Long-context serving on PersonaMem: how much of each prompt is truncated, and label scoring with
and without reusing the prompt's KV cache across the options.

On the PersonaMem demo (or a converted real split with ``--data-dir``), with the ``full``
personalizer's prompts (the whole history up to each question, cut from the oldest end to the
generator's input budget), it reports:

1. the share of each prompt's context that the budget cut (mean, median, max, and how many prompts
   were cut at all);
2. discriminative answering (``--decode labels``, four option texts per question) in examples/s:
   the ``hf`` generator's path, which encodes each prompt once and feeds every option after its
   cached keys and values (prefix reuse), against scoring every prompt+option sequence in full
   (no reuse, the prompt computed four times), on the same prompts and batches.

Requests are in the converted file's order (grouped by shared context, in timeline order), which
is what lets an engine with a prefix cache (vLLM) reuse a context across questions; the ``hf``
generator reuses within a request only.

Usage::

    python benchmarks/long_context.py                       # demo, SmolLM2 (offline preset), CPU
    python benchmarks/long_context.py --max-input-tokens 1024 --threads 1
    python benchmarks/long_context.py --data-dir $LAMP_HOME/data/hub/user/personamem-32k --split test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="personamem-32k")
    parser.add_argument("--data-dir", default=None, help="converted split folder (default: the demo)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--model", default=None, help="default: the offline preset's SmolLM2-135M-Instruct")
    parser.add_argument("--max-input-tokens", type=int, default=512, help="prompt budget (default 512)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (1 on a busy machine)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, best time kept (default 2)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from lamp_plugins.hf_generator import HFGenerator

    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import GenerationRequest, RunContext
    from lamp_harness.plugin.registry import host

    context = RunContext(lamp_home=lamp_home(), device="cpu")
    task = host().registry.create("task", args.task)
    data = resolve_dataset(
        task,
        data=None if args.data_dir else "demo",
        data_dir=Path(args.data_dir) if args.data_dir else None,
        split=args.split,
        context=context,
    )
    examples = data.examples[: args.limit]
    gen = HFGenerator(context, args.model, max_input_tokens=str(args.max_input_tokens), batch_size=str(args.batch_size))
    budget = gen.max_input_tokens
    shares = [task.truncated_share(ex, ex.profile, gen.tokens, budget) for ex in examples]
    requests = [
        GenerationRequest(ex.id, task.prompt(ex, ex.profile, gen.tokens, budget), choices=task.choices(ex))
        for ex in examples
    ]
    lengths = [gen.tokens.count(r.prompt) for r in requests]
    info = gen.describe()
    print(
        f"{task.name} {data.source} {args.split}: {len(examples)} questions; model {info['model']} "
        f"({info['device']}, torch threads {torch.get_num_threads()}); input budget {budget} tokens; "
        f"prompts {min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.0f})"
    )
    cut = [s for s in shares if s > 0]
    print(
        f"\n1. context truncated from the oldest end (full history): {len(cut)}/{len(shares)} prompts cut; "
        f"share cut per prompt mean {statistics.mean(shares):.1%}, median {statistics.median(shares):.1%}, "
        f"max {max(shares):.1%}"
    )
    print("   per prompt: " + " ".join(f"{s:.0%}" for s in shares))

    gen.label_scores(requests[:2])  # warm-up
    encoded = [gen._encode(r) for r in requests]

    def reused():
        rows = []
        for start in range(0, len(requests), args.batch_size):
            rows += gen.label_scores(requests[start : start + args.batch_size])
        return rows

    def full():
        rows = []
        with torch.no_grad():
            for start in range(0, len(requests), args.batch_size):
                rows += gen._label_scores_causal_full(
                    requests[start : start + args.batch_size], encoded[start : start + args.batch_size]
                )
        return rows

    t_reuse = t_full = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        a = reused()
        t_reuse = min(t_reuse, time.perf_counter() - start)
        start = time.perf_counter()
        b = full()
        t_full = min(t_full, time.perf_counter() - start)
    worst = max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))
    print(
        f"\n2. label scoring over 4 option texts, batch {args.batch_size} (best of {args.repeats}): "
        f"prefix reuse {len(requests) / t_reuse:.2f} ex/s, no reuse {len(requests) / t_full:.2f} ex/s "
        f"({t_full / t_reuse:.2f}x); max |score difference| {worst:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
