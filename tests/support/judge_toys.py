"""Model-free judges and a recording generator for the judged-metric tests: the ``judges`` fixture
(registered by ``tests/conftest.py``) adds them as an in-process plugin. Used by
``core/test_judge.py`` and ``plugins/test_judge_openai.py``."""

from __future__ import annotations

import hashlib
import json
from types import ModuleType

import pytest

from lamp_harness.base.errors import lamp_error
from lamp_harness.plugin.contracts import Generation, Generator, RunContext
from lamp_harness.plugin.hookspecs import hookimpl
from lamp_harness.plugin.registry import PluginHost, reset_host


class _Words:
    def count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])


def scripted_answer(prompt: str, temperature: str) -> str:
    """Fixed judge answers by the question's digest: valid, json5-only, valid only when sampled,
    never valid, a wrong key, a zero."""
    case = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 6
    if case == 0:
        return '```json\n{"match_score": 2}\n```'
    if case == 1:
        return "```json\n{match_score: 1,}\n```"
    if case == 2:
        return "I think it is fine" if temperature == "0.0" else '{"match_score": 1}'
    if case == 3:
        return "garbage {"
    if case == 4:
        return '{"score": 2}'
    return '{"match_score": 0}'


class ScriptedJudge(Generator):
    """A model-free judge answering :func:`scripted_answer`; counts what it is sent."""

    name = "scripted-judge"
    calls = 0
    fail_after: int | None = None  # raise like a judge server that went down

    def __init__(
        self,
        context: RunContext,
        model: str | None = None,
        *,
        temperature: str = "0.0",
        top_p: str | None = None,
        **args: str,
    ) -> None:
        self.temperature = f"{float(temperature):.1f}"
        self.model = model or "scripted"

    @property
    def tokens(self):
        return _Words()

    def generate(self, requests, *, decode="generate"):
        out = []
        for r in requests:
            if ScriptedJudge.fail_after is not None and ScriptedJudge.calls >= ScriptedJudge.fail_after:
                raise lamp_error("the judge server at 127.0.0.1 is unreachable", where="generator 'scripted-judge'")
            ScriptedJudge.calls += 1
            out.append(Generation(scripted_answer(r.prompt, self.temperature), 10, 5))
        return out

    def describe(self):
        return {"name": self.name, "model": self.model}


class Recording(Generator):
    """A generation model that writes down every prompt, prefix and passage it is given."""

    name = "recording"
    seen: list[str] = []

    def __init__(self, context: RunContext, model: str | None = None, **args: str) -> None:
        pass

    @property
    def tokens(self):
        return _Words()

    @property
    def max_input_tokens(self) -> int:
        return 4096

    def generate(self, requests, *, decode="generate"):
        for r in requests:
            Recording.seen.append("\n".join([r.prompt, *map(str, r.prefix), *r.passages]))
        # An answer that names the question's last word, as JSON the official parser reads.
        return [Generation(json.dumps({"personalized_answer": f"answer {r.prompt.split()[-1]}"}), 5, 5) for r in requests]


@pytest.fixture
def judges():
    plugin = ModuleType("judge_toys")
    plugin.lamp_register = hookimpl(
        lambda registry: (
            registry.add_generator("scripted-judge", ScriptedJudge, "scripted judge"),
            registry.add_generator("recording", Recording, "recording generator"),
            registry.add_generator("label-judge", LabelJudge, "label-decoding judge"),
        )
    )
    reset_host(PluginHost(extra_plugins=[("judge-toys", plugin)]))
    ScriptedJudge.calls, ScriptedJudge.fail_after = 0, None
    Recording.seen = []
    yield
    ScriptedJudge.fail_after = None


class LabelJudge(ScriptedJudge):
    """A judge that writes no JSON when generating but, asked to decode labels, answers one of
    the request's choices (picked by the prompt's digest)."""

    name = "label-judge"
    decodes: list[str] = []

    def generate(self, requests, *, decode="generate"):
        LabelJudge.decodes.append(decode)
        ScriptedJudge.calls += len(requests)
        if decode != "labels":
            return [Generation("I think the answer is good.", 10, 5) for r in requests]
        return [
            Generation(r.choices[int(hashlib.sha256(r.prompt.encode()).hexdigest(), 16) % len(r.choices)], 10, 3)
            for r in requests
        ]
