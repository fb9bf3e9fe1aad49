"""PPlug as its authors' code runs it: the forward pass against a literal transcription of the
official formulas (``ModelForPer.py``) on tiny T5 and Llama models with the same weights, the
official inputs, augmentation, dropout, and what ``--retriever`` means for ``pplug``."""

from __future__ import annotations

import pytest
import torch
from lamp_plugins.pplug import (
    BGE_QUERY_PREFIX,
    OFFICIAL_SCALE,
    augmented,
    history_text,
    official_query,
)
from tiny_models import greedy_generator

from lamp_harness.contracts import Example, ProfileItem
from lamp_harness.registry import host

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _pplug(context, task, generator, encoder, **args):
    pplug = host().registry.create("personalizer", "pplug", context, encoder=str(encoder), pooling="cls",
                                   **args)
    pplug.setup(task, generator, context)
    return pplug


def _official_forward(pplug, generator, task, example):
    """``PersonalLLM.forward`` (training branch) transcribed: task embedding (CLS, L2), history
    weights by ``bmm`` + masked softmax, ``P = bmm(align_mlp(h)^T, w) * c``,
    ``I = align_mlp_inst(inst) / 7 * c``, their rows written over two placeholder embeddings in
    front of the input, and the LLM's loss on the gold."""
    module = pplug.module
    query = BGE_QUERY_PREFIX + (official_query(task.name, pplug.llm_input(example)) or "")
    emb = pplug.tokenizer([query], max_length=pplug.input_encoder_tokens, truncation=True,
                          return_tensors="pt")
    task_embs = torch.nn.functional.normalize(module.input_encoder(**emb)[0][:, 0], p=2, dim=1)
    his_embs = pplug.history.lookup([history_text(task, item) for item in example.profile]).unsqueeze(0)
    his_mask = torch.zeros(his_embs.shape[:2], dtype=torch.bool)
    his_embs_align = module.projector(his_embs)
    his_weight = torch.bmm(his_embs, task_embs.unsqueeze(-1))
    his_weight = torch.softmax(his_weight.masked_fill(his_mask.unsqueeze(-1), -torch.inf), dim=1)
    c = pplug.official_scale
    profile_embs = torch.bmm(torch.transpose(his_embs_align, 1, 2), his_weight).squeeze(-1) * c
    inst_embs = module.instruction_projector(module.instruction_seed) / 7.0 * c

    tokenizer = generator.tokenizer
    text = tokenizer(pplug.llm_input(example))["input_ids"]
    layer = generator.model.get_input_embeddings()
    placeholder = torch.zeros(2, layer.embedding_dim)
    placeholder[0], placeholder[1] = inst_embs, profile_embs[0]
    if generator.is_encoder_decoder:  # [INST][SPC] + input + </s>
        input_embs = torch.cat([placeholder, layer(torch.tensor(text))]).unsqueeze(0)
        # max_length: the generation budget (official: 128, LaMP-3 10), 6 for this test generator.
        labels = torch.tensor([tokenizer(example.gold, max_length=generator.max_new_tokens,
                                         truncation=True)["input_ids"]])
        return generator.model(inputs_embeds=input_embs, labels=labels).loss
    # Decoder-only: <s> [INST][SPC] input, then the gold and the end token as labels.
    target = (tokenizer(example.gold, add_special_tokens=False)["input_ids"][:generator.max_new_tokens - 1]
              + [tokenizer.eos_token_id])
    bos, body = text[:1], text[1:]
    input_embs = torch.cat([layer(torch.tensor(bos)), placeholder, layer(torch.tensor(body + target))])
    labels = torch.tensor([-100] * (len(text) + 2) + target)
    return generator.model(inputs_embeds=input_embs.unsqueeze(0), labels=labels.unsqueeze(0)).loss


@pytest.mark.parametrize("model", ["tiny_t5_dir", "tiny_llama_plain_dir"])
def test_forward_equals_the_official_formulas_with_the_same_weights(
        model, request, context, task, demo_train, tiny_encoder_dir) -> None:
    generator = greedy_generator(context, request.getfixturevalue(model))
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    example = demo_train[0]
    pplug.prepare(task, [example])
    pplug.module.eval()
    with torch.no_grad():
        ours = pplug.training_loss(task, [example], [()])
        official = _official_forward(pplug, generator, task, example)
        vectors, _ = pplug.soft_tokens(task, [example])
    assert float(ours) == pytest.approx(float(official), rel=1e-5, abs=1e-6)
    # The scale is the constant rescaled to this model, and the norms are learned (not fixed).
    assert pplug.official_scale == pytest.approx(generator.embedding_norm)
    assert not torch.allclose(vectors[0].norm(dim=-1), torch.full((2,), generator.embedding_norm))


def test_the_instruction_seed_starts_uniform_in_0_1(context, task, tiny_llama_dir, tiny_encoder_dir) -> None:
    pplug = _pplug(context, task, greedy_generator(context, tiny_llama_dir), tiny_encoder_dir)
    seed = pplug.module.instruction_seed.detach()
    assert float(seed.min()) >= 0.0 and float(seed.max()) < 1.0 and float(seed.std()) > 0.1
    assert OFFICIAL_SCALE == 539.9738


def test_official_inputs_per_task() -> None:
    lamp1 = ('For an author who has written the paper with the title "Deep nets", which reference is '
             'related? [1]: "A" [2]: "B"')
    assert official_query("lamp-1", lamp1) == "Deep nets"  # the paper's title, not the references
    assert official_query("lamp-7", "Paraphrase ... before or after it: so tired") == "so tired"
    assert official_query("lamp-6", "anything") is None
    lamp4 = host().registry.create("task", "lamp-4")
    item = ProfileItem("0", 0, {"title": "Headline", "text": "Body text"})
    assert history_text(lamp4, item) == "Body text Headline"  # text + " " + title
    assert BGE_QUERY_PREFIX.endswith("passages:")  # no space before the query, as written officially


def test_the_llm_input_is_cut_to_l_minus_one_tokens(context, task, tiny_llama_dir, tiny_encoder_dir) -> None:
    generator = greedy_generator(context, tiny_llama_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    long = Example("x", "paraphrase the tweet : " + "good day " * 400, (), "good")
    cut = pplug.llm_input(long)
    assert generator.tokens.count(cut) == generator.max_input_tokens - 1
    assert pplug.input_encoder_tokens == generator.max_input_tokens + 20


def test_augmentation_adds_ten_copies_for_histories_longer_than_two() -> None:
    def example(i: int, n: int) -> Example:
        return Example(str(i), "in", tuple(ProfileItem(str(j), j, {"text": f"t{j}"}) for j in range(n)), "g")

    data = [example(0, 2), example(1, 3), example(2, 40)]
    out = augmented(data, seed=0)
    assert len(out) == 1 + 11 + 11
    copies = [ex for ex in out if ex.id.startswith("2#aug")]
    assert len(copies) == 10
    for copy in copies:  # drops int(n * U(0, 0.5)) + 1 items: between 1 and 20 of 40
        assert 20 <= len(copy.profile) <= 39
        assert {item.id for item in copy.profile} <= {item.id for item in data[2].profile}
    assert out[-1] is data[2] and augmented(data, seed=0) == out
    assert len(augmented(data, seed=0, copies=0)) == 3


def test_the_frozen_llm_is_in_train_mode_while_training(context, task, tiny_t5_dir, tiny_encoder_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    pplug.set_training(True)
    assert generator.model.training and pplug.module.training
    assert not any(p.requires_grad for p in generator.model.parameters())
    pplug.set_training(False)
    assert not generator.model.training


def test_encoder_decoder_targets_keep_their_end_token(context, tiny_t5_dir) -> None:
    generator = greedy_generator(context, tiny_t5_dir)  # max_new_tokens 6
    ids = generator._target_ids("good day good day good day good day")
    end = generator.tokenizer.eos_token_id
    assert len(ids) == 6 and ids[-1] == end
    assert generator._target_ids("good day") == generator.tokenizer("good day")["input_ids"]


def test_official_epochs_per_task(context, tiny_llama_dir, tiny_encoder_dir) -> None:
    pplug = host().registry.create("personalizer", "pplug", context)
    assert pplug.official_epochs(host().registry.create("task", "lamp-3")) == 1
    assert pplug.official_epochs(host().registry.create("task", "lamp-7")) == 2


# -- the mission command: `--personalizer pplug --retriever contriever` ---------------------------


def _runner(tmp_path, retriever: str, personalizer: str = "pplug"):
    from lamp_harness.runner import Matrix, Runner

    matrix = Matrix(tasks=("lamp-7",), personalizers=(personalizer,), retrievers=(retriever,),
                    data="demo", limit=2, device="cpu")
    return Runner(matrix, tmp_path / "runs", progress=False)


def test_pplug_with_contriever_uses_the_contriever_role_encoder(tmp_path) -> None:
    from lamp_harness.models import resolve_model

    runner = _runner(tmp_path, "contriever")
    (draft,) = runner.plan()
    spec = runner.cell(draft)
    assert (spec.personalizer, spec.retriever, spec.k) == ("pplug", "contriever", 0)  # no items
    assert "encoder=contriever" in spec.label
    retriever = runner.registry.create("retriever", "contriever", runner.context)
    pplug = runner.registry.create("personalizer", "pplug", runner.context)
    pplug.use_encoder(retriever.text_encoder())
    assert pplug.encoder_spec == resolve_model("contriever", runner.context).path
    assert pplug.pooling_arg == "mean"  # Contriever's pooling, not BGE's CLS


@pytest.mark.parametrize("retriever", ["bm25", "recency", "random"])
def test_pplug_with_a_retriever_without_encoder_suggests_pplug_plus_retrieval(tmp_path, retriever) -> None:
    from lamp_harness.errors import LampError

    with pytest.raises(LampError, match=r"has none .*--personalizer pplug\+retrieval"):
        _runner(tmp_path, retriever).plan()


def test_pplug_plus_retrieval_keeps_its_items_and_defaults_to_the_bge_retriever(tmp_path) -> None:
    from lamp_harness.runner import Matrix, Runner

    runner = Runner(Matrix(tasks=("lamp-7",), personalizers=("pplug+retrieval",), data="demo", limit=2),
                    tmp_path / "runs", progress=False)
    (draft,) = runner.plan()
    assert (draft.retriever, dict(draft.retriever_args), draft.k) == ("dense", {"model": "bge"}, 1)
    assert _runner(tmp_path, "bm25", "pplug+retrieval").plan()[0].k == 1


def test_in_a_matrix_with_item_methods_pplug_keeps_its_own_encoder_beside_bm25(tmp_path, capsys) -> None:
    """``--personalizer none,ipa,pplug --retriever bm25``: bm25 is there for IPA; the pplug cell
    runs as plain PPlug (its own encoder), with a warning, instead of refusing the whole matrix."""
    from lamp_harness.runner import Matrix, Runner

    matrix = Matrix(tasks=("lamp-7",), personalizers=("none", "ipa", "pplug"), retrievers=("bm25",),
                    data="demo", limit=2, device="cpu")
    drafts = Runner(matrix, tmp_path / "runs", progress=False).plan()
    assert sorted((d.personalizer, d.retriever) for d in drafts) == [
        ("ipa", "bm25"), ("none", None), ("pplug", None)]
    assert "own encoder" in capsys.readouterr().err
    alone = Runner(Matrix(tasks=("lamp-7",), personalizers=("pplug",), data="demo", limit=2),
                   tmp_path / "runs", progress=False).plan()
    assert [d for d in drafts if d.personalizer == "pplug"] == alone  # the same cell as plain pplug
