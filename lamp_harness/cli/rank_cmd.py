"""``lamp rank``: export each question's ranked profile ids for one retriever."""

from __future__ import annotations

from pathlib import Path

import typer

from lamp_harness.cli.options import (
    DEVICE_DEFAULT,
    PRESET_DEFAULT,
    SCHEME_DEFAULT,
    SEED_DEFAULT,
    DataDir,
    DataSource,
    Device,
    Preset,
    RetrieverArgs,
    Scheme,
    Seed,
)
from lamp_harness.cli.root import app


@app.command("rank")
def rank(
    task: str = typer.Option(..., "--task", "-t", help="Task to rank for. Example: --task lamp-7."),
    retriever: str = typer.Option(
        ...,
        "--retriever",
        "-r",
        help="Retriever (see `lamp plugins`): bm25, contriever, dense, recency, random... Example: --retriever bm25.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="JSON file to write: an object mapping each question id to its profile "
        "ids, best first. Example: --out rankings.json.",
    ),
    split: str = typer.Option("dev", "--split", help="Split: train, dev or test. [default: dev]"),
    data_dir: DataDir = None,
    data: DataSource = None,
    scheme: Scheme = SCHEME_DEFAULT,
    retriever_arg: RetrieverArgs = [],
    top: int = typer.Option(
        0, "--top", min=0, help="Keep only the best N ids per question (0: the full ranking). [default: 0]"
    ),
    preset: Preset = PRESET_DEFAULT,
    seed: Seed = SEED_DEFAULT,
    device: Device = DEVICE_DEFAULT,
    limit: int = typer.Option(0, "--limit", min=0, help="Rank only the first N questions (0: all). [default: 0]"),
) -> None:
    """Rank every question's profile with a retriever and write the ranked profile ids (items
    without ids are named by their position, "0", "1", ...). Rankings are cached under
    $LAMP_HOME/rankings and shared with `lamp run`. Example:
    lamp rank --task lamp-7 --retriever bm25 --data-dir path/to/LaMP-7/user --out r.json"""
    import time

    from rich.console import Console

    from lamp_harness.base.errors import lamp_error
    from lamp_harness.base.io import atomic_write_json, lamp_home, writable_file
    from lamp_harness.base.secrets import RedactedStream
    from lamp_harness.inputs.cache import rank_examples
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.options import check_device, parse_kv
    from lamp_harness.plugin.registry import host

    if top < 0 or limit < 0:
        raise lamp_error("--top and --limit must be 0 or more", fix="Pass e.g. --top 4.")
    check_device(device)
    writable_file(out, "--out")
    registry = host().registry
    registry.get("preset", preset)  # a typo fails before any work
    context = RunContext(lamp_home=lamp_home(), preset=preset, seed=seed, device=device)
    task_obj = registry.create("task", task)
    args = parse_kv(retriever_arg, "--retriever-arg")
    ranker = registry.create("retriever", retriever, context, **args)
    dataset = resolve_dataset(task_obj, data=data, data_dir=data_dir, split=split, scheme=scheme, context=context)
    examples = dataset.examples[:limit] if limit else dataset.examples
    console = Console(file=RedactedStream("stderr"))  # type: ignore[arg-type]  # an IO by delegation; no line repeats a secret
    for note in context.events:
        console.print(f"[dim]{note}[/dim]")
    started = time.perf_counter()
    rankings = rank_examples(ranker, task_obj, dataset.fingerprint, examples, context)
    elapsed = time.perf_counter() - started
    exported = {}
    for example in examples:
        ids = [example.profile[i].id for i in rankings[example.id]]
        exported[example.id] = ids[:top] if top else ids
    atomic_write_json(Path(out), exported)
    console.print(
        f"Ranked {len(examples)} questions of {task_obj.name} {split} with {ranker.name} in {elapsed:.2f} s; wrote {out}"
    )
