"""Recompute what each trained row of this experiment saw in training: examples drawn, distinct
training users reached, and the share of one epoch over its training set.

    .venv/bin/python leaderboard/lamp7-finetuned/budget.py DATA_DIR

DATA_DIR is the real LaMP-7 user-based dev set (the folder with its official ``dev_questions.json``
and ``dev_outputs.json``, as ``DATA`` in run.sh). No model is loaded: the script splits the users
exactly as run.sh's ``lamp train --train-users 0.67`` does, builds each row's training set (PPlug's
official augmentation when the row's ``augment`` is not 0) and replays the trainer's schedule,
seeded with ``lamp train``'s default seed 0 as run.sh leaves it, for the row's steps. The rows'
budgets (steps, batch size, gradient accumulation, epochs, ``max_steps``, lr, ``augment``) are those
their cells record under ``training`` in ``runs/*/config.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lamp_plugins.pplug import augmented

from lamp_harness.base.io import lamp_home
from lamp_harness.plugin.contracts import RunContext
from lamp_harness.plugin.registry import host
from lamp_harness.train.training import Schedule, TrainConfig, load_training_data, user_key

HERE = Path(__file__).parent
TRAIN_USERS = 0.67  # run.sh: lamp train --train-users 0.67
SEED = 0  # run.sh trains with lamp train's default --seed


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: budget.py DATA_DIR (the folder with LaMP-7's user-based dev_questions.json and dev_outputs.json)")
    data_dir = sys.argv[1]
    task = host().registry.create("task", "lamp-7")
    context = RunContext(lamp_home=lamp_home(), preset="offline", seed=0, device="cpu")
    print(
        "| cell | lr | augment | training set | steps x batch | examples drawn | share of one epoch "
        "| training users reached |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for path in sorted(HERE.glob("runs/*/config.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        training = config.get("training")
        if not training:
            continue
        split = TrainConfig(
            task="lamp-7", personalizer="none", data_dir=data_dir, split="dev", eval_split=None, train_users=TRAIN_USERS
        )
        train, _ = load_training_data(split, task, context)
        examples = list(train.examples)
        if len(examples) != training["examples"]:
            raise SystemExit(
                f"{path}: records {training['examples']} training examples, the split gives "
                f"{len(examples)}: another data set or split"
            )
        copies = int(training.get("augment", 0))
        if copies:
            examples = augmented(examples, SEED, copies)
        users = {ex.id: user_key(ex) for ex in train.examples}
        schedule = Schedule(
            len(examples),
            training["batch_size"],
            training["grad_accum"],
            training["epochs"],
            training.get("max_steps"),
            SEED,
        )
        drawn = [i for step in range(training["steps"]) for batch in schedule.micro_batches(step)[1] for i in batch]
        reached = {users[examples[i].id.split("#aug", 1)[0]] for i in drawn}
        print(
            f"| {config['label']} | {training['lr']:g} | {copies} | {len(examples):,} "
            f"| {training['steps']} x {training['batch_size'] * training['grad_accum']} | {len(drawn):,} "
            f"| {len(drawn) / len(examples):.0%} | {len(reached):,} of {len(users):,} |"
        )


if __name__ == "__main__":
    main()
