"""Engine-class inference: the ``hf`` generator, the ``vllm`` generator, raw ``vllm.LLM.generate`` and
the ``openai`` generator against a real vLLM OpenAI-compatible server, on the same prompts.

Prompts: the LaMP-7 demo dev questions with ``none`` and ``ipa`` (BM25, k=1), built by the real
task and personalizer plugins; SmolLM2-135M-Instruct (offline preset), greedy, the task's 128 new
tokens, fp32. Measured (examples/s, over both personalizers):

- ``hf``: ``HFGenerator.generate`` (batch_size auto);
- ``vllm`` generator, cold (first call: empty prefix cache) and warm (same prompts again);
- raw vLLM: ``LLM.generate`` on the same engine with the same token ids and sampling parameters
  (tokenization not timed), cold and warm - the generator's overhead is the difference;
- ``openai`` -> vLLM server (``python -m vllm.entrypoints.openai.api_server``, same engine
  arguments, started after the in-process engine is shut down), cold (empty response cache) and
  warm (every answer from the cache: no request sent);
- agreement: greedy texts of the vllm generator equal to hf's, in %.

Run it in ``.venv-vllm`` (``bash scripts/setup-vllm.sh``)::

    .venv-vllm/bin/python benchmarks/engines.py                # 40 questions x 2 methods
    .venv-vllm/bin/python benchmarks/engines.py --limit 16 --skip-hf --json out.json

The targets on a CPU machine: vllm generator >= 0.9x raw vLLM, and >= 2.5x the hf generator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_requests(context, limit: int):
    """(name, requests) for none and ipa on the LaMP-7 demo dev split."""
    from lamp_harness.inputs.cache import rank_examples
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.registry import host

    registry = host().registry
    task = registry.create("task", "lamp-7")
    dataset = resolve_dataset(task, data="demo", data_dir=None, split="dev", context=context)
    examples = dataset.examples[:limit]
    retriever = registry.create("retriever", "bm25", context)
    rankings = rank_examples(retriever, task, dataset.fingerprint, examples, context)
    return task, examples, rankings


def personalize(task, examples, rankings, generator, context):
    from lamp_harness.plugin.registry import host

    out = {}
    for name, k in (("none", 0), ("ipa", 1)):
        personalizer = host().registry.create("personalizer", name, context)
        personalizer.setup(task, generator, context)
        out[name] = [
            personalizer.personalize(task, ex, tuple(ex.profile[i] for i in rankings[ex.id][:k])) for ex in examples
        ]
    return out


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=40, help="questions per method (demo dev has 40)")
    parser.add_argument("--skip-hf", action="store_true", help="skip the (slow) hf generator")
    parser.add_argument("--skip-server", action="store_true", help="skip openai -> vLLM server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from lamp_harness.base.io import lamp_home
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.registry import host

    context = RunContext(lamp_home=lamp_home(), device="cpu")
    registry = host().registry
    task, examples, rankings = build_requests(context, args.limit)
    rows: list[tuple[str, str, float, float]] = []  # (system, cache, seconds, examples/s)
    n = 2 * len(examples)

    def record(system: str, cache: str, seconds: float) -> None:
        rows.append((system, cache, seconds, n / seconds))
        print(f"{system:28s} {cache:6s} {seconds:8.2f} s  {n / seconds:7.2f} ex/s", flush=True)

    started = time.perf_counter()
    vllm_gen = registry.create("generator", "vllm", context, dtype="float32")
    print(f"vllm engine start: {time.perf_counter() - started:.1f} s", flush=True)
    requests = personalize(task, examples, rankings, vllm_gen, context)
    flat = requests["none"] + requests["ipa"]

    # Raw vLLM first (cold), on token ids the generator would send; then the generator (warm and a
    # second engine-cold measurement is impossible on one engine, so the generator's cold figure
    # comes first for its own prompts by resetting the prefix cache).
    from vllm import SamplingParams

    encoded = [vllm_gen._encode(r) for r in flat]
    prompts = [vllm_gen._prompt(e.sequences[0]) for e in encoded]
    params = SamplingParams(
        temperature=0.0, max_tokens=task.max_new_tokens, stop_token_ids=list(vllm_gen._eos_ids), detokenize=False
    )
    for cache in ("cold", "warm"):
        if cache == "cold":
            vllm_gen.llm.reset_prefix_cache()
        _, seconds = timed(lambda: vllm_gen.llm.generate(prompts, params, use_tqdm=False))
        record("raw vllm.LLM.generate", cache, seconds)
    outputs = {}
    for cache in ("cold", "warm"):
        if cache == "cold":
            vllm_gen.llm.reset_prefix_cache()
        outputs[cache], seconds = timed(lambda: vllm_gen.generate(flat))
        record("vllm generator", cache, seconds)
    vllm_texts = [g.text for g in outputs["cold"]]
    vllm_gen.llm.llm_engine.engine_core.shutdown()  # one engine at a time on a shared machine
    context.shared.clear()

    figures: dict[str, object] = {"examples": n, "rows": rows}
    if not args.skip_hf:
        hf = registry.create("generator", "hf", context, dtype="float32", device="cpu")
        hf_out, seconds = timed(lambda: hf.generate(flat))
        record("hf generator", "-", seconds)
        agree = sum(a == b.text for a, b in zip(vllm_texts, hf_out, strict=True)) / n
        figures["agreement_vllm_hf"] = agree
        print(f"greedy agreement vllm vs hf: {100 * agree:.1f}% of {n}", flush=True)
        del hf
        context.shared.clear()

    if not args.skip_server:
        sys.path.insert(0, str(REPO / "tests" / "support"))
        from lamp_plugins.models import materialize_smollm2
        from vllm_env import Server, engine_env

        with tempfile.TemporaryDirectory() as home:
            server = Server(
                materialize_smollm2(),
                "smollm2-135m-instruct",
                engine_env(Path(home), Path(os.environ.get("LAMP_MODEL_CACHE", lamp_home() / "models"))),
                Path(home) / "server.log",
            )
            started = time.perf_counter()
            server.start()
            print(f"vllm server start: {time.perf_counter() - started:.1f} s", flush=True)
            try:
                api_context = RunContext(lamp_home=Path(home), device="cpu")
                client = registry.create(
                    "generator", "openai", api_context, model="smollm2-135m-instruct", base_url=server.url, concurrency="64"
                )
                api_requests = personalize(task, examples, rankings, client, api_context)
                api_flat = api_requests["none"] + api_requests["ipa"]
                for cache in ("cold", "warm"):
                    api_out, seconds = timed(lambda: client.generate(api_flat))
                    record("openai -> vllm server", cache, seconds)
                figures["openai_usage"] = dict(client.usage())
                figures["agreement_openai_vllm"] = sum(a == b.text for a, b in zip(vllm_texts, api_out, strict=True)) / n
            finally:
                server.stop()

    by = {(s, c): eps for s, c, _, eps in rows}
    ratio_raw = by[("vllm generator", "warm")] / by[("raw vllm.LLM.generate", "warm")]
    print(f"\nvllm generator / raw vLLM (warm): {ratio_raw:.2f}x (target >= 0.9)")
    figures["ratio_vllm_raw"] = ratio_raw
    if ("hf generator", "-") in by:
        ratio_hf = by[("vllm generator", "warm")] / by[("hf generator", "-")]
        figures["ratio_vllm_hf"] = ratio_hf
        print(f"vllm generator / hf generator: {ratio_hf:.2f}x (target >= 2.5)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    figures["load_average"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
