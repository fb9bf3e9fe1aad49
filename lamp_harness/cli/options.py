"""The command-line options several commands share, each declared once: one ``Annotated`` alias,
one help text, one default (the ``*_DEFAULT`` constant, or stated in the help where a command
takes ``None`` to mean "the matrix file's value, else the default").

A command uses an alias as its parameter's type: ``seed: Seed = SEED_DEFAULT``. ``lamp run``
declares its options with ``None`` defaults (``seed: MaybeSeed = None``) because a value given
on the command line wins over the ``--config`` matrix file, which wins over the default: the
``Maybe*`` aliases are the same option (the same help, the same checks) typed ``... | None``.

Options whose meaning differs between commands keep their own declaration in the command:
``--split`` (the evaluated split in ``run``/``rank``, where ``run`` also takes ``validation``;
the training split in ``train``; a list in ``data download``; the predictions' split in
``export``), ``--limit`` of ``rank`` (0 means all), ``--batch-size`` (generation in ``run``,
training in ``train``), ``--force``, ``--out`` and the component selectors (lists in ``run``,
one name in ``train``/``rank``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lamp_harness.run.cells import SEED_MAX  # the largest --seed: one rule with the matrix file's

SEED_DEFAULT = 0
DEVICE_DEFAULT = "auto"
SCHEME_DEFAULT = "user"
PRESET_DEFAULT = "offline"
PROMPT_BUDGET_DEFAULT = "official"

_SEED = typer.Option(
    "--seed",
    min=0,
    max=SEED_MAX,
    help="Seed of everything random the command does (sampling, the random retriever, shuffling "
    "and initialisation, bootstrap intervals, significance trials), 0 to 4294967295. "
    f"[default: {SEED_DEFAULT}]",
)
Seed = Annotated[int, _SEED]
MaybeSeed = Annotated[int | None, _SEED]

_DEVICE = typer.Option("--device", help=f"auto, cpu, cuda, cuda:N or mps. [default: {DEVICE_DEFAULT}]")
Device = Annotated[str, _DEVICE]
MaybeDevice = Annotated[str | None, _DEVICE]

_SCHEME = typer.Option(
    "--scheme",
    help="Split scheme: user (user-based) or time (time-based, dated profiles; 'temporal', "
    f"LongLaMP's word, is time). [default: {SCHEME_DEFAULT}]",
)
Scheme = Annotated[str, _SCHEME]
MaybeScheme = Annotated[str | None, _SCHEME]

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with {split}_questions.json and {split}_outputs.json (wins over --data), e.g. path/to/LaMP-7/user.",
    ),
]

DataSource = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Data source (`lamp data info` lists them): lamp (the official files, cached in "
        "$LAMP_HOME), demo (synthetic, offline), hub... [default: the task's own source, else lamp]",
    ),
]
"""``--data`` of the commands that read one task (``train``, ``rank``, ``data download``);
``lamp run`` takes one source per task as well, see :data:`DataSources`."""

DataSources = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Data source (`lamp data info` lists them): lamp (the official files, cached in "
        "$LAMP_HOME), demo (synthetic, offline), hub...; or one per task: lamp-7=demo,toy-sentiment=toy "
        "(NAME alone applies to the other tasks). [default: each task's own source, else lamp]",
    ),
]

_PRESET = typer.Option(
    "--preset",
    help="Model preset: offline (packaged SmolLM2 + MiniLM, runs anywhere), lamp-paper, "
    f"pplug-paper. See `lamp models`. [default: {PRESET_DEFAULT}]",
)
Preset = Annotated[str, _PRESET]
MaybePreset = Annotated[str | None, _PRESET]

_PROMPT_BUDGET = typer.Option(
    "--prompt-budget",
    help="official (the official LaMP prompt code's token budget, prompt for prompt) or strict "
    "(the harness's deviation: counts without special tokens, exact separator and suffix "
    "reserves, the prompt cut to L). Recorded in config.json, the cell id and the label. "
    f"[default: {PROMPT_BUDGET_DEFAULT}]",
)
PromptBudget = Annotated[str, _PROMPT_BUDGET]
MaybePromptBudget = Annotated[str | None, _PROMPT_BUDGET]

Limit = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Only the first N examples of the split."),
]

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

NprocPerNode = Annotated[
    int | None,
    typer.Option(
        "--nproc-per-node",
        min=1,
        help="Data-parallel worker processes on this machine (one per GPU, or CPU processes with "
        "gloo), started through torch.distributed.run; results equal a 1-process run (in training, "
        "--batch-size is per process: the effective batch is batch size x processes x "
        "--grad-accum). Under torchrun, accelerate launch or srun the ranks are found from the "
        "environment instead. See docs/scale-out.md.",
    ),
]

RetrieverArgs = Annotated[
    list[str],
    typer.Option(
        "--retriever-arg",
        help="KEY=VALUE option of the retriever (repeatable); in `lamp run`, NAME:KEY=VALUE for one "
        "retriever, e.g. --retriever-arg recency:fallback=profile-order. `lamp plugins show NAME` "
        "lists a retriever's options.",
    ),
]

PersonalizerArgs = Annotated[
    list[str],
    typer.Option(
        "--personalizer-arg",
        help="KEY=VALUE option of the personalizer (repeatable); in `lamp run`, NAME:KEY=VALUE for "
        "one personalizer, e.g. --personalizer-arg pplug:aggregation=mean. `lamp plugins show NAME` "
        "lists a personalizer's options.",
    ),
]

GeneratorArgs = Annotated[
    list[str],
    typer.Option(
        "--generator-arg",
        help="KEY=VALUE option of the generator, or passed to its model loader / generate "
        "(repeatable), e.g. --generator-arg dtype=bfloat16. max_new_tokens=N is the generation "
        "budget of every task (it wins over each task's default). `lamp plugins show hf` lists "
        "the options.",
    ),
]

TaskArgs = Annotated[
    list[str],
    typer.Option(
        "--task-arg",
        help="KEY=VALUE option of every task, or TASK:KEY=VALUE of one (repeatable). Every task "
        "takes max_new_tokens=N (its generation budget; wins over --generator-arg max_new_tokens); "
        "an unknown key is refused with the task's valid ones. Recorded in config.json and the "
        "cell id.",
    ),
]
