"""PPlug: aggregation, ablations, soft-token injection, PPlug + retrieval (tiny real models)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lamp_plugins.pplug import attention_weights, history_text, mean_weights
from tiny_models import greedy_generator

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import GenerationRequest, SoftTokens
from lamp_harness.plugin.registry import host

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def examples(demo_train):
    return demo_train[:6]


def _pplug(context, task, generator, encoder: Path, name: str = "pplug", **args: str):
    personalizer = host().registry.create("personalizer", name, context, encoder=str(encoder), **args)
    personalizer.setup(task, generator, context)
    return personalizer


# -- the aggregator ---------------------------------------------------------------------------------


def test_attention_weights_sum_to_one_and_ignore_padding() -> None:
    torch.manual_seed(0)
    query = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    history = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    weights = attention_weights(query, history, mask)
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert torch.all(weights[0, 3:] == 0)
    # The padded row equals the same row computed without padding, whatever the padding holds.
    alone = attention_weights(query[:1], history[:1, :3], mask[:1, :3])
    garbage = history.clone()
    garbage[0, 3:] = 1e3
    assert torch.allclose(weights[0, :3], alone[0], atol=1e-6)
    assert torch.allclose(attention_weights(query, garbage, mask), weights, atol=1e-6)
    # It is the softmax of the dot products.
    expected = torch.softmax(history[1] @ query[1], dim=0)
    assert torch.allclose(weights[1], expected, atol=1e-6)


def test_selection_keeps_only_the_top_k_items() -> None:
    torch.manual_seed(1)
    query = torch.randn(1, 4)
    history = torch.randn(1, 6, 4)
    mask = torch.ones(1, 6, dtype=torch.bool)
    weights = attention_weights(query, history, mask, top_k=2)
    scores = history[0] @ query[0]
    best = scores.topk(2).indices
    assert int((weights[0] > 0).sum()) == 2
    assert set(torch.nonzero(weights[0]).flatten().tolist()) == set(best.tolist())
    assert torch.allclose(weights[0, best], torch.softmax(scores[best], dim=0), atol=1e-6)


def test_an_empty_history_gets_zero_weights_not_nan() -> None:
    weights = attention_weights(torch.randn(1, 4), torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.bool))
    assert torch.equal(weights, torch.zeros(1, 2))
    assert torch.equal(mean_weights(torch.zeros(1, 2, dtype=torch.bool)), torch.zeros(1, 2))


# -- the personalizer with tiny models --------------------------------------------------------------


def test_mean_aggregation_is_the_plain_mean_of_projected_history(
    context, task, examples, tiny_llama_dir, tiny_encoder_dir
) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir, aggregation="mean")
    assert not hasattr(pplug.module, "input_encoder")  # the ablation has no input encoder to train
    pplug.prepare(task, examples)
    with torch.no_grad():
        vectors, weights = pplug.soft_tokens(task, examples[:2])
        for row, example in enumerate(examples[:2]):
            history = pplug.history.lookup([history_text(task, item) for item in example.profile])
            mean = pplug.module.projector(history).mean(0)
            expected = mean * pplug.official_scale
            assert torch.allclose(vectors[row][1], expected, atol=1e-5)
            n = len(example.profile)
            assert torch.allclose(weights[row, :n], torch.full((n,), 1 / n))


def test_scale_norm_puts_both_soft_tokens_at_the_llm_embedding_norm(
    context, task, examples, tiny_llama_dir, tiny_encoder_dir
) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir, scale="norm")
    request = pplug.personalize(task, examples[0], ())
    (soft,) = request.prefix
    assert isinstance(soft, SoftTokens) and soft.length == 2
    assert soft.vectors.shape[-1] == generator.embedding_width
    assert torch.allclose(soft.vectors.norm(dim=-1), torch.full((2,), generator.embedding_norm), rtol=1e-4)
    # The official scale learns the norms: I and P differ in norm.
    official = _pplug(context, task, generator, tiny_encoder_dir).personalize(task, examples[0], ())
    norms = official.prefix[0].vectors.norm(dim=-1)
    assert not torch.allclose(norms[0], norms[1], rtol=1e-2)
    assert pplug.describe()["scale"] == "norm" and official.prefix[0].length == 2
    without = _pplug(context, task, generator, tiny_encoder_dir, instruction="false")
    assert without.personalize(task, examples[0], ()).prefix[0].length == 1


def test_injection_changes_the_output_and_removing_it_restores_the_plain_path(
    context, task, examples, tiny_llama_dir, tiny_encoder_dir
) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    plain = host().registry.create("personalizer", "none", context)
    plain.setup(task, generator, context)
    example = examples[0]
    request = pplug.personalize(task, example, ())
    # PPlug's text input is the input cut to L - 1 tokens and decoded, as in the official code.
    baseline = plain.personalize(task, replace(example, input=pplug.llm_input(example)), ())
    gold = [example.gold]
    with torch.no_grad():
        injected = float(generator.loss([request], gold))
        stripped = GenerationRequest(
            request.example_id, request.prompt, choices=request.choices, max_new_tokens=request.max_new_tokens
        )
        assert stripped == baseline
        plain_loss = float(generator.loss([baseline], gold))
        assert float(generator.loss([stripped], gold)) == pytest.approx(plain_loss)
    assert injected != pytest.approx(float(generator.loss([baseline], gold)), abs=1e-6)
    assert generator.generate([stripped])[0].text == generator.generate([baseline])[0].text


def test_history_is_embedded_once_and_never_during_training_steps(
    context, task, examples, tiny_llama_dir, tiny_encoder_dir
) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    pplug.prepare(task, examples)
    passes = pplug.history.forward_passes
    assert passes > 0
    loss = pplug.training_loss(task, examples[:3], [()] * 3)
    loss.backward()
    pplug.prepare(task, examples)
    assert pplug.history.forward_passes == passes
    grads = [p for p in pplug.parameters() if p.grad is not None]
    assert grads and len(grads) == len(pplug.parameters())
    llm = generator.model
    assert all(not p.requires_grad for p in llm.parameters())
    # Only the last `history_size` items are used.
    short = _pplug(context, task, generator, tiny_encoder_dir, history_size="2")
    _, weights = short.soft_tokens(task, examples[:1])
    assert weights.shape[1] == 2


def test_pplug_with_retrieval_puts_the_top_item_text_before_the_soft_tokens(
    context, task, examples, tiny_llama_dir, tiny_encoder_dir
) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir, name="pplug+retrieval")
    assert pplug.needs_retriever and pplug.default_retriever == "dense"
    example = examples[0]
    request = pplug.personalize(task, example, example.profile[:2])
    text, soft = request.prefix
    assert text == task.ppep(example.profile[0]) and isinstance(soft, SoftTokens)
    long_item = type(example.profile[0])("x", 0, {"text": "good day " * 400})
    text, _ = pplug.personalize(task, example, (long_item,)).prefix
    used = generator.tokens.count(request.prompt) + generator.tokens.count(text) + 2
    assert used <= generator.max_input_tokens
    loss = pplug.training_loss(task, [example], [example.profile[:1]])
    assert torch.isfinite(loss)


def test_pplug_works_with_an_encoder_decodergreedy_generator(context, task, examples, tiny_t5_dir, tiny_encoder_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    pplug.prepare(task, examples)
    loss = pplug.training_loss(task, examples[:2], [(), ()])
    loss.backward()
    assert torch.isfinite(loss)
    (generation,) = generator.generate([pplug.personalize(task, examples[0], ())])
    assert isinstance(generation.text, str)


def test_pplug_passes_the_personalizer_conformance_checks(context, task, tiny_llama_dir, tiny_encoder_dir) -> None:
    from lamp_harness.testing import check_personalizer

    generator = greedy_generator(context, tiny_llama_dir)
    pplug = host().registry.create("personalizer", "pplug", context, encoder=str(tiny_encoder_dir))
    check_personalizer(pplug, task, generator, context=context)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({"aggregation": "max"}, "aggregation"),
        ({"pooling": "last"}, "pooling"),
        ({"instruction": "maybe"}, "instruction"),
        ({"history_top_k": "-1"}, "history_top_k"),
        ({"aggregation": "mean", "history_top_k": "3"}, "history_top_k"),
        ({"temperature": "2"}, "temperature"),
        ({"scale": "huge"}, "scale"),
    ],
)
def test_bad_arguments_are_one_line_errors(context, args, fragment) -> None:
    with pytest.raises(LampError, match=fragment):
        host().registry.create("personalizer", "pplug", context, **args)
