"""Trained weights follow versions: a checkpoint trained before its cell is keyed by the versions of
every component that shaped it; after a plugin's version bump it is trained again, or kept with
``--allow-stale`` and marked in the cell's label, exactly like cells (a toy trainable plugin)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lamp_cli import demo_run
from toy_sources import WORDS

TRAINABLE = (
    """
import torch

from lamp_harness.plugin.contracts import Generation, GenerationRequest, Generator, Personalizer
from lamp_harness.plugin.hookspecs import hookimpl

"""
    + WORDS
    + '''

class Echo(Generator):
    name = "bias-echo"

    def __init__(self, context, **args):
        self.batch_size = 4

    @property
    def tokens(self):
        return Words()

    def generate(self, requests, *, decode="generate"):
        return [Generation(r.prompt.split()[0], 1, 1) for r in requests]


class WordBias(Personalizer):
    """One learned weight per word position; the prompt starts with their sum."""

    name = "word-bias"
    needs_retriever = False
    accepts_retriever = False
    trainable = True

    def __init__(self, context=None, **args):
        self.weight = torch.nn.Parameter(torch.zeros(4))

    def setup(self, task, generator, context):
        self.generator = generator

    def personalize(self, task, example, retrieved):
        prompt = task.prompt(example, retrieved, self.generator.tokens, self.generator.max_input_tokens)
        return GenerationRequest(example.id, f"{float(self.weight.detach().sum()):.4f} {prompt}",
                                 max_new_tokens=task.max_new_tokens)

    def parameters(self):
        return [self.weight]

    def training_loss(self, task, examples, retrieved):
        lengths = torch.tensor([float(len(e.input.split())) for e in examples])
        return ((self.weight.sum() - lengths) ** 2).mean()

    def state_dict(self):
        return {"weight": self.weight.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.weight.copy_(state["weight"])


@hookimpl
def lamp_register(registry):
    registry.add_generator("bias-echo", Echo, "echoes the first prompt word")
    registry.add_personalizer("word-bias", WordBias, "a toy trainable personalizer")
'''
)


def _bias_run(out: Path, *extra: str) -> tuple[str, ...]:
    """``lamp run`` of the toy ``word-bias`` personalizer with ``bias-echo`` on lamp-7's demo data."""
    return demo_run("--personalizer", "word-bias", *extra, generator="bias-echo", out=out)


def _trainings(lamp_home: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((lamp_home / "checkpoints").glob("*/config.json"))
    }


def _cell(out: Path, limit: int) -> dict:
    (config,) = [
        c for c in (json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/config.json")) if c["limit"] == limit
    ]
    return config


@pytest.mark.slow
def test_a_version_bump_retrains_the_weights_or_keeps_them_marked_with_allow_stale(site, cli, tmp_path, lamp_home):
    site.add("lamp-wordbias", "1.0", wordbias=TRAINABLE)
    out = tmp_path / "out"
    args = _bias_run(out, "--train-arg", "max_steps=2", "--train-arg", "limit=4", "--train-arg", "batch_size=2")
    code, stdout, err = cli(*args, "--limit", "2")
    assert code == 0, stdout + err
    ((first_name, first),) = _trainings(lamp_home).items()
    assert first["component_versions"]["lamp-wordbias"] == "1.0"
    assert "lamp-harness" in first["component_versions"] and first["base_identity"]
    cell = _cell(out, 2)
    assert Path(cell["checkpoint"]).parent.parent.name == first_name and cell["stale_weights"] is None

    # Same versions: the cached weights are reused, nothing is trained again.
    code, stdout, err = cli(*args, "--limit", "3")
    assert code == 0, stdout + err
    assert list(_trainings(lamp_home)) == [first_name] and "training again" not in err

    site.set_version("lamp-wordbias", "1.0", "1.1")
    # --allow-stale keeps the old weights for a new cell, says so, and labels the cell.
    code, stdout, err = cli(*args, "--limit", "4", "--allow-stale")
    assert code == 0, stdout + err
    assert list(_trainings(lamp_home)) == [first_name]
    message = " ".join(err.split())
    assert "trained with other versions (lamp-wordbias 1.0 -> 1.1), because of --allow-stale" in message
    stale = _cell(out, 4)
    assert stale["label"].endswith(" (stale weights)")
    assert stale["stale_weights"]["changed"] == "lamp-wordbias 1.0 -> 1.1"
    assert Path(stale["checkpoint"]).parent.parent.name == first_name

    # Without it the weights are trained again under the new versions, and the cell kept with stale
    # weights is recomputed with them.
    code, stdout, err = cli(*args, "--limit", "4")
    assert code == 0, stdout + err
    message = " ".join(err.split())
    assert "were trained with other versions (lamp-wordbias 1.0 -> 1.1); training again" in message
    assert "recomputing it with weights trained by these versions" in message
    trainings = _trainings(lamp_home)
    assert len(trainings) == 2
    (second_name,) = set(trainings) - {first_name}
    second = trainings[second_name]
    assert second["component_versions"]["lamp-wordbias"] == "1.1"
    assert second["base_identity"] == first["base_identity"] and second["identity"] != first["identity"]
    fresh = _cell(out, 4)
    assert fresh["cell_id"] == stale["cell_id"]
    assert not fresh["label"].endswith("(stale weights)") and fresh["stale_weights"] is None
    assert Path(fresh["checkpoint"]).parent.parent.name == second_name

    # And then nothing more: the cell and the weights follow the installed versions.
    code, stdout, err = cli(*args, "--limit", "4")
    assert code == 0 and "training again" not in err and "recomputing" not in err


def test_a_checkpoint_from_lamp_train_of_other_versions_is_refused_or_kept_marked(site, cli, tmp_path, lamp_home):
    site.add("lamp-wordbias", "1.0", wordbias=TRAINABLE)
    trained = tmp_path / "trained"
    code, stdout, err = cli(
        "train",
        "--task",
        "lamp-7",
        "--data",
        "demo",
        "--personalizer",
        "word-bias",
        "--generator",
        "bias-echo",
        "--max-steps",
        "2",
        "--limit",
        "4",
        "--batch-size",
        "2",
        "--eval-split",
        "none",
        "--out",
        str(trained),
    )
    assert code == 0, stdout + err
    out = tmp_path / "out"
    args = _bias_run(out, "--checkpoint", str(trained))
    code, stdout, err = cli(*args, "--limit", "2")
    assert code == 0, stdout + err
    assert _cell(out, 2)["stale_weights"] is None

    site.set_version("lamp-wordbias", "1.0", "1.1")
    # A new cell (another --limit): the old one would be kept whole by --allow-stale.
    args = (*args, "--limit", "3")
    code, stdout, err = cli(*args)
    assert code == 2 and "Traceback" not in err
    message = " ".join(err.split())
    assert "the checkpoint was trained with other versions (lamp-wordbias 1.0 -> 1.1)" in message
    assert "pass --allow-stale" in message
    code, stdout, err = cli(*args, "--allow-stale")
    assert code == 0, stdout + err
    kept = _cell(out, 3)
    assert kept["component_versions"]["lamp-wordbias"] == "1.1"
    assert kept["label"].endswith(" (stale weights)")
    assert kept["stale_weights"]["changed"] == "lamp-wordbias 1.0 -> 1.1"
