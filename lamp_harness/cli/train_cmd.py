"""``lamp train``: train a trainable personalizer (PPlug, FiD) or fine-tune a generator for a
prompt-only one (IPA, none), with checkpoints, resuming, and a dev evaluation at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lamp_harness.cli.options import (
    DEVICE_DEFAULT,
    PRESET_DEFAULT,
    PROMPT_BUDGET_DEFAULT,
    SCHEME_DEFAULT,
    SEED_DEFAULT,
    DataDir,
    DataSource,
    Device,
    GeneratorArgs,
    Limit,
    NprocPerNode,
    PersonalizerArgs,
    Preset,
    PromptBudget,
    Quiet,
    RetrieverArgs,
    Scheme,
    Seed,
    TaskArgs,
)
from lamp_harness.cli.root import app
from lamp_harness.plugin.options import check_device, parse_kv

if TYPE_CHECKING:
    from lamp_harness.train.training import TrainConfig


@app.command("train")
def train(
    task: str = typer.Option(..., "--task", "-t", help="The task to train on, e.g. lamp-7."),
    personalizer: str = typer.Option(
        ...,
        "--personalizer",
        "-p",
        help="A trainable method: pplug, pplug+retrieval, fid; ipa / none (plain fine-tuning of the generator, as "
        "in the LaMP paper); or a per-user one (oppu, oppu+retrieval, oppu+summary: one adapter per user, trained "
        "with its own --personalizer-arg settings). `lamp plugins` lists the installed ones.",
    ),
    data: DataSource = None,
    data_dir: DataDir = None,
    scheme: Scheme = SCHEME_DEFAULT,
    split: str = typer.Option("train", "--split", help="Split to train on. [default: train]"),
    eval_split: str = typer.Option(
        "dev", "--eval-split", help="Split evaluated after training; 'none' to skip. [default: dev]"
    ),
    train_users: float = typer.Option(
        None,
        "--train-users",
        help="Split --split by users instead: this fraction of the users "
        "trains, the rest is evaluated (e.g. 0.67 for 2:1; for data with "
        "only a dev split, like the real LaMP-7 records).",
    ),
    retriever: str = typer.Option(
        None,
        "--retriever",
        "-r",
        help="Retriever for methods that use retrieved items (ipa, fid, "
        "pplug+retrieval), e.g. bm25. [default: the method's default]",
    ),
    retriever_arg: RetrieverArgs = [],
    k: int = typer.Option(1, "--k", min=1, help="Retrieved items per example. [default: 1]"),
    generator: str = typer.Option(
        None,
        "--generator",
        "-g",
        help="Model alias, hub id or folder for the hf plugin, or PLUGIN:MODEL. [default: the preset's generator]",
    ),
    generator_arg: GeneratorArgs = [],
    preset: Preset = PRESET_DEFAULT,
    personalizer_arg: PersonalizerArgs = [],
    task_arg: TaskArgs = [],
    epochs: int = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Passes over the training data. [default: the method's official count: 2, PPlug on LaMP-3 1]",
    ),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimizer steps."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Examples per forward pass. [default: 8]"),
    grad_accum: int = typer.Option(
        1,
        "--grad-accum",
        min=1,
        help="Forward passes per optimizer step (effective batch = batch size x this; PPlug used 64). [default: 1]",
    ),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate. [default: 1e-4]"),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", min=0.0, help="AdamW weight decay. [default: 1e-4]"),
    warmup: float = typer.Option(0.05, "--warmup", help="Linear warmup, as a fraction of the steps. [default: 0.05]"),
    limit: Limit = None,
    eval_limit: int = typer.Option(None, "--eval-limit", min=1, help="Evaluate the first N examples only."),
    save_every: int = typer.Option(
        50, "--save-every", min=1, help="Checkpoint every N steps (and at the end). [default: 50]"
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Training folder (resumes if it holds an interrupted run). [default: "
        "$LAMP_HOME/checkpoints/TASK-PERSONALIZER-CONFIGHASH]",
    ),
    seed: Seed = SEED_DEFAULT,
    device: Device = DEVICE_DEFAULT,
    prompt_budget: PromptBudget = PROMPT_BUDGET_DEFAULT,
    quiet: Quiet = False,
    nproc_per_node: NprocPerNode = None,
    mixed_precision: str = typer.Option(
        "no", "--mixed-precision", help="no, bf16 or fp16 (through accelerate). [default: no]"
    ),
) -> None:
    """Train a personalizer and save its trainable weights.

    Checkpoints hold only the trainable weights (safetensors) plus the optimizer state, so an
    interrupted run resumes where it stopped when the same command is run again. Use the result
    with `lamp run --checkpoint FOLDER`.

    Example: lamp train --task lamp-7 --personalizer pplug --data demo --max-steps 20
    """
    from rich.console import Console

    from lamp_harness.base import distributed
    from lamp_harness.base.errors import lamp_error
    from lamp_harness.base.io import lamp_home, writable_dir
    from lamp_harness.base.secrets import RedactedStream
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.options import prompt_budget as checked_budget
    from lamp_harness.train.training import TrainConfig, latest_checkpoint, training_dir, trains_per_user
    from lamp_harness.train.training import train as run_training

    if mixed_precision not in ("no", "bf16", "fp16"):
        raise lamp_error(
            f"--mixed-precision {mixed_precision!r} is not no, bf16 or fp16", fix="Pass --mixed-precision bf16."
        )
    if nproc_per_node and nproc_per_node > 1 and not distributed.detect_world().distributed:
        from lamp_harness.cli.root import ARGV
        from lamp_harness.cli.run_cmd import without_option

        raise typer.Exit(distributed.launch(nproc_per_node, without_option(ARGV, "--nproc-per-node")))
    if data is not None and not data.strip():
        # `--data "$DATA"` with DATA unset would otherwise train on the task's default source.
        raise lamp_error(
            f"--data {data!r} names no data source",
            fix="Pass e.g. --data demo, or leave --data out for the task's own source.",
        )
    console = Console(file=RedactedStream("stderr"))  # type: ignore[arg-type]  # an IO by delegation; no line repeats a secret
    config = TrainConfig(
        task=task,
        personalizer=personalizer,
        personalizer_args=parse_kv(personalizer_arg, "--personalizer-arg"),
        retriever=retriever,
        retriever_args=parse_kv(retriever_arg, "--retriever-arg"),
        k=k,
        generator=generator,
        generator_args=parse_kv(generator_arg, "--generator-arg"),
        preset=preset,
        data=data,
        data_dir=str(data_dir) if data_dir else None,
        scheme=scheme,
        split=split,
        eval_split=None if eval_split.strip().lower() in ("", "none") else eval_split,
        train_users=train_users,
        limit=limit,
        eval_limit=eval_limit,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        seed=seed,
        save_every=save_every,
        device=device,
        prompt_budget=checked_budget(prompt_budget),
        task_args=_task_args(task_arg, task),
    )
    check_device(device)
    config.validate()
    from lamp_harness.plugin.registry import host
    from lamp_harness.run.cells import Matrix, check_options, make_task

    registry = host().registry
    registry.get("preset", preset)  # typos fail here, before any work
    make_task(registry, task, config.task_args)  # an unknown or bad task option too
    registry.get("personalizer", personalizer)
    check_options(  # a bad component option fails here, before any work
        Matrix(
            tasks=(task,),
            personalizers=(personalizer,),
            retrievers=(retriever,) if retriever else (),
            generators=(generator,),
            preset=preset,
            personalizer_args={"*": config.personalizer_args},
            retriever_args={"*": config.retriever_args},
            generator_args=config.generator_args,
        ),
        registry,
    )
    if trains_per_user(personalizer):  # its training settings are its own options: refuse the loop's
        given = {
            "--epochs": (epochs is not None, "epochs"),
            "--max-steps": (max_steps is not None, None),
            "--batch-size": (batch_size != 8, "batch_size"),
            "--grad-accum": (grad_accum != 1, None),
            "--lr": (lr != 1e-4, "lr"),
            "--weight-decay": (weight_decay != 1e-4, "weight_decay"),
            "--warmup": (warmup != 0.05, "warmup"),
            "--mixed-precision": (mixed_precision != "no", None),
        }
        unused = [flag for flag, (set_, _) in given.items() if set_]
        if unused:
            mapped = [f"{key}=..." for flag, (set_, key) in given.items() if set_ and key]
            raise lamp_error(
                f"{personalizer} trains one adapter per user with its own settings: {', '.join(unused)} "
                f"{'does' if len(unused) == 1 else 'do'} not apply",
                fix=(f"Pass --personalizer-arg {' / '.join(mapped)} instead" if mapped else "Leave them out")
                + f" (`lamp plugins show {personalizer}` lists its settings).",
            )
    if out is not None:
        writable_dir(out, "--out")
    world = distributed.init()
    context = RunContext(lamp_home=lamp_home(), preset=preset, seed=seed, device=device, prompt_budget=config.prompt_budget)
    if trains_per_user(personalizer):  # one adapter per user: users are dealt to the ranks
        if out is not None:
            config = replace(config, personalizer_args={**config.personalizer_args, "adapters": str(out)})
        result = run_training(config, Path("."), context=context, progress=not quiet, console=console, world=world)
        if world.is_main:
            per_minute = f", {result.users_per_minute:.2f} users/minute" if result.users_per_minute else ""
            print(
                f"trained {result.users_trained} of {result.users} users' adapters ({result.steps} steps, "
                f"{result.world_size} process(es)) in {result.wall_s:.1f} s{per_minute}; the others were complete"
            )
            print(f"adapters: {result.directory}")
            print(f"use them with: {_run_command(config, generator_arg)} (found by their settings)")
        return
    # The folder of the equivalent 1-process run (same identity), so that either resumes the other.
    same = replace(config, grad_accum=grad_accum * world.size)
    directory = (
        out if out is not None else distributed.on_main(lambda: training_dir(same, context), "finding the training folder")
    )
    result = run_training(
        config,
        directory,
        context=context,
        progress=not quiet and world.is_main,
        console=console,
        world=world,
        mixed_precision=mixed_precision,
    )
    if not world.is_main:
        return
    for note in context.events:
        console.print(f"[dim]{note}[/dim]")
    checkpoint = latest_checkpoint(result.directory) or result.checkpoint
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    speed = f", {result.examples_per_s:.2f} examples/s" if result.examples else ""
    print(f"trained {result.steps} steps{resumed} in {result.wall_s:.1f} s{speed}{last}")
    print(
        f"effective batch: {result.effective_batch} examples per step ({batch_size} per process x "
        f"{result.world_size} process(es) x {grad_accum} accumulation); the same run as 1 process "
        f"with --grad-accum {grad_accum * result.world_size}"
    )
    for metric in result.metrics:
        ci = (
            f" [{metric.ci_low:.4f}, {metric.ci_high:.4f}]"
            if metric.ci_low is not None and metric.ci_high is not None
            else ""
        )
        print(f"eval {metric.name}: {metric.value:.4f}{ci} (n={metric.n})")
    print(f"checkpoint: {checkpoint}")
    print(f"use it with: lamp run --task {task} --personalizer {personalizer} --checkpoint {result.directory}")


def _task_args(pairs: list[str], task: str) -> dict[str, str]:
    """``--task-arg`` as in ``lamp run``: ``KEY=VALUE``, or ``TASK:KEY=VALUE`` naming the trained
    task (so a run's options can be copied as they are); another task's name is one line."""
    from lamp_harness.base.errors import lamp_error
    from lamp_harness.plugin.registry import host
    from lamp_harness.run.cells import component_args

    tables = component_args(pairs, "--task-arg")
    args = dict(tables.pop("*", {}))
    registry = host().registry
    for name, table in tables.items():
        if registry.get("task", name).name != registry.get("task", task).name:
            key, value = next(iter(table.items()))
            raise lamp_error(
                f"--task-arg {name}:{key}={value} names another task than the one trained ({task})",
                fix=f"Write --task-arg {key}={value} (or {task}:{key}={value}).",
            )
        args.update(table)
    return args


def _run_command(config: TrainConfig, generator_arg: Sequence[str]) -> str:
    """The ``lamp run`` command that answers with the adapters just trained: the same task, data,
    split, generator and personalizer settings (an adapter is found by them)."""
    import shlex

    parts = ["lamp", "run", "--task", config.task]
    if config.data:
        parts += ["--data", config.data]
    if config.data_dir:
        parts += ["--data-dir", config.data_dir]
    parts += ["--split", config.split]
    if config.generator:
        parts += ["--generator", config.generator]
    for pair in generator_arg:
        parts += ["--generator-arg", pair]
    parts += ["--personalizer", config.personalizer]
    for key, value in config.personalizer_args.items():
        parts += ["--personalizer-arg", f"{key}={value}"]
    if config.seed:
        parts += ["--seed", str(config.seed)]
    return " ".join(shlex.quote(part) for part in parts)
