"""``lamp run``: run one experiment or a whole matrix, resumably."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from lamp_harness.cli.options import (
    DataDir,
    DataSources,
    GeneratorArgs,
    Limit,
    MaybeDevice,
    MaybePreset,
    MaybePromptBudget,
    MaybeScheme,
    MaybeSeed,
    NprocPerNode,
    PersonalizerArgs,
    Quiet,
    RetrieverArgs,
    TaskArgs,
)
from lamp_harness.cli.root import app

_LIST = "Comma list allowed: every combination is run."


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (what a launcher hands its workers)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


@app.command("run")
def run(
    task: str = typer.Option(None, "--task", "-t", help=f"Task(s), e.g. lamp-7 or lamp-1,lamp-3. {_LIST}"),
    personalizer: str = typer.Option(
        None, "--personalizer", "-p", help=f"Method(s): none, ipa, fid, pplug, pplug+retrieval... {_LIST} [default: none]"
    ),
    retriever: str = typer.Option(
        None,
        "--retriever",
        "-r",
        help=f"Retriever(s): bm25, contriever, dense, recency, random... {_LIST} "
        "Ignored for methods that use no retrieval (none).",
    ),
    k: str = typer.Option(None, "--k", help=f"Retrieved items per prompt. {_LIST} [default: 1]"),
    generator: str = typer.Option(
        None,
        "--generator",
        "-g",
        help="Model alias, hub id or local path (served by the 'hf' plugin); or a "
        "generator plugin's name (e.g. my-gen: its own default model); or "
        "PLUGIN:MODEL (e.g. my-gen:my-model, its model argument). "
        f"[default: the preset's generator] {_LIST}",
    ),
    preset: MaybePreset = None,
    data: DataSources = None,
    data_dir: DataDir = None,
    split: str = typer.Option(None, "--split", help="train, dev or test (validation = dev). [default: dev]"),
    scheme: MaybeScheme = None,
    limit: Limit = None,
    out: Path = typer.Option(None, "--out", "-o", help="Run folder: one sub-folder per cell. [default: runs]"),
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Matrix file (TOML) with the same keys as these options; options "
        "given on the command line win. Example: examples/matrix.toml",
    ),
    decode: str = typer.Option(
        None,
        "--decode",
        help="generate (free generation, as in the papers) or labels (score every "
        "label of a classification task and pick the best). [default: generate]",
    ),
    prompt_budget: MaybePromptBudget = None,
    batch_size: str = typer.Option(None, "--batch-size", help="Generation batch size: N or auto."),
    num_beams: int = typer.Option(None, "--num-beams", min=1, help="Beam width (papers: 4; 1 = greedy)."),
    max_input_tokens: int = typer.Option(
        None, "--max-input-tokens", min=1, help="Prompt budget L in generator tokens. [default: 256]"
    ),
    retriever_arg: RetrieverArgs = [],
    personalizer_arg: PersonalizerArgs = [],
    generator_arg: GeneratorArgs = [],
    task_arg: TaskArgs = [],
    judge: str = typer.Option(
        None,
        "--judge",
        help="The judge of judged metrics (LaMP-QA's aspect score): any generator, in "
        "the forms of --generator (a model for hf, PLUGIN, PLUGIN:MODEL), e.g. "
        "--judge openai:Qwen/Qwen2.5-32B-Instruct. Its identity is part of the metric's "
        "name and of the cell id; its calls are cached in $LAMP_HOME/judge. See "
        "docs/judges.md. [default: each judged metric's default for the preset]",
    ),
    judge_arg: list[str] = typer.Option(
        [],
        "--judge-arg",
        help="KEY=VALUE for the judge generator (as --generator-arg, e.g. "
        "base_url=http://127.0.0.1:8000/v1), or its decoding: parse_retries=N, "
        "max_new_tokens=N, decode=generate|labels (labels: the best of the "
        "metric's allowed answers by log-likelihood; see docs/judges.md) "
        "(repeatable).",
    ),
    summarizer: str = typer.Option(
        None,
        "--summarizer",
        help="The generator that writes per-user profile summaries for the "
        "methods that use them (pag, oppu+summary): the same forms as "
        "--generator. [default: the run's generator]",
    ),
    summarizer_arg: list[str] = typer.Option(
        [],
        "--summarizer-arg",
        help="KEY=VALUE for the summarizer, as --generator-arg (repeatable), e.g. --summarizer-arg num_beams=1",
    ),
    train_arg: list[str] = typer.Option(
        [],
        "--train-arg",
        help="KEY=VALUE training setting for trainable methods trained "
        "before their cell (epochs, max_steps, batch_size, lr, limit...), "
        "e.g. --train-arg max_steps=20",
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Trained weights from `lamp train` for a trainable method."),
    seed: MaybeSeed = None,
    device: MaybeDevice = None,
    reporter: list[str] = typer.Option(
        [],
        "--reporter",
        help="Also report to an experiment tracker (repeatable or a comma "
        "list): mlflow (one MLflow run per cell), wandb (one W&B run per "
        "cell); any installed reporter plugin. Also: reporter = [...] in "
        "--config, or LAMP_REPORTERS=mlflow. See `lamp plugins`.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Recompute cells that an earlier run finished (a remote "
        "model is asked again: the openai generator's response cache is not read).",
    ),
    allow_stale: bool = typer.Option(
        False,
        "--allow-stale",
        help="Keep finished cells computed with other versions of their plugins "
        "(with a warning) instead of recomputing them.",
    ),
    quiet: Quiet = False,
    nproc_per_node: NprocPerNode = None,
) -> None:
    """Run personalization methods on LaMP tasks and score them.

    Every cell (task x personalizer x retriever x k x generator) gets its own folder under --out with
    config.json, predictions.jsonl, metrics.json and timing.json. Re-running the same command skips
    finished cells and resumes interrupted ones.

    Example: lamp run --task lamp-7 --personalizer none,ipa --retriever bm25 --k 1 --data demo
    """
    from rich.console import Console

    from lamp_harness.base import distributed
    from lamp_harness.base.io import writable_dir
    from lamp_harness.base.secrets import RedactedStream
    from lamp_harness.plugin.registry import REPORTERS_ENV, host
    from lamp_harness.run.cells import Matrix, check_options, read_config
    from lamp_harness.run.runner import run_matrix
    from lamp_harness.train.training import resolve_checkpoint

    if nproc_per_node and nproc_per_node > 1 and not distributed.detect_world().distributed:
        from lamp_harness.cli.root import ARGV

        raise typer.Exit(distributed.launch(nproc_per_node, without_option(ARGV, "--nproc-per-node")))

    settings = read_config(config) if config else {}
    matrix = Matrix.from_cli(
        host().registry,
        config=settings,
        where=str(config) if config else "lamp run",
        task=task,
        personalizer=personalizer,
        retriever=retriever,
        k=k,
        generator=generator,
        split=split,
        data=data,
        data_dir=data_dir,
        scheme=scheme,
        limit=limit,
        preset=preset,
        decode=decode,
        prompt_budget=prompt_budget,
        batch_size=batch_size,
        num_beams=num_beams,
        max_input_tokens=max_input_tokens,
        retriever_arg=retriever_arg,
        personalizer_arg=personalizer_arg,
        generator_arg=generator_arg,
        task_arg=task_arg,
        judge=judge,
        judge_arg=judge_arg,
        summarizer=summarizer,
        summarizer_arg=summarizer_arg,
        train_arg=train_arg,
        checkpoint=checkpoint,
        check_checkpoint=resolve_checkpoint,
        seed=seed,
        device=device,
        reporter=reporter,
    )
    console = Console(file=RedactedStream("stderr"))  # type: ignore[arg-type]  # an IO by delegation; no line repeats a secret
    # An unknown reporter or its missing library is refused before anything is written.
    for name in host().enable_reporters([*matrix.reporters, *os.environ.get(REPORTERS_ENV, "").split(",")]):
        console.print(f"reporter [bold]{name}[/] enabled")
    check_options(matrix, host().registry)  # every cell's component options, before any work
    out_dir = writable_dir(Path(out if out is not None else settings.get("out", "runs")), "--out")
    world = distributed.init()
    run_matrix(matrix, out_dir, force=force, console=console, progress=not quiet and world.is_main, allow_stale=allow_stale)
