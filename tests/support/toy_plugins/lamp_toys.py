"""Toy components for runner tests, installed as a fake distribution (``lamp-toys``) through the
``lamp_harness`` entry-point group, so that subprocess tests exercise real plugin discovery.

``toy-echo`` is a deterministic, model-free generator whose output depends on the batch it ran in
(like real padded batches can): a resumed run only reproduces an uninterrupted one when batches
are re-formed identically. ``LAMP_TOY_DELAY`` slows each batch (seconds) so a test can kill a run
mid-way; ``LAMP_TOY_FAIL_RANK=R`` makes it raise on the rank ``R`` of a data-parallel job (its
``RANK``), so a test can watch one rank fail. ``toy-encdec`` claims to be an encoder-decoder so FiD cells can be planned.
``toy-words`` answers from its prompt's words (the first ``words`` of them; a label chosen by a
digest of the prompt), so different personalizers give different, partly right answers.
"""

from __future__ import annotations

import hashlib
import os
import time

from lamp_harness.plugin.contracts import Generation, Generator
from lamp_harness.plugin.hookspecs import hookimpl


class _Words:
    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[: max(max_tokens, 0)])


class ToyEcho(Generator):
    """Answers with the last words of the prompt plus a digest of its whole batch."""

    name = "toy-echo"

    def __init__(self, context, model=None, batch_size=3, **args):
        self.batch_size = int(batch_size)
        self.model = model or "toy"
        self.delay = float(os.environ.get("LAMP_TOY_DELAY", "0"))

    @property
    def tokens(self):
        return _Words()

    def generate(self, requests, *, decode="generate"):
        time.sleep(self.delay)
        if os.environ.get("LAMP_TOY_FAIL_RANK", "x") == os.environ.get("RANK"):
            raise ValueError("toy-echo failed on purpose")
        digest = hashlib.sha1("|".join(r.example_id for r in requests).encode()).hexdigest()[:6]
        out = []
        for r in requests:
            if decode == "labels" and r.choices:
                text = r.choices[len(r.prompt) % len(r.choices)]
            else:
                text = " ".join(r.prompt.split()[-3:]) + f" #{digest}"
            out.append(Generation(text, len(r.prompt.split()), 3))
        return out

    def describe(self):
        return {"name": self.name, "model": self.model, "batch_size": self.batch_size}


class ToyEncDec(ToyEcho):
    name = "toy-encdec"

    @property
    def is_encoder_decoder(self) -> bool:
        return True


class ToyWords(ToyEcho):
    name = "toy-words"

    def __init__(self, context, model=None, **args):
        self.words = int(args.pop("words", 12))
        super().__init__(context, model, **args)

    def generate(self, requests, *, decode="generate"):
        out = []
        for r in requests:
            digest = int(hashlib.sha1(r.prompt.encode()).hexdigest()[:8], 16)
            text = r.choices[digest % len(r.choices)] if r.choices else " ".join(r.prompt.split()[: self.words])
            out.append(Generation(text, len(r.prompt.split()), 3))
        return out


@hookimpl
def lamp_register(registry):
    registry.add_generator("toy-echo", ToyEcho, "Deterministic toy generator for tests.")
    registry.add_generator("toy-words", ToyWords, "Toy generator that answers with its prompt's first words.")
    registry.add_generator("toy-encdec", ToyEncDec, "Toy generator that claims to be an encoder-decoder.")
