"""The ``hf`` generator on tiny config-built models (both families) and once on the real SmolLM2."""

from __future__ import annotations

import pytest
import torch
from lamp_plugins.hf_generator import HFGenerator

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import GenerationRequest, RunContext, SoftTokens

PROMPTS = (
    "the tweet is good and happy",
    "write a title for this paper : new music for the world",
    "rate the product",
    "which category is this news article : sports team game day . the answer is",
    "love",
)
LABELS = ("positive", "negative", "neutral")


FAMILIES = ["tiny_t5_dir", "tiny_bart_dir", "tiny_llama_dir", "tiny_llama_plain_dir"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy CI machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(context, folder, **args) -> HFGenerator:
    args.setdefault("max_new_tokens", "6")
    return HFGenerator(context, str(folder), **args)


def requests(**kw) -> list[GenerationRequest]:
    return [GenerationRequest(str(i), p, **kw) for i, p in enumerate(PROMPTS)]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_equals_one_by_one_in_request_order(family, context, request):
    folder = request.getfixturevalue(family)
    batched = make(context, folder, batch_size="2", num_beams="1").generate(requests())
    single = make(context, folder, batch_size="1", num_beams="1")
    alone = [single.generate([r])[0] for r in requests()]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in alone]
    # Lengths differ, so order restoration is exercised: prompt token counts follow the prompts.
    assert len({g.prompt_tokens for g in batched}) > 1


@pytest.mark.parametrize("family", ["tiny_t5_dir", "tiny_llama_dir"])
@pytest.mark.parametrize("beams", [1, 4])
def test_output_equals_a_plain_transformers_generate_call(family, beams, context, request):
    folder = request.getfixturevalue(family)
    gen = make(context, folder, num_beams=str(beams), batch_size="1")
    prompt = PROMPTS[1]
    ours = gen.generate([GenerationRequest("x", prompt)])[0]

    tok, model = gen.tokenizer, gen.model
    if gen._chat is not None:  # the generator renders the chat template; do the same by hand
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    else:
        ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        num_beams=beams,
        do_sample=False,
        eos_token_id=gen._eos_ids,
        pad_token_id=tok.pad_token_id,
    )
    new = out[0, 1:] if gen.is_encoder_decoder else out[0, ids.shape[1] :]
    expected = [t for t in new.tolist() if t not in gen._eos_ids and t != tok.pad_token_id]
    assert ours.text == tok.decode(expected, skip_special_tokens=True).strip()
    assert ours.prompt_tokens == ids.shape[1]


def _naive_label_scores(gen: HFGenerator, prompt: str, labels) -> list[float]:
    """Sum log p(label) from one full forward per label (no cache reuse, no batching)."""
    scores = []
    seq = gen._encode(GenerationRequest("x", prompt)).sequences[0]
    prompt_ids = [t for p in seq for t in p]
    for label in labels:
        target = gen._target_ids(label)
        with torch.no_grad():
            if gen.is_encoder_decoder:
                logits = gen.model(input_ids=torch.tensor([prompt_ids]), labels=torch.tensor([target])).logits[0]
                logp = torch.log_softmax(logits.float(), -1)
                scores.append(sum(float(logp[i, t]) for i, t in enumerate(target)))
            else:
                ids = torch.tensor([prompt_ids + target])
                logp = torch.log_softmax(gen.model(input_ids=ids).logits[0].float(), -1)
                start = len(prompt_ids)
                scores.append(sum(float(logp[start - 1 + i, t]) for i, t in enumerate(target)))
    return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_label_scoring_matches_full_forward_log_likelihoods(family, context, request):
    folder = request.getfixturevalue(family)
    gen = make(context, folder, batch_size="3")
    labels = ("positive", "negative", "neutral", "5", "sci-fi comedy drama")
    reqs = requests(choices=labels)
    scores = gen.label_scores(reqs)
    for req, row in zip(reqs, scores, strict=True):
        assert row == pytest.approx(_naive_label_scores(gen, req.prompt, labels), abs=1e-4)
    if not gen.is_encoder_decoder:  # the fallback for caches that cannot be expanded per label
        with torch.no_grad():
            full = gen._label_scores_causal_full(reqs, [gen._encode(r) for r in reqs])
        assert flat(full) == pytest.approx(flat(scores), abs=1e-4)
    picked = gen.generate(reqs, decode="labels")
    assert [g.text for g in picked] == [labels[max(range(len(r)), key=r.__getitem__)] for r in scores]


def test_label_decoding_generates_for_requests_without_choices(context, tiny_llama_dir):
    gen = make(context, tiny_llama_dir, num_beams="1")
    mixed = [GenerationRequest("a", PROMPTS[0], choices=LABELS), GenerationRequest("b", PROMPTS[1])]
    out = gen.generate(mixed, decode="labels")
    assert out[0].text in LABELS
    assert out[1].text == gen.generate([mixed[1]])[0].text


def flat(rows: list[list[float]]) -> list[float]:
    return [x for row in rows for x in row]


def _soft(gen: HFGenerator, text: str, grad: bool = False) -> SoftTokens:
    ids = torch.tensor(gen._ids(text))
    vectors = gen.model.get_input_embeddings()(ids).detach().clone()
    return SoftTokens(vectors.requires_grad_(grad))


@pytest.mark.parametrize("family", FAMILIES)
def test_soft_tokens_of_own_embeddings_reproduce_the_text_prefix(family, context, request):
    folder = request.getfixturevalue(family)
    gen = make(context, folder, num_beams="2", batch_size="4")
    prefix_text = "good day for music"
    text_reqs = [
        GenerationRequest(str(i), p, prefix=("history :", prefix_text), choices=LABELS) for i, p in enumerate(PROMPTS)
    ]
    soft_reqs = [
        GenerationRequest(str(i), p, prefix=("history :", _soft(gen, prefix_text)), choices=LABELS)
        for i, p in enumerate(PROMPTS)
    ]
    assert soft_reqs[0].has_soft_tokens
    assert [g.text for g in gen.generate(soft_reqs)] == [g.text for g in gen.generate(text_reqs)]
    assert flat(gen.label_scores(soft_reqs)) == pytest.approx(flat(gen.label_scores(text_reqs)), abs=1e-5)
    targets = ["good", "sad day"] * 2 + ["love"]
    assert float(gen.loss(soft_reqs, targets)) == pytest.approx(float(gen.loss(text_reqs, targets)), abs=1e-5)
    # The prefix really is part of the input (it changes what the model sees).
    plain = flat(gen.label_scores(requests(choices=LABELS)))
    assert plain != pytest.approx(flat(gen.label_scores(text_reqs)), abs=1e-5)


@pytest.mark.parametrize("family", ["tiny_t5_dir", "tiny_llama_dir"])
def test_loss_backpropagates_into_soft_tokens_only(family, context, request):
    folder = request.getfixturevalue(family)
    gen = make(context, folder)
    soft = _soft(gen, "happy day", grad=True)
    loss = gen.loss([GenerationRequest("a", PROMPTS[0], prefix=(soft,))], ["good"])
    loss.backward()
    assert soft.vectors.grad is not None and torch.isfinite(soft.vectors.grad).all()
    assert float(soft.vectors.grad.abs().sum()) > 0
    assert all(p.grad is None for p in gen.model.parameters())


def test_decoder_only_loss_counts_target_tokens_only(context, tiny_llama_plain_dir):
    gen = make(context, tiny_llama_plain_dir)
    reqs = [GenerationRequest("a", PROMPTS[0]), GenerationRequest("b", PROMPTS[1])]
    targets = ["good day", "new music"]
    total, count = 0.0, 0
    for req, target in zip(reqs, targets, strict=True):
        scores = _naive_label_scores(gen, req.prompt, [target])
        total += -scores[0]
        count += len(gen._target_ids(target))
    assert float(gen.loss(reqs, targets)) == pytest.approx(total / count, abs=1e-4)


@pytest.mark.parametrize("family", ["tiny_t5_dir", "tiny_bart_dir"])
def test_fid_with_one_passage_equals_the_plain_model(family, context, request):
    folder = request.getfixturevalue(family)
    gen = make(context, folder, num_beams="3")
    fid = [GenerationRequest(str(i), "", passages=(p,), choices=LABELS) for i, p in enumerate(PROMPTS)]
    plain = requests(choices=LABELS)
    assert fid[0].is_fusion
    assert [g.text for g in gen.generate(fid)] == [g.text for g in gen.generate(plain)]
    assert flat(gen.label_scores(fid)) == pytest.approx(flat(gen.label_scores(plain)), abs=1e-5)
    assert float(gen.loss(fid, ["good"] * 5)) == pytest.approx(float(gen.loss(plain, ["good"] * 5)), abs=1e-5)


def test_fid_decoder_attends_to_every_passage(context, tiny_t5_dir):
    gen = make(context, tiny_t5_dir)
    passages = (PROMPTS[0], PROMPTS[1], PROMPTS[3])
    encoded = [
        gen._encode(GenerationRequest("a", "", passages=passages)),
        gen._encode(GenerationRequest("b", "", passages=passages[:1])),
    ]
    fused = gen._fused_encoder(encoded)
    states, mask = fused["encoder_outputs"].last_hidden_state, fused["attention_mask"]
    lengths = [len(gen._ids(p)) + 1 for p in passages]  # + </s>
    assert mask.sum(-1).tolist() == [sum(lengths), lengths[0]]
    with torch.no_grad():
        alone = [gen.model.get_encoder()(input_ids=torch.tensor([gen._ids(p) + [1]])).last_hidden_state[0] for p in passages]
    assert torch.allclose(states[0, : sum(lengths)], torch.cat(alone), atol=1e-5)
    # More passages change the answer's likelihood: the decoder sees them all.
    one, three = gen.label_scores(
        [
            GenerationRequest("a", "", passages=passages[:1], choices=LABELS),
            GenerationRequest("b", "", passages=passages, choices=LABELS),
        ]
    )
    assert one != pytest.approx(three, abs=1e-5)


def test_fid_is_rejected_on_a_decoder_only_model_in_one_line(context, tiny_llama_dir):
    gen = make(context, tiny_llama_dir)
    with pytest.raises(LampError) as err:
        gen.generate([GenerationRequest("a", "", passages=("x", "y"))])
    message = str(err.value)
    assert "fid" in message and str(tiny_llama_dir) in message and "\n" not in message


def test_auto_batch_size_halves_on_out_of_memory(context, tiny_llama_dir, monkeypatch):
    gen = make(context, tiny_llama_dir, num_beams="1")
    expected = [g.text for g in gen.generate(requests())]
    real = gen.model.generate
    sizes = []

    def generate_with_small_memory(**kwargs):
        batch = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).shape[0]
        sizes.append(batch)
        if batch > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(**kwargs)

    monkeypatch.setattr(gen.model, "generate", generate_with_small_memory)
    gen.batch_size = 8
    assert [g.text for g in gen.generate(requests())] == expected
    assert sizes[:3] == [5, 2, 2] and gen.batch_size == 2


def test_a_fixed_batch_size_that_runs_out_of_memory_is_a_one_line_error(context, tiny_llama_dir, monkeypatch):
    gen = make(context, tiny_llama_dir, batch_size="4")

    def oom(**kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gen.model, "generate", oom)
    with pytest.raises(LampError, match="ran out of memory.*batch_size"):
        gen.generate(requests())


def test_chat_template_is_applied_and_can_be_switched_off(context, tiny_llama_dir):
    chat = make(context, tiny_llama_dir)
    raw = make(context, tiny_llama_dir, chat_template="false")
    assert chat.describe()["chat_template"] is True and raw.describe()["chat_template"] is False
    req = [GenerationRequest("a", PROMPTS[0])]
    words = len(PROMPTS[0].split())
    assert chat.generate(req)[0].prompt_tokens == words + 3  # <|user|> ... <|end|> <|assistant|>
    assert raw.generate(req)[0].prompt_tokens == words + 1  # <s> ...


def test_prompt_text_is_truncated_to_max_input_tokens(context, tiny_t5_dir, tiny_llama_dir):
    long = " ".join(["music"] * 50)
    t5 = make(context, tiny_t5_dir, max_input_tokens="10")
    assert t5.max_input_tokens == 10
    assert t5.generate([GenerationRequest("a", long)])[0].prompt_tokens == 10  # 9 words + </s>
    llama = make(context, tiny_llama_dir, max_input_tokens="10")
    assert llama.generate([GenerationRequest("a", long)])[0].prompt_tokens == 10 + 3


def test_the_model_is_loaded_once_per_context(context, tiny_t5_dir):
    first, second = make(context, tiny_t5_dir), make(context, tiny_t5_dir, num_beams="2")
    assert first.model is second.model
    other = RunContext(lamp_home=context.lamp_home, device="cpu")
    assert make(other, tiny_t5_dir).model is not first.model


def test_sampling_is_deterministic_for_a_seed(context, tiny_llama_dir):
    gen = make(context, tiny_llama_dir, num_beams="1", do_sample="true", top_k="0")
    assert gen.generate_args == {"do_sample": True, "top_k": 0}
    assert [g.text for g in gen.generate(requests())] == [g.text for g in gen.generate(requests())]


def test_extra_arguments_go_to_generate_or_from_pretrained(context, tiny_t5_dir):
    gen = make(
        context, tiny_t5_dir, length_penalty="0.5", attn_implementation="eager", **{"generate.no_repeat_ngram_size": "2"}
    )
    assert gen.generate_args == {"length_penalty": 0.5, "no_repeat_ngram_size": 2}
    assert gen.loader_args == {"attn_implementation": "eager"}
    assert gen.model.config._attn_implementation == "eager"
    text = gen.generate([GenerationRequest("a", PROMPTS[1])])[0].text.split()
    bigrams = list(zip(text, text[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))  # no_repeat_ngram_size=2 reached generate


@pytest.mark.parametrize(
    "args, match",
    [
        ({"num_beams": "four"}, "num_beams='four' is not an integer"),
        ({"dtype": "float8"}, "dtype='float8'"),
        ({"device": "tpu9"}, "device='tpu9'"),
        ({"load.no_such_loader_argument": "1"}, "rejected the loader argument"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, match, context, tiny_t5_dir):
    with pytest.raises(LampError, match=match) as err:
        make(context, tiny_t5_dir, **args)
    assert "\n" not in str(err.value)


def test_describe_and_training_support(context, tiny_t5_dir):
    gen = make(context, tiny_t5_dir, dtype="float32")
    info = gen.describe()
    assert info["model"] == str(tiny_t5_dir) and info["family"] == "encoder-decoder"
    # The offline preset decodes greedily on CPU; the papers' presets keep their 4 beams.
    assert (info["dtype"], info["device"], info["num_beams"], info["max_input_tokens"]) == ("float32", "cpu", 1, 256)
    paper = RunContext(lamp_home=context.lamp_home, device="cpu", preset="lamp-paper")
    assert make(paper, tiny_t5_dir).describe()["num_beams"] == 4
    assert make(context, tiny_t5_dir, num_beams="4").describe()["num_beams"] == 4
    assert gen.is_encoder_decoder and gen.embedding_width == 32
    rows = gen.model.get_input_embeddings().weight
    assert gen.embedding_norm == pytest.approx(float(rows.norm(dim=-1).mean()), rel=1e-5)
    assert gen.tokens.count("good day") == 2 and gen.tokens.truncate("good day music", 2) == "good day"
    module = gen.trainable_module()
    assert module is gen.model and all(p.requires_grad for p in module.parameters())
    assert make(context, tiny_t5_dir).model is not module  # fine-tuned weights are not shared


def test_generator_is_registered_as_hf(context, tiny_llama_dir):
    from lamp_harness.plugin.registry import host

    gen = host().registry.create("generator", "hf", context, model=str(tiny_llama_dir))
    assert isinstance(gen, HFGenerator) and not gen.is_encoder_decoder


@pytest.mark.slow
def test_real_smollm2_converts_loads_and_answers(context):
    """The offline preset's generator: converted once into LAMP_MODEL_CACHE, then loaded."""
    gen = HFGenerator(context, None, max_new_tokens="12", num_beams="1")
    info = gen.describe()
    assert info["model"] == "smollm2-135m-instruct" and info["chat_template"] is True
    assert "gguf-sha256:" in info["revision"] and info["substitutes"]
    assert any("substitutes" in e for e in context.events)
    out = gen.generate(
        [
            GenerationRequest("a", "What is the capital of France? Answer in one word."),
            GenerationRequest("b", "Paraphrase: i love sunny days at the beach"),
            GenerationRequest("c", "Is this review positive or negative? 'Awful film.'", choices=("positive", "negative")),
        ],
        decode="labels",
    )
    assert "Paris" in out[0].text
    assert out[1].text and out[1].generated_tokens > 0
    assert out[2].text == "negative"
