"""Training trainable personalizers (``lamp train``), checkpoints, and resuming.

Any personalizer that implements :class:`~lamp_harness.plugin.contracts.Trainable` trains here; a
personalizer that does not (a prompt-only method such as IPA) is trained by plain fine-tuning of
the generator through the :class:`FineTuned` adapter, as the LaMP paper fine-tunes FlanT5-base.
This module knows no concrete method: it talks to contracts only.

The loop: AdamW (weight decay except on biases and normalisation weights, as the HF Trainer), a
linear warmup over the first ``ceil(warmup * steps)`` steps (the first at rate 0, as HF's
schedule) then linear decay to zero, gradient accumulation to an effective
batch of ``batch_size * grad_accum`` examples, gradient clipping, seeded shuffling per epoch.

A training directory holds::

    config.json                 the resolved configuration, the data checksums, the identity hash
    checkpoints/step-00000040/  one checkpoint (only the latest ones are kept):
        weights.safetensors     the trainable weights only
        trainer_state.pt        optimizer, scheduler and RNG states (for resuming)
        state.json              step, epoch, losses so far, finished flag
        config.json             the same resolved configuration (a checkpoint is self-describing)
    latest.json                 which checkpoint is the newest complete one (written last)
    eval/                       dev-split predictions and metrics (the run-store layout)
    heldout-users/              with --train-users: the held-out users as official files, so that
                                ``lamp run --data-dir .../heldout-users`` scores every method on them

Checkpoints are written into a temporary folder and renamed into place; ``latest.json`` is replaced
atomically after that, so an interruption at any moment leaves the previous checkpoint usable.
Running the same training again resumes from the newest checkpoint, and with the same seed ends
with exactly the weights an uninterrupted run would have produced.

Data with only a dev split (the real LaMP-7 records): ``train_users=0.67`` splits one file by
users, 2:1, into a training part and an evaluation part. LaMP has no user ids: a user is the set
of its profile texts (questions with the same profile belong to the same user), and users are
ordered by a salted hash of that identity, so the split is deterministic, independent of the seed
and of the file order, and the same for every method.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lamp_harness.base.distributed import World, device_for
from lamp_harness.base.errors import LampError, lamp_error, warn
from lamp_harness.base.io import (
    atomic_write_json,
    check_manifest,
    folder_manifest,
    lamp_home,
    stable_hash,
    staging_dir,
    writing,
)
from lamp_harness.base.progress import ProgressBar
from lamp_harness.base.secrets import redact
from lamp_harness.plugin.contracts import (
    Dataset,
    Example,
    Generator,
    Personalizer,
    ProfileItem,
    RunContext,
    Task,
    Trainable,
    TrainingBudget,
)
from lamp_harness.plugin.options import generator_kwargs, generator_spec
from lamp_harness.plugin.trainable import GeneratorFineTuning
from lamp_harness.report.scores import score_cell
from lamp_harness.run import cells
from lamp_harness.run.cells import CellContext, CellSpec, generation_budget, make_task
from lamp_harness.run.prediction import predict, timing_summary

WEIGHTS = "weights.safetensors"
TRAINER_STATE = "trainer_state.pt"
STATE = "state.json"
CONFIG = "config.json"
LATEST = "latest.json"
MANIFEST = "manifest.json"
KEEP_CHECKPOINTS = 2
DEFAULT_EPOCHS = 2
USER_SPLIT_SALT = "lamp-harness/user-split/v1"

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (what ``lamp train`` parses from its options).

    ``generator`` is a ``--generator`` value: a model alias / hub id / folder for the ``hf``
    plugin, a generator plugin name, or ``PLUGIN:MODEL``; ``None`` is the preset's generator.
    ``train_users``: when set, ``split`` is divided by users into a training part (that fraction
    of the users) and an evaluation part (the rest, evaluated unless ``eval_split`` is ``None``).
    ``limit`` / ``eval_limit`` cap the examples (the first N, after the user split).
    ``epochs`` and ``max_steps``: training stops at whichever ends first; ``epochs=None`` is the
    method's official count (``official_epochs(task)``: PPlug 1 on LaMP-3, else 2; 2 otherwise).
    """

    task: str
    personalizer: str
    personalizer_args: Mapping[str, str] = field(default_factory=dict)
    retriever: str | None = None
    retriever_args: Mapping[str, str] = field(default_factory=dict)
    k: int = 1
    generator: str | None = None
    generator_args: Mapping[str, str] = field(default_factory=dict)
    preset: str = "offline"
    data: str | None = None
    data_dir: str | None = None
    scheme: str = "user"
    split: str = "train"
    eval_split: str | None = "dev"
    train_users: float | None = None
    limit: int | None = None
    eval_limit: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 50
    device: str = "auto"
    prompt_budget: str = "official"
    task_args: Mapping[str, str] = field(default_factory=dict)
    """The task's options (``--task-arg``), as a cell of ``lamp run`` has them."""

    def identity(self) -> dict[str, Any]:
        """The fields that change the trained weights (not where or how often it is saved, nor
        the evaluation). The versions of the components are added by :func:`training_identity`."""
        data = asdict(self)
        for key in ("save_every", "eval_limit", "device", "eval_split"):
            data.pop(key)
        if self.task_args:  # absent when empty: trainings without options keep their identity
            data["task_args"] = dict(sorted(self.task_args.items()))
        else:
            data.pop("task_args")
        data["personalizer_args"] = dict(sorted(self.personalizer_args.items()))
        data["retriever_args"] = dict(sorted(self.retriever_args.items()))
        data["generator_args"] = dict(sorted(self.generator_args.items()))
        return data

    def validate(self) -> None:
        """One-line errors for impossible settings."""
        where = "lamp train"
        if self.epochs is not None and self.epochs < 1 and not self.max_steps:
            raise lamp_error(f"--epochs {self.epochs} trains nothing", where=where, fix="Use --epochs 1 or more.")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise lamp_error("--batch-size and --grad-accum must be at least 1", where=where)
        if self.lr <= 0:
            raise lamp_error(f"--lr {self.lr} must be positive", where=where, fix="The papers use 1e-4.")
        if not 0 <= self.warmup < 1:
            raise lamp_error(f"warmup {self.warmup} must be a fraction in [0, 1)", where=where)
        if self.train_users is not None and not 0 < self.train_users < 1:
            raise lamp_error(
                f"--train-users {self.train_users} must be a fraction between 0 and 1",
                where=where,
                fix="Use e.g. --train-users 0.67 for a 2:1 split.",
            )
        if self.save_every < 1:
            raise lamp_error("--save-every must be at least 1", where=where)


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or resumed-and-finished) training run reports."""

    directory: Path
    checkpoint: Path
    steps: int
    examples: int
    wall_s: float
    examples_per_s: float
    losses: tuple[float, ...]
    metrics: tuple[Any, ...] = ()
    resumed_from: int = 0
    history_forward_passes: int | None = None
    effective_batch: int = 0
    """Examples per optimizer step: per-rank batch x ranks x accumulation."""
    world_size: int = 1
    users: int | None = None
    """Per-user training (one adapter per user): the users of the split, those trained by this
    run (the others were already complete) and users per minute."""
    users_trained: int = 0
    users_per_minute: float | None = None


# ---------------------------------------------------------------------------------------------
# Plain fine-tuning of the generator
# ---------------------------------------------------------------------------------------------


class FineTuned(GeneratorFineTuning):
    """Makes any prompt-only personalizer trainable by fine-tuning its generator."""

    def __init__(self, personalizer: Personalizer, generator: Generator) -> None:
        self.personalizer = personalizer
        self.generator = generator

    def personalize(self, task: Task, example: Example, retrieved: Sequence[ProfileItem]) -> Any:
        """The wrapped personalizer's request."""
        return self.personalizer.personalize(task, example, retrieved)


def as_trainable(personalizer: Personalizer, generator: Generator | None = None) -> Trainable:
    """``personalizer`` itself when it is :class:`Trainable`, else a :class:`FineTuned` adapter
    around it (which needs the ``generator``)."""
    if isinstance(personalizer, Trainable):
        return personalizer
    generator = generator or getattr(personalizer, "generator", None)
    if generator is None:
        raise lamp_error(
            f"personalizer {personalizer.name!r} is not trainable by itself and no generator was given to fine-tune",
            where="lamp_harness.train.training",
        )
    return FineTuned(personalizer, generator)


def fine_tunes_generator(personalizer: Personalizer) -> bool:
    """Whether training ``personalizer`` changes the generator's weights (then a generator shared
    with other cells must not receive its checkpoint)."""
    return not isinstance(personalizer, Trainable) or bool(getattr(personalizer, "fine_tunes_generator", False))


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def user_key(example: Example) -> str:
    """A user's identity: the hash of its profile's item contents (ids and order ignored)."""
    items = sorted(
        json.dumps({k: v for k, v in item.fields.items()}, sort_keys=True, ensure_ascii=False, default=str)
        for item in example.profile
    )
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()


def split_by_users(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """``dataset`` divided into (training, evaluation) parts with disjoint users.

    Users are ordered by a salted hash of :func:`user_key` and the first ``round(fraction * users)``
    go to training (at least one user on each side). Examples keep the file order within each part.
    """
    keys = [user_key(ex) for ex in dataset.examples]
    users = sorted(set(keys), key=lambda k: hashlib.sha256(f"{USER_SPLIT_SALT}:{k}".encode()).hexdigest())
    if len(users) < 2:
        raise lamp_error(
            f"--train-users needs at least two users, and {dataset.split!r} has {len(users)}",
            where=dataset.source,
            fix="Use a larger file.",
        )
    n_train = min(max(1, round(fraction * len(users))), len(users) - 1)
    train_users = set(users[:n_train])
    train = tuple(ex for ex, k in zip(dataset.examples, keys, strict=True) if k in train_users)
    held = tuple(ex for ex, k in zip(dataset.examples, keys, strict=True) if k not in train_users)
    tag = f"users{fraction:g}"

    def part(name: str, examples: tuple[Example, ...]) -> Dataset:
        checksums = {**dataset.checksums, "user-split": f"{tag}:{name}"}
        return Dataset(dataset.task, f"{dataset.split}[{name}-{tag}]", examples, dataset.source, checksums)

    return part("train", train), part("eval", held)


def write_split_files(dataset: Dataset, folder: Path, split: str, official_name: str) -> Path:
    """Write ``dataset`` as an official ``{split}_questions.json`` / ``{split}_outputs.json`` pair in
    ``folder`` (e.g. the held-out users of a ``--train-users`` split, so that ``lamp run
    --data-dir FOLDER --split dev`` evaluates every method on exactly those users)."""
    from lamp_harness.inputs.data import split_file_names, write_outputs

    folder = Path(folder)
    questions_name, outputs_name = split_file_names(split)
    records = []
    for ex in dataset.examples:
        profile = []
        for item in ex.profile:
            # Files without item ids (the real LaMP-7 records) get positions as ids on loading;
            # they are not written back, so the files stay what they were.
            record = {"id": item.id} if item.id != str(item.position) else {}
            profile.append({**record, **dict(item.fields)})
        records.append({"id": ex.id, "input": ex.input, "profile": profile})
    atomic_write_json(folder / questions_name, records)
    write_outputs(folder / outputs_name, official_name, {ex.id: ex.gold for ex in dataset.examples if ex.gold is not None})
    return folder


def _limited(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset.examples):
        return dataset
    return Dataset(
        dataset.task, dataset.split, dataset.examples[:limit], dataset.source, {**dataset.checksums, "limit": str(limit)}
    )


def load_training_data(config: TrainConfig, task: Task, context: RunContext) -> tuple[Dataset, Dataset | None]:
    """The training dataset and the evaluation dataset (``None`` without an eval split)."""
    from lamp_harness.inputs.data import resolve_dataset

    data_dir = Path(config.data_dir) if config.data_dir else None
    train = resolve_dataset(
        task, data=config.data, data_dir=data_dir, split=config.split, scheme=config.scheme, context=context
    )
    evaluation: Dataset | None = None
    if config.train_users is not None:
        train, evaluation = split_by_users(train, config.train_users)
    elif config.eval_split:
        evaluation = resolve_dataset(
            task, data=config.data, data_dir=data_dir, split=config.eval_split, scheme=config.scheme, context=context
        )
    train = _limited(train, config.limit)
    if evaluation is not None:
        evaluation = _limited(evaluation, config.eval_limit)
    missing = [ex.id for ex in train.examples if ex.gold is None]
    if missing:
        raise lamp_error(
            f"{len(missing)} training questions have no gold output (e.g. {missing[0]!r})",
            where=train.source,
            fix="Train on a split with golds (train or dev), not test.",
        )
    if not train.examples:
        raise lamp_error("the training split is empty", where=train.source)
    return train, evaluation


# ---------------------------------------------------------------------------------------------
# Building the pieces
# ---------------------------------------------------------------------------------------------


def resolve_retriever(config: TrainConfig, personalizer_cls: Any) -> TrainConfig:
    """``config`` with the retriever, arguments and k a cell of the personalizer runs with (the
    rules of :func:`lamp_harness.run.cells.retriever_choice`, as the runner plans them)."""
    try:
        retriever, args, k = cells.retriever_choice(
            personalizer_cls, config.retriever, config.k, lambda _: config.retriever_args
        )
    except cells.NeedsRetriever:
        raise lamp_error(
            f"personalizer {personalizer_cls.name!r} needs a retriever",
            where="lamp train",
            fix="Add --retriever (e.g. bm25) and --k.",
        ) from None
    return replace(config, retriever=retriever, retriever_args=args, k=k)


def retrieve(config: TrainConfig, task: Task, dataset: Dataset, context: RunContext) -> dict[str, tuple[ProfileItem, ...]]:
    """The top-k profile items of every example (empty tuples without a retriever)."""
    if not config.retriever or config.k <= 0:
        return {ex.id: () for ex in dataset.examples}
    from lamp_harness.inputs.cache import rank_examples
    from lamp_harness.plugin.registry import host

    retriever = host().registry.create("retriever", config.retriever, context, **dict(config.retriever_args))
    rankings = rank_examples(retriever, task, dataset.fingerprint, dataset.examples, context)
    return {ex.id: tuple(ex.profile[i] for i in rankings[ex.id][: config.k]) for ex in dataset.examples}


@dataclass
class _Session:
    config: TrainConfig
    context: RunContext
    task: Task
    generator: Generator
    personalizer: Personalizer
    trainable: Any
    train_data: Dataset
    eval_data: Dataset | None
    identity: str
    base_identity: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)


def component_versions(config: TrainConfig) -> dict[str, str]:
    """``{distribution: version}`` of every installed package providing a component that shapes
    the trained weights: the task, the personalizer, the generator, the retriever and the data
    source. A plugin upgrade changes them, hence the training's identity: its weights are retrained
    (or kept with ``--allow-stale``), exactly like the cells computed with them."""
    from lamp_harness.inputs.data import DEFAULT_SOURCE
    from lamp_harness.plugin.registry import host

    registry = host().registry
    plugin, _ = generator_spec(config.generator, registry.names("generator"))
    wanted = [("task", config.task), ("personalizer", config.personalizer), ("generator", plugin)]
    if config.retriever:
        wanted.append(("retriever", config.retriever))
    if config.data_dir is None:
        declared = getattr(registry.get("task", config.task).load(), "data_source", None)
        wanted.append(("data_source", config.data or declared or DEFAULT_SOURCE))
    return dict(sorted({registry.provider(kind, name) for kind, name in wanted}))


def training_identity(config: TrainConfig, train_data: Dataset) -> tuple[str, str, dict[str, str]]:
    """``(identity, base identity, versions)`` of a training run: the identity hashes the settings
    that change the weights, the training data and the components' versions
    (:func:`component_versions`); the base identity leaves the versions out, so trainings that
    differ only by versions share it (how ``--allow-stale`` finds weights trained by another
    version; it is also the whole identity of trainings from before versions were recorded)."""
    base = {"config": config.identity(), "data": train_data.fingerprint}
    versions = component_versions(config)
    return stable_hash({**base, "versions": versions}, 16), stable_hash(base, 16), versions


def _session(
    config: TrainConfig,
    context: RunContext,
    *,
    generator: Generator | None = None,
    personalizer: Personalizer | None = None,
    task: Task | None = None,
) -> _Session:
    from lamp_harness.plugin.registry import host

    config.validate()
    registry = host().registry
    task = task or make_task(registry, config.task, config.task_args)
    pcls = type(personalizer) if personalizer is not None else registry.get("personalizer", config.personalizer).load()
    config = resolve_retriever(config, pcls)
    train_data, eval_data = load_training_data(config, task, context)
    # Computed as training_dir computes it (before the official epochs fill in an unset count), so
    # a cache folder's name and its config.json agree.
    identity, base_identity, versions = training_identity(config, train_data)
    if generator is None:
        plugin, model = generator_spec(config.generator, registry.names("generator"))
        factory = registry.get("generator", plugin).load()
        generator = factory(
            context, **generator_kwargs(factory, config.generator_args, model, f"generator {plugin!r}", context.events)
        )
    if personalizer is None:
        choice = cells.Choice(
            config.task,
            config.personalizer,
            config.personalizer_args,
            config.retriever,
            config.retriever_args,
            config.task_args,
        )
        built = cells.assemble(choice, context, registry, generator=generator, task=task, where="lamp train")
        personalizer = built.personalizer
    if config.epochs is None:
        official = getattr(personalizer, "official_epochs", None)
        config = replace(config, epochs=official(task) if official is not None else DEFAULT_EPOCHS)
    trainable = as_trainable(personalizer, generator)
    return _Session(
        config, context, task, generator, personalizer, trainable, train_data, eval_data, identity, base_identity, versions
    )


def resolved_config(session: _Session) -> dict[str, Any]:
    """What ``config.json`` records: the configuration, the data, the components, the identity."""
    from lamp_harness import __version__

    def data(ds: Dataset | None) -> dict[str, Any] | None:
        if ds is None:
            return None
        return {
            "split": ds.split,
            "source": ds.source,
            "checksums": dict(ds.checksums),
            "fingerprint": ds.fingerprint,
            "examples": len(ds.examples),
        }

    return redact(
        {  # a secret never reaches disk, even from a component's describe()
            "identity": session.identity,
            "base_identity": session.base_identity,
            "component_versions": dict(session.versions),
            "train_config": {
                **asdict(session.config),
                "personalizer_args": dict(session.config.personalizer_args),
                "retriever_args": dict(session.config.retriever_args),
                "generator_args": dict(session.config.generator_args),
                "task_args": dict(session.config.task_args),
            },
            "task": session.task.name,
            "personalizer": dict(session.personalizer.describe()),
            "generator": dict(session.generator.describe()),
            "train_data": data(session.train_data),
            "eval_data": data(session.eval_data),
            "preset_notes": list(session.context.events),
            "versions": {"lamp-harness": __version__},
        }
    )


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Which examples each optimizer step sees. Deterministic in (seed, epoch), so a resumed run
    replays exactly the batches an uninterrupted run would have seen."""

    n_examples: int
    batch_size: int
    grad_accum: int
    epochs: int
    max_steps: int | None
    seed: int

    @property
    def micro_per_epoch(self) -> int:
        """Micro-batches in one epoch."""
        return math.ceil(self.n_examples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (micro-batches / gradient accumulation)."""
        return math.ceil(self.micro_per_epoch / self.grad_accum)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (epochs or ``max_steps``, whichever ends first)."""
        total = self.steps_per_epoch * max(self.epochs, 1 if self.max_steps else 0)
        if self.max_steps:
            total = self.max_steps if self.epochs < 1 else min(total, self.max_steps)
        return total

    def order(self, epoch: int) -> list[int]:
        """The seeded shuffled example order of ``epoch``."""
        indices = list(range(self.n_examples))
        random.Random(f"lamp-train:{self.seed}:{epoch}").shuffle(indices)
        return indices

    def micro_batches(self, step: int) -> tuple[int, list[list[int]]]:
        """The epoch of ``step`` and its micro-batches (lists of example indices)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = self.order(epoch)
        batches = []
        last = min((within + 1) * self.grad_accum, self.micro_per_epoch)
        for micro in range(within * self.grad_accum, last):
            batches.append(order[micro * self.batch_size : (micro + 1) * self.batch_size])
        return epoch, batches


def _lr_lambda(total: int, warmup: float) -> Callable[[int], float]:
    """HF ``get_linear_schedule_with_warmup`` with ``ceil(warmup * total)`` warmup steps: step s
    (0-based) trains at ``s / warm`` of the rate while warming up (the first step at 0), then
    decays linearly to 0."""
    warm = math.ceil(warmup * total) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def decay_groups(trainable: Any, params: Sequence[Any], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups as the HF Trainer builds them: biases and normalisation-layer
    weights (LayerNorm, RMSNorm, T5's LayerNorm) get no weight decay, everything else does. The
    modules come from ``trainable.trainable_modules()`` (a trainable without it decays all)."""
    exempt: set[int] = set()
    modules = getattr(trainable, "trainable_modules", None)
    for root in modules() if modules is not None else []:
        for module in root.modules():
            is_norm = "LayerNorm" in type(module).__name__ or "RMSNorm" in type(module).__name__
            for name, param in module.named_parameters(recurse=False):
                if is_norm or "bias" in name:
                    exempt.add(id(param))
    decay = [p for p in params if id(p) not in exempt]
    no_decay = [p for p in params if id(p) in exempt]
    return [
        group
        for group in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
        if group["params"]
    ]


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    directory: Path,
    step: int,
    trainable: Any,
    optimizer: Any,
    scheduler: Any,
    config: Mapping[str, Any],
    state: Mapping[str, Any],
) -> Path:
    """Write ``checkpoints/step-N`` atomically and point ``latest.json`` at it; returns its path."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    root = directory / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:08d}"
    tmp = staging_dir(target)
    try:
        with writing(tmp / WEIGHTS):
            save_file(dict(trainable.state_dict()), str(tmp / WEIGHTS), metadata={"step": str(step)})
        with writing(tmp / TRAINER_STATE):
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
                tmp / TRAINER_STATE,
            )
        atomic_write_json(tmp / STATE, dict(state))
        atomic_write_json(tmp / CONFIG, dict(config))
        atomic_write_json(tmp / MANIFEST, folder_manifest(tmp))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(
        directory / LATEST,
        {"step": step, "checkpoint": str(target.relative_to(directory)), "finished": bool(state.get("finished"))},
    )
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be used (``None``: complete and intact: every file
    has the size and SHA-256 its ``manifest.json`` recorded)."""
    path = Path(path)
    if not (path / WEIGHTS).is_file():
        return f"{WEIGHTS} is missing"
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:  # written before manifests existed: verify by reading everything
        return _unverified_problem(path)
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__})"
    return check_manifest(path, manifest)


def _unverified_problem(path: Path) -> str | None:
    """Why a checkpoint without a manifest cannot be used: its weights must load (every tensor
    read in full) and its state must be a JSON object."""
    from safetensors import safe_open

    if not (path / STATE).is_file():
        return f"{STATE} is missing"
    try:
        with safe_open(str(path / WEIGHTS), framework="pt") as weights:
            for name in weights.keys():
                weights.get_tensor(name)
    except Exception as exc:  # noqa: BLE001  safetensors raises its own and OS errors for garbage
        return f"{WEIGHTS} does not load ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    try:
        if not isinstance(json.loads((path / STATE).read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return f"{STATE} is unreadable ({type(exc).__name__})"
    return None


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest intact checkpoint of a training directory (``None`` when there is none). A damaged
    newer one is named in a warning and skipped, so training resumes from the one before it."""
    directory = Path(directory)
    candidates: list[Path] = []
    try:
        latest = json.loads((directory / LATEST).read_text(encoding="utf-8"))
        candidates.append(directory / latest["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    candidates += sorted((p for p in (directory / "checkpoints").glob("step-*") if p.is_dir()), reverse=True)
    for path in dict.fromkeys(candidates):
        if not path.is_dir():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        warn(f"checkpoint {path} is damaged ({problem}); skipping it")
    return None


def resolve_checkpoint(path: Path) -> Path:
    """The checkpoint folder ``path`` names (itself, or a ``lamp train`` folder's newest intact
    checkpoint); a missing, empty or damaged one is a one-line error."""
    return _checkpoint_dir(path)


def _checkpoint_dir(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise lamp_error("does not exist", where=str(path), fix="Pass the folder `lamp train` printed, or train first.")
    if (path / WEIGHTS).is_file():
        problem = checkpoint_problem(path)
        if problem is not None:
            raise lamp_error(
                f"the checkpoint is damaged ({problem})",
                where=str(path),
                fix="Delete it and train again with `lamp train` (or pass an intact checkpoint).",
            )
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise lamp_error(
            "no checkpoint here (expected an intact weights.safetensors, or a `lamp train` output folder with latest.json)",
            where=str(path),
            fix="Pass the folder `lamp train` printed, or train first.",
        )
    return found


def read_checkpoint_config(path: Path) -> dict[str, Any]:
    """The resolved configuration a checkpoint was trained with."""
    return _read_checkpoint_json(_checkpoint_dir(path) / CONFIG)


def recorded_budget(path: Path) -> TrainingBudget | None:
    """The training budget of the checkpoint a cell ran (what its ``config.json`` records as
    ``training``, so a leaderboard can say how long a column trained): optimizer steps, batch
    size, gradient accumulation, training examples, epochs (planned), ``max_steps``, learning
    rate, mixed precision, and the personalizer's augmentation when it records one. ``None`` when
    the checkpoint records no configuration."""
    try:
        folder = _checkpoint_dir(Path(path))
        config = _read_checkpoint_json(folder / CONFIG)
        state = _read_checkpoint_json(folder / STATE) if (folder / STATE).is_file() else {}
    except LampError:
        return None
    train = recorded if isinstance(recorded := config.get("train_config"), Mapping) else {}
    data = recorded if isinstance(recorded := config.get("train_data"), Mapping) else {}
    personalizer = recorded if isinstance(recorded := config.get("personalizer"), Mapping) else {}
    budget = {
        "steps": state.get("step"),
        "batch_size": train.get("batch_size"),
        "grad_accum": train.get("grad_accum"),
        "world_size": state.get("world_size"),
        "examples": data.get("examples"),
        "epochs": train.get("epochs"),
        "max_steps": train.get("max_steps"),
        "lr": train.get("lr"),
        "mixed_precision": config.get("mixed_precision"),
        "augment": personalizer.get("augment"),
    }
    recorded = TrainingBudget(**{k: v for k, v in budget.items() if v is not None})
    return recorded if recorded.to_json() else None


def _read_checkpoint_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:
        raise lamp_error(
            f"cannot read it ({type(exc).__name__})",
            where=str(path),
            fix="Delete the checkpoint and train again with `lamp train`.",
        ) from None


def load_checkpoint(personalizer: Personalizer, directory: Path, *, generator: Generator | None = None) -> dict[str, Any]:
    """Load trained weights into a personalizer that :meth:`~Personalizer.setup` has prepared.

    ``directory`` is a ``lamp train`` output folder (its newest checkpoint is used) or one
    checkpoint folder. A personalizer that is not :class:`Trainable` itself (IPA, none) receives
    plain fine-tuned generator weights; pass its ``generator``. Returns the checkpoint's resolved
    configuration. A checkpoint of another method is a one-line error.
    """
    from safetensors.torch import load_file

    path, config = _checkpoint_for(personalizer, directory)
    trainable = as_trainable(personalizer, generator)
    device = _device_of(trainable)
    try:
        state = load_file(str(path / WEIGHTS), device=device)
    except Exception as exc:  # a damaged safetensors file (header, truncation)
        raise lamp_error(
            f"cannot read {WEIGHTS} ({type(exc).__name__}: {' '.join(str(exc).split())[:100]})",
            where=str(path),
            fix="Delete the checkpoint and train again with `lamp train`.",
        ) from None
    _load_weights(trainable, state, path)
    return config


def _load_weights(trainable: Any, state: Mapping[str, Any], path: Path) -> None:
    """``trainable.load_state_dict(state)``; weights that do not fit the method as set up (other
    tensor names or shapes: another model, a damaged checkpoint without a manifest) are a one-line
    error naming the checkpoint, not a torch traceback."""
    try:
        trainable.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise lamp_error(
            f"its weights do not fit the method as set up here ({type(exc).__name__}: "
            f"{why[:200]}{'...' if len(why) > 200 else ''})",
            where=str(path),
            fix="Pass the checkpoint `lamp train` wrote for this method, task and model, or delete it and train again.",
        ) from None


def fine_tuned_weights(personalizer: Personalizer, directory: Path) -> Path:
    """The safetensors file of generator weights that a prompt-only method's checkpoint holds
    (``lamp train --personalizer none|ipa``), for a generator that loads them itself (an inference
    engine serving the fine-tuned model, see :meth:`Generator.serve_fine_tuned`). ``directory`` is
    checked as :func:`load_checkpoint` checks it."""
    path, _ = _checkpoint_for(personalizer, directory)
    return path / WEIGHTS


def _checkpoint_for(personalizer: Personalizer, directory: Path) -> tuple[Path, dict[str, Any]]:
    """The newest intact checkpoint under ``directory`` and its configuration; one line when it
    was trained for another method."""
    path = _checkpoint_dir(Path(directory))
    config = _read_checkpoint_json(path / CONFIG)
    trained = config.get("train_config", {}).get("personalizer")
    if trained and trained != personalizer.name:
        raise lamp_error(
            f"this checkpoint was trained for personalizer {trained!r}, not {personalizer.name!r}",
            where=str(path),
            fix=f"Use --personalizer {trained}, or train {personalizer.name!r} first.",
        )
    return path, config


def _device_of(trainable: Any) -> str:
    params = list(trainable.parameters())
    return str(params[0].device) if params else "cpu"


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    context: RunContext | None = None,
    generator: Generator | None = None,
    personalizer: Personalizer | None = None,
    progress: bool = True,
    console: Any = None,
    on_step: Callable[[int, float], None] | None = None,
    world: World | None = None,
    mixed_precision: str = "no",
) -> TrainResult:
    """Train (or resume training) into ``out_dir`` and evaluate on the eval split at the end.

    ``generator`` / ``personalizer`` may be passed already built (the personalizer already
    ``setup``); otherwise they are created from the registry. ``on_step(step, loss)`` is called
    after every optimizer step (after a checkpoint of that step is written).

    ``world``: the data-parallel job this process is a rank of (see
    :mod:`lamp_harness.base.distributed`; one process when ``None``). ``batch_size`` is then per rank,
    and the job is the 1-process run with ``grad_accum * world.size`` micro-batches per step:
    rank ``r`` computes the ``r``-th micro-batch of each round of ``world.size``, and DDP (through
    accelerate) sums the ranks' gradients. Same seed, same data order, same weights as that
    1-process run, whose identity (training folder, checkpoints) it shares, so either resumes the
    other. accelerate also applies ``mixed_precision`` (``bf16`` / ``fp16``), and FSDP or
    DeepSpeed when ``accelerate launch --config_file`` asks for them. Rank 0 alone writes files and
    evaluates.

    One process at a time trains into ``out_dir``: a second one waits on its file lock, then
    resumes from (or simply reuses) what the first one saved.
    """
    from filelock import FileLock

    world = world or World()
    out_dir = Path(out_dir)
    if trains_per_user(personalizer if personalizer is not None else config.personalizer):
        return train_per_user(
            config,
            context=context,
            generator=generator,
            personalizer=personalizer,
            progress=progress,
            console=console,
            world=world,
        )
    kwargs = dict(
        context=context,
        generator=generator,
        personalizer=personalizer,
        progress=progress,
        console=console,
        on_step=on_step,
        world=world,
        mixed_precision=mixed_precision,
    )
    if world.distributed:  # the ranks of one job train together; rank 0 alone writes
        with _job_lock(out_dir, world):
            return _train(replace(config, grad_accum=config.grad_accum * world.size), out_dir, **kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / ".lock")):
        return _train(config, out_dir, **kwargs)


@contextmanager
def _job_lock(out_dir: Path, world: World) -> Iterator[None]:
    """Rank 0 holds the training folder's lock for the whole data-parallel job, so that a second
    training (or a resume) into the same folder cannot run meanwhile; the job refuses, in one
    line, a folder another process is training into (waiting would hold the other ranks in a
    collective until ``LAMP_DIST_TIMEOUT``)."""
    from filelock import FileLock, Timeout

    from lamp_harness.base import distributed

    lock = FileLock(str(out_dir / ".lock"), thread_local=False)
    refused: str | None = None
    if world.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:
            refused = "another process is training into this folder"
    refused = distributed.broadcast(refused)
    if refused is not None:
        raise lamp_error(
            refused,
            where=str(out_dir),
            fix="Wait until it has finished (then run the same command to reuse or resume it), or pass another --out.",
        )
    try:
        yield
    finally:
        if world.is_main:
            lock.release()


def trains_per_user(personalizer: Personalizer | str) -> bool:
    """Whether a personalizer (or a registered name) trains one adapter per user
    (``trains_per_user``; e.g. one LoRA per user) instead of one set of weights for everyone."""
    if isinstance(personalizer, str):
        from lamp_harness.plugin.registry import host

        personalizer = host().registry.get("personalizer", personalizer).load()
    return bool(getattr(personalizer, "trains_per_user", False))


def _config_context(config: TrainConfig) -> RunContext:
    """The run context of a training job given none: ``config``'s preset, seed, device and prompt budget."""
    return RunContext(
        lamp_home=lamp_home(),
        preset=config.preset,
        seed=config.seed,
        device=config.device,
        prompt_budget=config.prompt_budget,
    )


def _rank_context(config: TrainConfig, context: RunContext | None, world: World) -> RunContext:
    """The run context a training job runs in (the caller's, else one built from ``config``), on
    this rank's device when the job is data-parallel."""
    context = context or _config_context(config)
    if world.distributed:
        context = replace(context, device=device_for(context.device, world))
    return context


def train_per_user(
    config: TrainConfig,
    *,
    context: RunContext | None = None,
    generator: Generator | None = None,
    personalizer: Personalizer | None = None,
    progress: bool = True,
    console: Any = None,
    world: World | None = None,
) -> TrainResult:
    """``lamp train`` for a personalizer that trains one adapter per user: every user of the split
    gets the personalizer's ``train_users(task, examples, rank=, world_size=, progress=)``; users
    are independent, so the ranks of a job each train their share (dealt by the personalizer),
    and a user whose adapter is already complete is skipped, so a killed job resumes with the
    missing users at any world size. The personalizer's adapter store is the result's folder;
    no evaluation (the adapters are for the users of the split itself)."""
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.registry import host

    world = world or World()
    context = _rank_context(config, context, world)
    registry = host().registry
    task = make_task(registry, config.task, config.task_args)
    if generator is None:
        plugin, model = generator_spec(config.generator, registry.names("generator"))
        factory = registry.get("generator", plugin).load()
        generator = on_ranks(
            world,
            lambda: factory(
                context, **generator_kwargs(factory, config.generator_args, model, f"generator {plugin!r}", context.events)
            ),
            "loading the generator",
        )
    if personalizer is None:
        personalizer = registry.create("personalizer", config.personalizer, context, **dict(config.personalizer_args))
        personalizer.setup(task, generator, context)
    data_dir = Path(config.data_dir) if config.data_dir else None
    personalizer.use_train_split(
        lambda: (
            resolve_dataset(
                task, data=config.data, data_dir=data_dir, split="train", scheme=config.scheme, context=context
            ).examples
        )
    )
    dataset = on_ranks(
        world,
        lambda: resolve_dataset(
            task, data=config.data, data_dir=data_dir, split=config.split, scheme=config.scheme, context=context
        ),
        "reading the data",
    )
    if config.train_users is not None:
        dataset = split_by_users(dataset, config.train_users)[0]
    dataset = _limited(dataset, config.limit)
    started = time.perf_counter()
    say = (lambda text: console.print(f"[dim]rank {world.rank}: {text}[/dim]")) if console and progress else None
    # train_users, store and index_users: the per-user training protocol, which the Personalizer
    # contract does not declare (OPPU's).
    stats = personalizer.train_users(  # type: ignore[union-attr]
        task,
        dataset.examples,
        rank=world.rank,
        world_size=world.size,
        progress=say,
    )
    barrier(world)
    wall = time.perf_counter() - started
    store = Path(personalizer.store())  # type: ignore[union-attr]
    if world.is_main:
        personalizer.index_users()  # type: ignore[union-attr]
    from lamp_harness.base import distributed

    every = distributed.gather(stats) if world.distributed else [stats]
    every = every or [stats]
    # users/minute counts per-user training only: a shared first stage (trained once, or read)
    # is left out of the wall time.
    wall = max(wall - max(float(s.get("stage1_s") or 0.0) for s in every), 1e-9)
    trained = sum(s["trained"] for s in every)
    steps = sum(s["steps"] for s in every)
    examples = sum(s["examples"] for s in every)
    return TrainResult(
        store,
        store,
        steps,
        examples,
        round(wall, 3),
        round(examples / wall, 3) if wall > 0 and examples else 0.0,
        (),
        world_size=world.size,
        users=stats["users"],
        users_trained=trained,
        users_per_minute=round(60 * trained / wall, 3) if wall > 0 and trained else None,
    )


def _train(
    config: TrainConfig,
    out_dir: Path,
    *,
    context: RunContext | None,
    generator: Generator | None,
    personalizer: Personalizer | None,
    progress: bool,
    console: Any,
    on_step: Callable[[int, float], None] | None,
    world: World,
    mixed_precision: str,
) -> TrainResult:
    import torch

    context = _rank_context(config, context, world)
    session = on_ranks(
        world,
        lambda: _session(config, context, generator=generator, personalizer=personalizer),
        "loading the training data and models",
    )
    config = session.config
    resolved = {**resolved_config(session), "mixed_precision": mixed_precision}
    if world.is_main:
        _check_same_run(out_dir, session.identity)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / CONFIG, resolved)
        if config.train_users is not None and session.eval_data is not None:
            write_split_files(session.eval_data, out_dir / "heldout-users", config.split, session.task.official_name)
    examples = session.train_data.examples
    eval_examples = session.eval_data.examples if session.eval_data is not None else ()
    # Per-profile state (PPlug's history vectors) is computed here, once, never inside a step
    # (rank 0 first: it fills the embedding cache the others then read).
    on_ranks(
        world,
        lambda: session.personalizer.prepare(session.task, tuple(examples) + tuple(eval_examples)),
        "preparing the personalizer",
    )
    retrieved = on_ranks(
        world,
        lambda: retrieve(config, session.task, session.train_data, context),
        "ranking the training profiles",
        main_only=True,
    )
    augment = getattr(session.trainable, "training_examples", None)
    if augment is not None:  # e.g. PPlug's copies with dropped history items
        originals = {ex.id: ex for ex in examples}
        examples = tuple(augment(session.task, examples, config.seed))
        base = {ex.id: ex.id.split("#aug", 1)[0] for ex in examples}
        retrieved = {ex.id: retrieved[base[ex.id] if base[ex.id] in originals else ex.id] for ex in examples}

    assert config.epochs is not None  # _session filled in the official count
    schedule = Schedule(len(examples), config.batch_size, config.grad_accum, config.epochs, config.max_steps, config.seed)
    total = schedule.total_steps
    trainable = session.trainable
    params = [p for p in trainable.parameters() if p.requires_grad]
    if not params:
        raise lamp_error(f"personalizer {session.personalizer.name!r} has no trainable parameters", where="lamp train")
    optimizer = torch.optim.AdamW(decay_groups(trainable, params, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, config.warmup))

    step = 0
    losses: list[float] = []
    found = broadcast(world, latest_checkpoint(out_dir) if world.is_main else None)
    if found is not None:
        step, losses = _resume(found, trainable, optimizer, scheduler)
    parallel = _Parallel(world, trainable, session.task, params, optimizer, mixed_precision, context.device)
    resumed_from = step
    history = getattr(session.personalizer, "history", None)
    passes_before = getattr(history, "forward_passes", None)
    set_training = getattr(trainable, "set_training", None)
    seen = 0
    started = time.perf_counter()
    checkpoint = found
    if step < total:
        if set_training:
            set_training(True)
        try:
            with ProgressBar(console, progress, "training", total, step, loss="-", ex_per_s="-") as bar:
                while step < total:
                    epoch, batches = schedule.micro_batches(step)
                    optimizer.zero_grad(set_to_none=True)
                    count = sum(len(b) for b in batches)
                    step_loss = 0.0
                    rounds = [batches[k : k + world.size] for k in range(0, len(batches), world.size)]
                    for j, group in enumerate(rounds):
                        # A rank without a micro-batch in the last round of an epoch still joins
                        # the gradient sum, with weight 0.
                        mine = group[world.rank] if world.rank < len(group) else []
                        chosen = [examples[i] for i in (mine or group[0][:1])]
                        weight = len(mine) / count  # this micro-batch's share of the step's mean loss
                        loss = parallel.backward(
                            chosen, [retrieved[ex.id] for ex in chosen], weight, last=j == len(rounds) - 1
                        )
                        step_loss += loss * weight
                    step_loss = parallel.total(step_loss)
                    parallel.clip(params, config.max_grad_norm)
                    parallel.step()
                    scheduler.step()
                    step += 1
                    seen += count
                    losses.append(round(step_loss, 6))
                    if step % config.save_every == 0 or step == total:
                        state = {
                            "step": step,
                            "epoch": epoch,
                            "total_steps": total,
                            "losses": losses,
                            "finished": step == total,
                            "effective_batch": config.batch_size * config.grad_accum,
                            "world_size": world.size,
                        }
                        checkpoint = out_dir / "checkpoints" / f"step-{step:08d}"
                        if world.is_main:  # rank 0 alone writes, atomically
                            checkpoint = save_checkpoint(out_dir, step, trainable, optimizer, scheduler, resolved, state)
                    bar.update(
                        step, loss=f"{step_loss:.4f}", ex_per_s=f"{seen / max(time.perf_counter() - started, 1e-9):.2f}"
                    )
                    if on_step is not None:
                        on_step(step, step_loss)
        finally:
            if set_training:
                set_training(False)
    wall = time.perf_counter() - started
    assert checkpoint is not None
    passes = None
    if history is not None and passes_before is not None:
        passes = history.forward_passes - passes_before
    metrics: tuple[Any, ...] = ()
    barrier(world)  # the last checkpoint is on disk before any rank reports it
    if world.is_main and config.eval_split and session.eval_data is not None and session.eval_data.examples:
        metrics = tuple(evaluate(session, out_dir / "eval", progress=progress, console=console))
    return TrainResult(
        out_dir,
        checkpoint,
        step,
        seen,
        round(wall, 3),
        round(seen / wall, 3) if wall > 0 and seen else 0.0,
        tuple(losses),
        metrics,
        resumed_from,
        passes,
        config.batch_size * config.grad_accum,
        world.size,
    )


def _loss_module(trainable: Any, task: Task, params: Sequence[Any]) -> Any:
    """A ``torch.nn.Module`` whose forward is ``trainable``'s loss, so that DDP (and FSDP /
    DeepSpeed) can wrap a personalizer that is not one module: its parameters are registered here."""
    import torch

    class Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trained = torch.nn.ParameterList(params)

        def forward(self, examples: Sequence[Example], retrieved: Sequence[Any]) -> Any:
            return trainable.training_loss(task, examples, retrieved)

    return Loss()


class _Parallel:
    """One optimizer step's gradients: plain backward in one process, DDP through accelerate in a
    data-parallel job or with mixed precision."""

    def __init__(
        self,
        world: World,
        trainable: Any,
        task: Task,
        params: Sequence[Any],
        optimizer: Any,
        mixed_precision: str,
        device: str,
    ) -> None:
        self.world, self.trainable, self.task, self.optimizer = world, trainable, task, optimizer
        self.accelerator = None
        if world.distributed or mixed_precision != "no":
            from accelerate import Accelerator

            try:
                self.accelerator = Accelerator(mixed_precision=mixed_precision, cpu=device == "cpu")
            except (ValueError, RuntimeError) as exc:
                raise lamp_error(
                    f"--mixed-precision {mixed_precision}: {' '.join(str(exc).split())}",
                    where="lamp train",
                    fix="Use bf16 on CPUs and recent GPUs, fp16 on GPUs, or no.",
                ) from None
            self.model, self.prepared = self.accelerator.prepare(_loss_module(trainable, task, params), optimizer)

    def backward(self, examples: Sequence[Example], retrieved: Sequence[Any], weight: float, *, last: bool) -> float:
        """Backpropagate ``weight`` x the mean loss of ``examples``; returns that mean loss."""
        if self.accelerator is None:
            loss = self.trainable.training_loss(self.task, examples, retrieved)
            (loss * weight).backward()
            return float(loss.detach())
        from contextlib import nullcontext

        # Gradients are averaged over ranks once per step, after its last micro-batch.
        sync = nullcontext() if last or not self.world.distributed else self.accelerator.no_sync(self.model)
        with sync:
            loss = self.model(examples, retrieved)
            self.accelerator.backward(loss * (weight * self.world.size))
        return float(loss.detach())

    def total(self, value: float) -> float:
        """The sum of ``value`` over ranks (the step's mean loss from each rank's share)."""
        if not self.world.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def clip(self, params: Sequence[Any], max_norm: float) -> None:
        """Clip the summed gradients to ``max_norm`` (nothing when it is 0)."""
        if max_norm <= 0:
            return
        if self.accelerator is None:
            import torch

            torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)

    def step(self) -> None:
        """The optimizer step."""
        (self.optimizer if self.accelerator is None else self.prepared).step()


def _check_same_run(out_dir: Path, identity: str) -> None:
    path = out_dir / CONFIG
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("identity")
    except ValueError:
        return
    if recorded and recorded != identity and latest_checkpoint(out_dir) is not None:
        raise lamp_error(
            "this folder holds a training run with a different configuration or data",
            where=str(out_dir),
            fix="Use another --out folder, or delete this one to start over.",
        )


def _resume(path: Path, trainable: Any, optimizer: Any, scheduler: Any) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    state = json.loads((path / STATE).read_text(encoding="utf-8"))
    _load_weights(trainable, load_file(str(path / WEIGHTS), device=_device_of(trainable)), path)
    saved = torch.load(path / TRAINER_STATE, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"])
    return int(state["step"]), [float(x) for x in state.get("losses", [])]


def on_ranks(world: World, work: Callable[[], Any], what: str, *, main_only: bool = False) -> Any:
    """``work`` for a data-parallel job: rank 0 first (it fills the caches), then the others
    (``main_only``: they receive rank 0's result instead of running it)."""
    if not world.distributed:
        return work()
    from lamp_harness.base import distributed

    return (distributed.on_main if main_only else distributed.main_first)(work, what)


def broadcast(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every rank of ``world``."""
    if not world.distributed:
        return value
    from lamp_harness.base import distributed

    return distributed.broadcast(value)


def barrier(world: World) -> None:
    """Wait until every rank of ``world`` gets here."""
    if world.distributed:
        from lamp_harness.base import distributed

        distributed.barrier()


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def evaluate(
    session: _Session, out_dir: Path, *, progress: bool = True, console: Any = None, batch_size: int = 8
) -> list[Any]:
    """Generate for the eval examples with the trained personalizer and score them; writes
    ``predictions.jsonl``, ``metrics.json`` and ``timing.json`` into ``out_dir``."""
    from lamp_harness.run.store import CellStore

    assert session.eval_data is not None
    data = session.eval_data
    store = CellStore(out_dir)
    store.reset()
    out_dir.mkdir(parents=True, exist_ok=True)
    store.write_config({**resolved_config(session), "split": data.split})
    retrieved = retrieve(session.config, session.task, data, session.context)
    batch_size = getattr(session.generator, "batch_size", None) or batch_size
    budget, _ = generation_budget(session.task, session.config.generator_args, session.config.task_args)
    started = time.perf_counter()
    with ProgressBar(console, progress, "evaluating", len(data.examples)) as bar:
        predictions = predict(
            session.task,
            session.personalizer,
            session.generator,
            data.examples,
            store,
            chunk=batch_size,
            retrieved=lambda ex: retrieved[ex.id],
            on_batch=lambda batch, _: bar.advance(len(batch)),
            max_new_tokens=budget,
        )
    wall = time.perf_counter() - started
    scored = score_cell(session.task, data.examples, predictions, seed=session.config.seed)
    store.write_results(
        session.task.name,
        data.split,
        scored.metrics,
        timing_summary(predictions, len(predictions), wall),
        scored.scores.to_json() if scored.scores else None,
    )
    return scored.metrics


# ---------------------------------------------------------------------------------------------
# What the runner calls
# ---------------------------------------------------------------------------------------------


def checkpoint_home() -> Path:
    """Where :func:`ensure_trained` keeps its training runs: ``$LAMP_HOME/checkpoints``."""
    return lamp_home() / "checkpoints"


def _identities(config: TrainConfig, context: RunContext | None) -> tuple[str, str, dict[str, str]]:
    from lamp_harness.plugin.registry import host

    context = context or _config_context(config)
    task = make_task(host().registry, config.task, config.task_args)
    train_data, _ = load_training_data(replace(config, eval_split=None), task, context)
    return training_identity(config, train_data)


def _slug(config: TrainConfig) -> str:
    return f"{config.task}-{config.personalizer}".replace("+", "plus")


def training_dir(config: TrainConfig, context: RunContext | None = None) -> Path:
    """The cache folder of ``config``'s training run (named by its identity hash: settings, data
    and the versions of its components)."""
    identity, _, _ = _identities(config, context)
    return checkpoint_home() / f"{_slug(config)}-{identity}"


@dataclass(frozen=True)
class StaleWeights:
    """A finished training of the same settings and data by other versions of its components."""

    checkpoint: Path
    changed: str
    """What differs, e.g. ``"lamp-toys 0.1 -> 0.2"`` (``"unrecorded"`` for a training from before
    versions were recorded)."""

    def describe(self) -> dict[str, str]:
        """What a cell's ``config.json`` records of the stale weights it used."""
        return {"checkpoint": str(self.checkpoint), "changed": self.changed}


def stale_weights(config: TrainConfig, context: RunContext | None = None) -> StaleWeights | None:
    """A finished training under ``$LAMP_HOME/checkpoints`` that differs from ``config``'s only by
    the versions of its components (same base identity), or ``None``."""
    identity, base, versions = _identities(config, context)
    for folder in sorted(checkpoint_home().glob(f"{_slug(config)}-*")):
        if folder.name.endswith(f"-{identity}"):
            continue
        try:
            recorded = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        # Trainings from before versions were recorded are named by their base identity.
        if recorded.get("base_identity") != base and not folder.name.endswith(f"-{base}"):
            continue
        found = latest_checkpoint(folder)
        if found is None or not _read_checkpoint_json(found / STATE).get("finished"):
            continue
        old = dict(recorded.get("component_versions") or {})
        changed = ", ".join(f"{d} {old.get(d, '?')} -> {v}" for d, v in versions.items() if old.get(d) != v)
        return StaleWeights(found, changed if old else "unrecorded")
    return None


def checkpoint_staleness(checkpoint: Path, versions: Mapping[str, str]) -> StaleWeights | None:
    """For a ``--checkpoint``: what differs between the versions it was trained with and
    ``versions`` (the installed ones of a cell's components; only distributions both record are
    compared), or ``None`` when nothing does or the checkpoint records no versions."""
    try:
        recorded = dict(read_checkpoint_config(checkpoint).get("component_versions") or {})
    except LampError:  # no readable config: load_checkpoint says what is wrong with it
        return None
    changed = [f"{d} {recorded[d]} -> {v}" for d, v in sorted(versions.items()) if d in recorded and recorded[d] != v]
    return StaleWeights(resolve_checkpoint(checkpoint), ", ".join(changed)) if changed else None


def ensure_trained(
    config: TrainConfig,
    *,
    context: RunContext | None = None,
    generator: Generator | None = None,
    personalizer: Personalizer | None = None,
    progress: bool = True,
    console: Any = None,
) -> Path:
    """The newest checkpoint of ``config``'s finished training run under
    ``$LAMP_HOME/checkpoints``, training (or resuming) first when it is missing or unfinished."""
    return _ensure_trained(
        config, context=context, generator=generator, personalizer=personalizer, progress=progress, console=console
    )[0]


def _ensure_trained(
    config: TrainConfig,
    *,
    context: RunContext | None = None,
    generator: Generator | None = None,
    personalizer: Personalizer | None = None,
    progress: bool = True,
    console: Any = None,
    allow_stale: bool = False,
) -> tuple[Path, StaleWeights | None]:
    """:func:`ensure_trained`; with a training of other versions of the components found
    (:func:`stale_weights`), its weights are kept when ``allow_stale`` (and returned as stale),
    else the settings are trained again, with a warning either way."""
    context = context or _config_context(config)
    from lamp_harness.plugin.registry import host

    pcls = (
        type(personalizer) if personalizer is not None else host().registry.get("personalizer", config.personalizer).load()
    )
    config = resolve_retriever(config, pcls)
    directory = training_dir(config, context)
    found = latest_checkpoint(directory)
    if found is not None and _read_checkpoint_json(found / STATE).get("finished"):
        return found, None
    stale = stale_weights(config, context)
    if stale is not None and allow_stale:
        warn(
            f"{config.personalizer} on {config.task}: keeping the weights {stale.checkpoint}, trained with "
            f"other versions ({stale.changed}), because of --allow-stale; its cells are labelled "
            "'(stale weights)'"
        )
        return stale.checkpoint, stale
    if stale is not None:
        warn(
            f"{config.personalizer} on {config.task}: the weights {stale.checkpoint} were trained with "
            f"other versions ({stale.changed}); training again into {directory} (pass --allow-stale "
            "to keep the old weights)"
        )
    return train(
        config,
        directory,
        context=context,
        generator=generator,
        personalizer=personalizer,
        progress=progress,
        console=console,
    ).checkpoint, None


_OVERRIDABLE = (
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "weight_decay",
    "warmup",
    "max_grad_norm",
    "save_every",
    "limit",
)


def with_overrides(config: TrainConfig, overrides: Mapping[str, str]) -> TrainConfig:
    """``config`` with ``--train-arg KEY=VALUE`` overrides, converted to the fields' types."""
    from dataclasses import replace

    from lamp_harness.plugin.options import float_arg, int_arg, reject_unknown_args

    reject_unknown_args(overrides, _OVERRIDABLE, "--train-arg")
    values: dict[str, Any] = {}
    for key in overrides:
        if key in ("lr", "weight_decay", "warmup", "max_grad_norm"):
            values[key] = float_arg(overrides, key, getattr(config, key), "--train-arg")
        else:
            values[key] = int_arg(overrides, key, 1, "--train-arg", minimum=1)
    result = replace(config, **values)
    result.validate()
    return result


def ensure_trained_for_cell(
    spec: CellSpec, context: CellContext, personalizer: Personalizer, task: Task, generator: Generator
) -> tuple[Path, StaleWeights | None]:
    """Train a cell's personalizer on the ``train`` split of the cell's data (cached by
    configuration under ``$LAMP_HOME/checkpoints``) and load the weights into it.

    Called by the runner for trainable personalizers when no ``--checkpoint`` is given, with what
    the cell runs in (``context``: the run's context and settings, the task's data source). Data
    without a train split (e.g. the real LaMP-7 dev file) needs an explicit ``lamp train
    --train-users`` run and ``--checkpoint``. Returns the checkpoint, and what made it stale when
    ``--allow-stale`` kept weights trained with other versions of the components.
    """
    matrix = context.matrix
    if spec.split == "train":
        raise lamp_error(
            f"cell {spec.label!r} evaluates on the train split, which its personalizer would be trained on",
            fix="Evaluate on dev, or pass --checkpoint.",
        )
    model = f"{spec.generator}:{spec.model}" if spec.model else spec.generator
    generator_args: Mapping[str, str] = dict(spec.generator_args)
    trainer = generator.trainer()
    train_generator: Generator | None = generator
    train_personalizer: Personalizer | None = personalizer
    if trainer is not None:
        # An inference engine: train on the generator it names (same weights, same prompts) with a
        # personalizer of its own, then load the checkpoint into this cell's personalizer.
        model, generator_args = trainer
        train_generator = train_personalizer = None
    source = context.data_source  # --data TASK=NAME, the task's own source...
    config = TrainConfig(
        task=spec.task,
        personalizer=spec.personalizer,
        personalizer_args=dict(spec.personalizer_args),
        retriever=spec.retriever,
        retriever_args=dict(spec.retriever_args),
        k=spec.k,
        generator=model,
        generator_args=dict(generator_args),
        preset=matrix.preset,
        data=source,
        data_dir=str(matrix.data_dir) if matrix.data_dir and source is None else None,
        scheme=matrix.scheme,
        split="train",
        eval_split=None,
        seed=matrix.seed,
        device=matrix.device,
        prompt_budget=matrix.prompt_budget,
        task_args=dict(spec.task_args),
    )
    config = with_overrides(config, matrix.train_args)
    try:
        checkpoint, stale = _ensure_trained(
            config,
            context=context.run,
            generator=train_generator,
            personalizer=train_personalizer,
            progress=context.progress,
            console=context.console,
            allow_stale=context.allow_stale,
        )
    except FileNotFoundError as exc:  # pragma: no cover - data sources raise LampErrors
        raise lamp_error(
            f"no train split to train {spec.personalizer!r} on: {exc}",
            fix="Run `lamp train ... --train-users 0.67` and pass --checkpoint.",
        ) from exc
    load_checkpoint(personalizer, checkpoint, generator=generator)
    return checkpoint, stale
