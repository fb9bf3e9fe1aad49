"""Token counters: the :class:`~lamp_harness.contracts.TokenCounter` views that prompt budgets use.

- :class:`HFTokenCounter` wraps any Hugging Face tokenizer (the generator's, usually). It imports
  nothing from transformers itself, so this module stays cheap to import.
- :class:`WhitespaceTokenCounter` counts whitespace-separated words: a tokenizer-free stand-in for
  dry runs and for tests whose expected prompts are written by hand.
"""

from __future__ import annotations

from typing import Any


class HFTokenCounter:
    """A Hugging Face tokenizer seen as a :class:`~lamp_harness.contracts.TokenCounter`.

    Counts exclude special tokens (BOS/EOS/CLS...): the prompt budget is about the text, and the
    generator adds whatever its model needs. ``truncate`` always decodes the kept ids, even when
    the text already fits, as the official LaMP prompt code does (the round trip normalises
    whitespace for some tokenizers; byte-level BPE tokenizers give the text back unchanged).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` without special tokens."""
        # verbose=False: 10,000-word profile texts are expected here, not a mistake to warn about.
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens)."""
        return len(self.ids(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` tokens of ``text``, decoded without special tokens."""
        kept = self.ids(text)[:max(0, max_tokens)]
        return self.tokenizer.decode(kept, skip_special_tokens=True)


class WhitespaceTokenCounter:
    """Counts whitespace-separated words; truncation keeps the first words joined by one space.

    Text that already fits is returned unchanged (like a tokenizer whose decode round trip is the
    identity), which keeps hand-written expected prompts byte-exact.
    """

    def count(self, text: str) -> int:
        """Number of whitespace-separated words."""
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` unchanged when it fits, else its first ``max_tokens`` words."""
        words = text.split()
        if len(words) <= max_tokens:
            return text
        return " ".join(words[:max(0, max_tokens)])
