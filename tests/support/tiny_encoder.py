"""A tiny, randomly initialised BERT encoder folder (for PPlug's history/input encoders in tests).

It uses the word-level tokenizer of :mod:`tiny_models` (``<s> text </s>``: the first token plays
BERT's ``[CLS]``), so it builds in well under a second and is loaded through the real code::

    from tiny_encoder import tiny_encoder_dir  # noqa: F401
"""

from __future__ import annotations

from pathlib import Path

import pytest


def build_tiny_encoder(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 16) saved with its tokenizer to ``path``."""
    import torch
    from tiny_models import build_tokenizer, save_model, vocabulary
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    vocab = vocabulary()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
        pad_token_id=vocab["<pad>"],
    )
    return save_model(BertModel(config), build_tokenizer("bart"), path)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A saved 2-layer BERT encoder folder."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder") / "model")
