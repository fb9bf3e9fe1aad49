"""FiD: passages, k=1 equals the plain model, encoder-decoder only, trainable (tiny real models)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny_models import greedy_generator

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import GenerationRequest
from lamp_harness.plugin.registry import host

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def examples(demo_train):
    return demo_train[:4]


def _fid(context, task, generator, **args: str):
    fid = host().registry.create("personalizer", "fid", context, **args)
    fid.setup(task, generator, context)
    return fid


def test_each_passage_is_the_input_with_one_retrieved_item(context, task, examples, tiny_t5_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)
    fid = _fid(context, task, generator)
    ipa = host().registry.create("personalizer", "ipa", context)
    ipa.setup(task, generator, context)
    example = examples[0]
    request = fid.personalize(task, example, example.profile[:3])
    assert request.is_fusion and len(request.passages) == 3
    for passage, item in zip(request.passages, example.profile[:3], strict=True):
        assert passage == ipa.personalize(task, example, (item,)).prompt
        assert example.input in passage
    assert fid.personalize(task, example, ()).passages == (example.input,)


def test_fid_with_one_passage_equals_the_plain_model(context, task, examples, tiny_t5_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)
    fid = _fid(context, task, generator)
    # A short generation budget keeps the random tiny model fast; equality is what matters.
    requests = [replace(fid.personalize(task, ex, ex.profile[:1]), max_new_tokens=6) for ex in examples]
    plain = [GenerationRequest(r.example_id, r.passages[0], max_new_tokens=6) for r in requests]
    assert [g.text for g in generator.generate(requests)] == [g.text for g in generator.generate(plain)]
    golds = [ex.gold for ex in examples]
    with torch.no_grad():
        assert float(generator.loss(requests, golds)) == pytest.approx(float(generator.loss(plain, golds)), rel=1e-5)


def test_fid_attends_to_every_passage(context, task, examples, tiny_t5_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)
    fid = _fid(context, task, generator)
    example = examples[0]
    one = fid.personalize(task, example, example.profile[:1])
    three = fid.personalize(task, example, example.profile[:3])
    with torch.no_grad():
        assert float(generator.loss([one], [example.gold])) != pytest.approx(
            float(generator.loss([three], [example.gold])), abs=1e-6
        )


def test_fid_refuses_a_decoder_onlygreedy_generator(context, task, tiny_llama_dir) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    fid = host().registry.create("personalizer", "fid", context)
    assert fid.requires_encoder_decoder
    with pytest.raises(LampError, match="encoder-decoder"):
        fid.setup(task, generator, context)


def test_fid_trains_the_generator_weights(context, task, examples, tiny_t5_dir) -> None:
    from lamp_harness.train.training import as_trainable

    generator = greedy_generator(context, tiny_t5_dir)
    fid = _fid(context, task, generator, train="decoder")
    trainable = as_trainable(fid)
    assert trainable is fid
    params = trainable.parameters()
    decoder = {id(p) for p in generator.model.get_decoder().parameters()}
    assert params and all(id(p) in decoder or p is generator.model.lm_head.weight for p in params)
    assert not any(p.requires_grad for p in generator.model.get_encoder().parameters() if id(p) not in decoder)
    before = {k: v.clone() for k, v in trainable.state_dict().items()}
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    loss = trainable.training_loss(task, examples[:2], [ex.profile[:2] for ex in examples[:2]])
    loss.backward()
    optimizer.step()
    after = trainable.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_bad_train_argument_is_a_one_line_error(context) -> None:
    with pytest.raises(LampError, match="train"):
        host().registry.create("personalizer", "fid", context, train="encoder-only")
