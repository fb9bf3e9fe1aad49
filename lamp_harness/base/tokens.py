"""Token counters: the :class:`~lamp_harness.plugin.contracts.TokenCounter` views that prompt budgets use.

- :class:`HFTokenCounter` wraps any Hugging Face tokenizer (the generator's, usually). It imports
  nothing from transformers itself, so this module stays cheap to import.
- :class:`WhitespaceTokenCounter` counts whitespace-separated words: a tokenizer-free stand-in for
  dry runs and for tests whose expected prompts are written by hand.
- :func:`clean_up_tokenization` is the decode clean-up of transformers 4.27.1 (the official LaMP
  environment), where ``decode`` cleaned up by default: the official prompts went through it.
"""

from __future__ import annotations

from typing import Any


def clean_up_tokenization(text: str) -> str:
    """The clean-up ``decode`` applied by default in transformers 4.27.1
    (``clean_up_tokenization_spaces=True``): ``"level ?"`` -> ``"level?"``, ``"do n't"`` ->
    ``"don't"``. Newer transformers versions made it a per-tokenizer setting, so the harness calls
    it itself and always decodes with ``clean_up_tokenization_spaces=False``."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


class HFTokenCounter:
    """A Hugging Face tokenizer seen as a :class:`~lamp_harness.plugin.contracts.TokenCounter`.

    ``count`` and ``truncate`` exclude special tokens (BOS/EOS/CLS...). ``added_tokens`` is how many
    special tokens the tokenizer adds to one text (T5: 1 for ``</s>``), which the official prompt
    budget counts (see :mod:`lamp_tasks.base`). ``truncate`` always decodes the kept ids, even when
    the text already fits, as the official LaMP prompt code does (the round trip normalises
    whitespace for some tokenizers; byte-level BPE tokenizers give the text back unchanged);
    ``clean_up=True`` applies transformers 4.27.1's decode clean-up on top.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._added: int | None = None

    @property
    def added_tokens(self) -> int:
        """Special tokens the tokenizer adds around one text (``num_special_tokens_to_add``)."""
        if self._added is None:
            self._added = int(self.tokenizer.num_special_tokens_to_add(pair=False))
        return self._added

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` without special tokens."""
        # verbose=False: 10,000-word profile texts are expected here, not a mistake to warn about.
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens)."""
        return len(self.ids(text))

    def official_count(self, text: str) -> int:
        """``len(tokenizer(text)["input_ids"])``: the count the official LaMP code takes (special
        tokens included)."""
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    def official_call(self, text: str, max_length: int) -> tuple[str, int]:
        """``tokenizer(text, max_length=max_length, truncation=True)`` followed by
        ``batch_decode(ids, skip_special_tokens=True)``, as transformers 4.27.1 with a fast
        (Rust) tokenizer runs it in the official LaMP code: the decoded text and the number of
        ids. A negative ``max_length`` raises ``ValueError`` (there: an ``OverflowError``); one
        below the number of added special tokens keeps the whole text (the Rust tokenizer's
        unsigned ``max_length - added`` wraps around); 0 with no special tokens keeps nothing.
        Newer tokenizers versions check these cases differently, so they are decided here."""
        if max_length < 0:
            raise ValueError(f"max_length {max_length} is negative")
        if max_length < self.added_tokens:
            ids = self.tokenizer(text, verbose=False)["input_ids"]
        elif max_length == 0:
            ids = []
        else:
            ids = self.tokenizer(text, max_length=max_length, truncation=True, verbose=False)["input_ids"]
        decoded = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return clean_up_tokenization(decoded), len(ids)

    def truncate(self, text: str, max_tokens: int, *, clean_up: bool = False) -> str:
        """The first ``max_tokens`` tokens of ``text``, decoded without special tokens (and with
        transformers 4.27.1's clean-up when ``clean_up``)."""
        kept = self.ids(text)[: max(0, max_tokens)]
        decoded = self.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return clean_up_tokenization(decoded) if clean_up else decoded


class WhitespaceTokenCounter:
    """Counts whitespace-separated words; truncation keeps the first words joined by one space.

    Text that already fits is returned unchanged (like a tokenizer whose decode round trip is the
    identity), which keeps hand-written expected prompts byte-exact.
    """

    def count(self, text: str) -> int:
        """Number of whitespace-separated words."""
        return len(text.split())

    added_tokens = 0
    """No special tokens: every count is the text's own."""

    def truncate(self, text: str, max_tokens: int, *, clean_up: bool = False) -> str:
        """``text`` unchanged when it fits, else its first ``max_tokens`` words (``clean_up`` is
        accepted for the official budget's sake and changes nothing: words are not sub-words)."""
        words = text.split()
        if len(words) <= max_tokens:
            return text
        return " ".join(words[: max(0, max_tokens)])
