"""``lamp run``: run one experiment or a whole matrix, resumably."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from lamp_harness.cli.root import SEED_MAX, app

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
    preset: str = typer.Option(
        None,
        "--preset",
        help="Model preset: offline (packaged SmolLM2 + MiniLM, runs anywhere), "
        "lamp-paper, pplug-paper. See `lamp models`. [default: offline]",
    ),
    data: str = typer.Option(
        None,
        "--data",
        help="Data source: lamp (official server, cached in $LAMP_HOME) or demo "
        "(synthetic, offline), or one per task: lamp-7=demo,toy-sentiment=toy "
        "(NAME alone applies to the other tasks). `lamp plugins` lists the sources. "
        "[default: each task's own source, else lamp]",
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Folder with {split}_questions.json and {split}_outputs.json (wins over --data)."
    ),
    split: str = typer.Option(None, "--split", help="train, dev or test (validation = dev). [default: dev]"),
    scheme: str = typer.Option(
        None, "--scheme", help="user or time (LaMP's two splits; 'temporal', LongLaMP's word, is time). [default: user]"
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N questions of the split."),
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
    prompt_budget: str = typer.Option(
        None,
        "--prompt-budget",
        help="official (the official LaMP prompt code's token budget, "
        "prompt for prompt) or strict (the harness's deviation: counts "
        "without special tokens, exact separator and suffix reserves, "
        "the prompt cut to L). Recorded in config.json, the cell id and "
        "the label. [default: official]",
    ),
    batch_size: str = typer.Option(None, "--batch-size", help="Generation batch size: N or auto."),
    num_beams: int = typer.Option(None, "--num-beams", min=1, help="Beam width (papers: 4; 1 = greedy)."),
    max_input_tokens: int = typer.Option(
        None, "--max-input-tokens", min=1, help="Prompt budget L in generator tokens. [default: 256]"
    ),
    retriever_arg: list[str] = typer.Option(
        [],
        "--retriever-arg",
        help="KEY=VALUE for every retriever, or NAME:KEY=VALUE for one "
        "(repeatable), e.g. --retriever-arg recency:fallback=profile-order",
    ),
    personalizer_arg: list[str] = typer.Option(
        [],
        "--personalizer-arg",
        help="KEY=VALUE or NAME:KEY=VALUE (repeatable), e.g. --personalizer-arg pplug:aggregation=mean",
    ),
    generator_arg: list[str] = typer.Option(
        [],
        "--generator-arg",
        help="KEY=VALUE passed to the model loader / generate "
        "(repeatable), e.g. --generator-arg dtype=bfloat16. "
        "max_new_tokens=N is the generation budget of every task "
        "(it wins over each task's default).",
    ),
    task_arg: list[str] = typer.Option(
        [],
        "--task-arg",
        help="KEY=VALUE option of every task, or TASK:KEY=VALUE of one "
        "(repeatable). Every task takes max_new_tokens=N (its generation "
        "budget; wins over --generator-arg max_new_tokens); an unknown key is "
        "refused with the task's valid ones. Recorded in config.json and the "
        "cell id.",
    ),
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
    seed: int = typer.Option(
        None, "--seed", min=0, max=SEED_MAX, help="Seed for sampling, random retrieval, bootstrap. [default: 0]"
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, mps. [default: auto]"),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    nproc_per_node: int = typer.Option(
        None,
        "--nproc-per-node",
        min=1,
        help="Data-parallel worker processes on this machine (one per GPU, "
        "or CPU processes with gloo), started through torch.distributed.run; "
        "results equal a 1-process run. Under torchrun, accelerate launch "
        "or srun the ranks are found from the environment instead. See "
        "docs/scale-out.md.",
    ),
) -> None:
    """Run personalization methods on LaMP tasks and score them.

    Every cell (task x personalizer x retriever x k x generator) gets its own folder under --out with
    config.json, predictions.jsonl, metrics.json and timing.json. Re-running the same command skips
    finished cells and resumes interrupted ones.

    Example: lamp run --task lamp-7 --personalizer none,ipa --retriever bm25 --k 1 --data demo
    """
    from rich.console import Console

    from lamp_harness import distributed
    from lamp_harness.cells import Matrix, read_config
    from lamp_harness.io import writable_dir
    from lamp_harness.registry import REPORTERS_ENV, host
    from lamp_harness.runner import run_matrix
    from lamp_harness.secrets import RedactedStream
    from lamp_harness.training import resolve_checkpoint

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
    out_dir = writable_dir(Path(out if out is not None else settings.get("out", "runs")), "--out")
    world = distributed.init()
    run_matrix(matrix, out_dir, force=force, console=console, progress=not quiet and world.is_main, allow_stale=allow_stale)
