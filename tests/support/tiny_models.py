"""Tiny, randomly initialised transformers models for tests (seconds to build, offline).

Each builder writes a real model folder (config, safetensors weights, a fast tokenizer) that is
loaded through the project's real loading code. The tokenizer is a word-level one over a small
fixed vocabulary (LaMP-like words, the label sets, digits), so the models stay tiny.

Fixtures (session-scoped). A test module enables them with::

    pytest_plugins = ("tiny_models",)

(or the root conftest may list ``"tiny_models"`` in its own ``pytest_plugins``).

- ``tiny_t5_dir``: a 2-layer T5 (encoder-decoder), tokenizer appends ``</s>``.
- ``tiny_bart_dir``: a 2-layer BART (encoder-decoder, scaled embeddings), ``<s> ... </s>``.
- ``tiny_llama_dir``: a 2-layer Llama (decoder-only) whose tokenizer has a chat template.
- ``tiny_llama_plain_dir``: the same Llama without a chat template (BOS + text).

For a tiny model over another vocabulary or of another kind: ``tiny_t5_config`` (the T5 above)
and ``save_model`` (a model and its tokenizer into one folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (
    "the a an and or of to in for on with is are was be by this that it as at from i you he she we "
    "they my your his her our their me him them not no yes do does did have has had will would can "
    "could should write written person following given patterns paraphrase tweet title paper "
    "abstract review score text movie tag news category article which reference more likely "
    "rate product answer only using user profile history today good bad great love hate day night "
    "happy sad new old big small first last time people world life work home music game team "
    "positive negative neutral comedy drama action horror sci-fi fantasy romance thriller classic "
    "business sports politics science technology 0 1 2 3 4 5 6 7 8 9 [1] [2] . , : ? ! \" ' ( )"
).split()
SPECIALS = ("<pad>", "</s>", "<unk>", "<s>", "<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|user|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens first (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, ``<s>`` = 3)."""
    vocab: dict[str, int] = {}
    for token in (*SPECIALS, *WORDS):
        vocab.setdefault(token, len(vocab))
    return vocab


def build_tokenizer(frame: str, chat: bool = False):
    """A word-level fast tokenizer. ``frame``: ``"t5"`` (text ``</s>``), ``"bart"``
    (``<s>`` text ``</s>``) or ``"llama"`` (``<s>`` text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    single = {"t5": "$A </s>", "bart": "<s> $A </s>", "llama": "<s> $A"}[frame]
    core.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<|end|>" if chat else "</s>",
        unk_token="<unk>",
        bos_token="<s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_model(model, tokenizer, path: Path) -> Path:
    """Save ``model`` and its ``tokenizer`` to the folder ``path`` (made if missing); ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def build_tiny_t5(path: Path, seed: int = 0) -> Path:
    """A 2-layer T5 (d_model 32) saved with its tokenizer to ``path``."""
    import torch
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    return save_model(T5ForConditionalGeneration(tiny_t5_config(vocabulary())), build_tokenizer("t5"), path)


def tiny_t5_config(vocab: dict[str, int]):
    """The configuration of a 2-layer T5 (d_model 32) over ``vocab``, which holds ``<pad>`` (also
    the decoder's start token) and ``</s>``."""
    from transformers import T5Config

    return T5Config(
        vocab_size=len(vocab),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["</s>"],
        decoder_start_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )


def build_tiny_bart(path: Path, seed: int = 0) -> Path:
    """A 2-layer BART (d_model 32, scaled embeddings) saved with its tokenizer to ``path``."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    vocab = vocabulary()
    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=512,
        dropout=0.0,
        attention_dropout=0.0,
        scale_embedding=True,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        decoder_start_token_id=vocab["</s>"],
        forced_eos_token_id=None,
    )
    return save_model(BartForConditionalGeneration(config), build_tokenizer("bart"), path)


def build_tiny_llama(path: Path, chat: bool = True, seed: int = 0, tied: bool = False) -> Path:
    """A 2-layer Llama (hidden 32) saved with its tokenizer (chat template when ``chat``; output
    head tied to the input embeddings when ``tied``, as in SmolLM2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = vocabulary()
    torch.manual_seed(seed)
    eos = vocab["<|end|>"] if chat else vocab["</s>"]
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=eos,
        tie_word_embeddings=tied,
    )
    return save_model(LlamaForCausalLM(config), build_tokenizer("llama", chat=chat), path)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """A saved 2-layer T5 model folder."""
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5") / "model")


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory) -> Path:
    """A saved 2-layer BART model folder."""
    return build_tiny_bart(tmp_path_factory.mktemp("tiny-bart") / "model")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A saved 2-layer Llama model folder whose tokenizer has a chat template."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model", chat=True)


@pytest.fixture(scope="session")
def tiny_llama_plain_dir(tmp_path_factory) -> Path:
    """A saved 2-layer Llama model folder without a chat template."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-plain") / "model", chat=False)


def greedy_generator(context, model_dir):
    """The real ``hf`` generator on a tiny model folder: greedy, 6 new tokens, CPU."""
    from lamp_harness.plugin.registry import host

    return host().registry.create(
        "generator", "hf", context, model=str(model_dir), num_beams="1", max_new_tokens="6", device="cpu"
    )
