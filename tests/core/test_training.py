"""`lamp train`: the loop lowers the loss, checkpoints round-trip, interrupted runs resume to the
same weights, plain fine-tuning of prompt-only methods, the user split (tiny real models)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lamp_cli import pplug_train
from tiny_models import build_tiny_llama

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import Dataset, Example, ProfileItem, RunContext
from lamp_harness.plugin.registry import host
from lamp_harness.train import training
from lamp_harness.train.training import (
    Schedule,
    TrainConfig,
    ensure_trained,
    latest_checkpoint,
    load_checkpoint,
    split_by_users,
    train,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GEN_ARGS = {"num_beams": "1", "max_new_tokens": "4", "device": "cpu"}


@pytest.fixture
def config(tiny_llama_dir, tiny_encoder_dir) -> TrainConfig:
    return TrainConfig(
        task="lamp-7",
        personalizer="pplug",
        # augment=0: these tests count steps; augmentation has its own test below.
        personalizer_args={"encoder": str(tiny_encoder_dir), "augment": "0"},
        generator=str(tiny_llama_dir),
        generator_args=GEN_ARGS,
        data="demo",
        eval_split=None,
        limit=12,
        epochs=2,
        batch_size=4,
        lr=3e-3,
        warmup=0.1,
        seed=3,
        save_every=2,
        device="cpu",
    )


def _context(config: TrainConfig, lamp_home: Path) -> RunContext:
    return RunContext(lamp_home=lamp_home, preset=config.preset, seed=config.seed, device="cpu")


def _fresh(config: TrainConfig, lamp_home: Path):
    """A new, untrained personalizer + generator built like the training run builds them."""
    context = _context(config, lamp_home)
    registry = host().registry
    task = registry.create("task", config.task)
    generator = registry.create("generator", "hf", context, model=config.generator, **config.generator_args)
    personalizer = registry.create("personalizer", config.personalizer, context, **config.personalizer_args)
    personalizer.setup(task, generator, context)
    data, _ = training.load_training_data(config, task, context)
    personalizer.prepare(task, data.examples)
    return task, generator, personalizer, data.examples


def _mean_loss(trainable, task, examples) -> float:
    with torch.no_grad():
        return float(trainable.training_loss(task, examples, [()] * len(examples)))


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(latest_checkpoint(directory) / "weights.safetensors"))


# -- the schedule and the user split ------------------------------------------------------------------


def test_schedule_visits_every_example_once_per_epoch_deterministically() -> None:
    schedule = Schedule(n_examples=10, batch_size=3, grad_accum=2, epochs=2, max_steps=None, seed=1)
    assert schedule.micro_per_epoch == 4 and schedule.steps_per_epoch == 2 and schedule.total_steps == 4
    for epoch in range(2):
        seen = [i for step in range(epoch * 2, epoch * 2 + 2) for batch in schedule.micro_batches(step)[1] for i in batch]
        assert sorted(seen) == list(range(10))
    assert schedule.order(0) != schedule.order(1)
    assert schedule.order(0) == Schedule(10, 3, 2, 2, None, 1).order(0)
    assert Schedule(10, 3, 2, 2, 3, 1).total_steps == 3


def _user(name: str, n_questions: int) -> list[Example]:
    profile = tuple(ProfileItem(str(i), i, {"text": f"{name} wrote {i}"}) for i in range(3))
    return [Example(f"{name}-{q}", f"input {name} {q}", profile, "gold") for q in range(n_questions)]


def test_user_split_is_disjoint_deterministic_and_two_to_one() -> None:
    examples = tuple(ex for u in range(30) for ex in _user(f"user{u}", 1 + u % 3))
    dataset = Dataset("lamp-7", "dev", examples, "test", {"dev_questions.json": "abc"})
    train_part, eval_part = split_by_users(dataset, 0.67)
    train_users = {ex.id.split("-")[0] for ex in train_part.examples}
    eval_users = {ex.id.split("-")[0] for ex in eval_part.examples}
    assert not train_users & eval_users and len(train_users) == 20 and len(eval_users) == 10
    assert len(train_part.examples) + len(eval_part.examples) == len(examples)
    assert train_part.fingerprint != eval_part.fingerprint != dataset.fingerprint
    shuffled = Dataset("lamp-7", "dev", tuple(reversed(examples)), "test", {"dev_questions.json": "abc"})
    again, _ = split_by_users(shuffled, 0.67)
    assert {ex.id for ex in again.examples} == {ex.id for ex in train_part.examples}


def test_user_split_of_the_real_lamp7_dev_set(shared_data: Path, lamp_home: Path) -> None:
    from lamp_harness.inputs.data import resolve_dataset

    task = host().registry.create("task", "lamp-7")
    dataset = resolve_dataset(
        task, data=None, data_dir=shared_data / "LaMP-7" / "user", split="dev", context=RunContext(lamp_home=lamp_home)
    )
    train_part, eval_part = split_by_users(dataset, 0.67)
    keys = {training.user_key(ex) for ex in train_part.examples}
    assert not keys & {training.user_key(ex) for ex in eval_part.examples}
    assert 0.6 < len(train_part.examples) / len(dataset.examples) < 0.74
    # The held-out users written as official files load back as the same examples.
    folder = training.write_split_files(eval_part, lamp_home / "heldout", "dev", task.official_name)
    reloaded = resolve_dataset(task, data=None, data_dir=folder, split="dev", context=RunContext(lamp_home=lamp_home))
    assert reloaded.examples == eval_part.examples


# -- training ------------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_reloaded_weights_predict_identically(config, tmp_path, lamp_home) -> None:
    task, _, untrained, examples = _fresh(config, lamp_home)
    before = _mean_loss(untrained, task, examples)
    result = train(config, tmp_path / "run", progress=False)
    assert result.steps == 6 and result.examples == 24 and result.history_forward_passes == 0
    assert (tmp_path / "run" / "latest.json").is_file()
    state = json.loads((latest_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["finished"] and state["step"] == 6
    assert latest_checkpoint(tmp_path / "run").stat().st_mode & 0o777 == 0o755  # readable by a team sharing the folder

    task, generator, reloaded, examples = _fresh(config, lamp_home)
    loaded = load_checkpoint(reloaded, tmp_path / "run")
    assert loaded["train_config"]["personalizer"] == "pplug"
    after = _mean_loss(reloaded, task, examples)
    assert after < before

    # A second reload predicts exactly what the first one does.
    task, generator2, again, _ = _fresh(config, lamp_home)
    load_checkpoint(again, result.checkpoint)
    first = reloaded.personalize(task, examples[0], ())
    second = again.personalize(task, examples[0], ())
    assert torch.equal(first.prefix[0].vectors, second.prefix[0].vectors)
    short = [replace(first, max_new_tokens=4)]
    again_short = [replace(second, max_new_tokens=4)]
    assert generator.generate(short)[0].text == generator2.generate(again_short)[0].text


def test_an_interrupted_run_resumes_to_the_same_weights(config, tmp_path) -> None:
    whole = train(config, tmp_path / "whole", progress=False)

    class Stop(Exception):
        pass

    def interrupt(step: int, loss: float) -> None:
        if step == 3:  # after the step-2 checkpoint; step 3 is lost and redone
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "cut", progress=False, on_step=interrupt)
    assert json.loads((tmp_path / "cut" / "latest.json").read_text())["step"] == 2
    resumed = train(config, tmp_path / "cut", progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == whole.steps
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == whole.losses


def test_a_folder_of_another_configuration_is_not_resumed(config, tmp_path) -> None:
    train(replace(config, max_steps=2), tmp_path / "run", progress=False)
    with pytest.raises(LampError, match="different configuration"):
        train(replace(config, lr=1e-3, max_steps=2), tmp_path / "run", progress=False)


def test_prompt_only_methods_train_by_fine_tuning_the_generator(config, tmp_path, lamp_home) -> None:
    plain = replace(config, personalizer="none", personalizer_args={}, max_steps=2, lr=1e-2)
    result = train(plain, tmp_path / "ft", progress=False)
    weights = _weights(tmp_path / "ft")
    assert "model.embed_tokens.weight" in weights and "lm_head.weight" in weights
    task, generator, personalizer, examples = _fresh(plain, lamp_home)
    original = generator.model.get_input_embeddings().weight.detach().clone()
    with pytest.raises(LampError, match="generator"):
        load_checkpoint(personalizer, result.checkpoint)  # `none` alone has no generator to load into
    load_checkpoint(personalizer, result.checkpoint, generator=generator)
    tuned = generator.model.get_input_embeddings().weight
    assert not torch.equal(original, tuned)
    assert torch.equal(tuned.detach(), weights["model.embed_tokens.weight"])


def test_a_fine_tuned_generator_with_tied_embeddings_round_trips(config, tmp_path, lamp_home) -> None:
    tied = build_tiny_llama(tmp_path / "tied", tied=True)
    plain = replace(config, personalizer="none", personalizer_args={}, generator=str(tied), max_steps=2, lr=1e-2)
    result = train(plain, tmp_path / "ft", progress=False)
    weights = _weights(tmp_path / "ft")
    assert "lm_head.weight" not in weights  # saved once, as the input embeddings
    task, generator, personalizer, examples = _fresh(plain, lamp_home)
    load_checkpoint(personalizer, result.checkpoint, generator=generator)
    model = generator.model
    assert torch.equal(model.get_input_embeddings().weight.detach(), weights["model.embed_tokens.weight"])
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    tuned = _mean_loss(training.as_trainable(personalizer, generator), task, examples)
    fresh = _fresh(plain, lamp_home)
    assert tuned < _mean_loss(training.as_trainable(fresh[2], fresh[1]), fresh[0], fresh[3])


def test_a_checkpoint_of_another_method_is_refused(config, tmp_path, lamp_home) -> None:
    result = train(replace(config, max_steps=1), tmp_path / "run", progress=False)
    _, _, _, _ = _fresh(config, lamp_home)
    context = _context(config, lamp_home)
    other = host().registry.create("personalizer", "pplug+retrieval", context, **config.personalizer_args)
    with pytest.raises(LampError, match="trained for personalizer 'pplug'"):
        load_checkpoint(other, result.checkpoint)
    with pytest.raises(LampError, match="no checkpoint"):
        load_checkpoint(other, tmp_path)


def test_ensure_trained_caches_by_configuration(config, monkeypatch, lamp_home) -> None:
    quick = replace(config, max_steps=1)
    first = ensure_trained(quick, progress=False)
    assert first.is_relative_to(lamp_home / "checkpoints")

    def no_training(*args, **kwargs):
        raise AssertionError("ensure_trained retrained a finished configuration")

    monkeypatch.setattr(training, "train", no_training)
    assert ensure_trained(quick, progress=False) == first
    with pytest.raises(AssertionError, match="retrained"):
        ensure_trained(replace(quick, seed=4), progress=False)


def test_lamp_train_command_trains_evaluates_and_reports(tiny_llama_dir, tiny_encoder_dir, tmp_path, capsys) -> None:
    from lamp_harness.cli import main

    out = tmp_path / "cli"
    main(
        [
            *pplug_train(tiny_llama_dir, tiny_encoder_dir),
            "--personalizer-arg",
            "aggregation=mean",
            "--limit",
            "4",
            "--eval-limit",
            "2",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and "eval rouge" in printed.lower()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 2 and {m["name"].lower() for m in metrics["metrics"]} >= {"rouge-1", "rouge-l"}
    assert len((out / "eval" / "predictions.jsonl").read_text().splitlines()) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["train_data"]["checksums"] and config["personalizer"]["aggregation"] == "mean"


def test_bad_training_options_are_one_line_errors(config) -> None:
    with pytest.raises(LampError, match="train-users"):
        replace(config, train_users=1.5).validate()
    with pytest.raises(LampError, match="lr"):
        replace(config, lr=0).validate()


def test_a_fine_tuned_prompt_only_method_gets_its_own_column(config, tiny_llama_dir, tmp_path) -> None:
    from lamp_harness.cli import main
    from lamp_harness.report.leaderboard import collect_cells

    plain = replace(config, personalizer="none", personalizer_args={}, max_steps=1)
    result = train(plain, tmp_path / "ft", progress=False)
    run = [
        "run",
        "--task",
        "lamp-7",
        "--personalizer",
        "none",
        "--data",
        "demo",
        "--limit",
        "2",
        "--generator",
        str(tiny_llama_dir),
        "--generator-arg",
        "max_new_tokens=4",
        "--num-beams",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
    ]
    main(run)
    main([*run, "--checkpoint", str(result.directory)])
    labels = {json.loads(p.read_text())["label"] for p in (tmp_path / "runs").glob("*/config.json")}
    # The budget asked for is applied, hence in the label.
    assert labels == {
        f"none / {tiny_llama_dir} / max-new-tokens=4",
        f"none (fine-tuned) / {tiny_llama_dir} / max-new-tokens=4",
    }
    assert len(collect_cells([tmp_path / "runs"]).cells) == 2  # neither replaces the other
    # the fine-tuned cell records how its weights were trained, and the leaderboard says it
    (tuned,) = [
        json.loads(p.read_text())
        for p in (tmp_path / "runs").glob("*/config.json")
        if json.loads(p.read_text())["checkpoint"]
    ]
    assert tuned["training"]["steps"] == 1 and tuned["training"]["batch_size"] == plain.batch_size
    assert tuned["training"]["lr"] == plain.lr
    from lamp_harness.report.leaderboard import leaderboard, render

    board = render(leaderboard([tmp_path / "runs"]))
    # named by its column's label, the applied budget included
    assert (
        f"- **Training** (none (fine-tuned) / {tiny_llama_dir} / max-new-tokens=4): 1 step × batch {plain.batch_size}"
    ) in board


def test_pplug_trains_on_the_official_augmented_set_with_hf_schedule_and_no_decay_groups(config, tmp_path):
    from lamp_harness.train.training import _lr_lambda, decay_groups

    args = {**config.personalizer_args, "augment": "10"}
    augmented = replace(config, personalizer_args=args, limit=4, epochs=None, max_steps=None, batch_size=8)
    result = train(augmented, tmp_path / "aug", progress=False)
    # 4 demo examples with > 2 history items -> 4 x 11 = 44 examples, 2 official epochs (lamp-7).
    assert result.examples == 2 * 44
    # HF's linear warmup: the first step at rate 0, then s / warm; decay to 0.
    factor = _lr_lambda(10, 0.2)
    assert [factor(s) for s in (0, 1, 2, 6, 10)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    task, _, pplug, _ = _fresh(config, tmp_path)
    groups = decay_groups(pplug, list(pplug.parameters()), 1e-4)
    exempt = {id(p) for p in groups[1]["params"]}
    names = {name for name, p in pplug.module.named_parameters() if id(p) in exempt}
    assert names and all(name.endswith("bias") or "LayerNorm" in name for name in names)
    assert id(pplug.module.instruction_seed) not in exempt and groups[1]["weight_decay"] == 0.0
