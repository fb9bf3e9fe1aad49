"""LaMP-QA: personalized long-form question answering, judged per rubric aspect by an LLM.

Three tasks, one per category of the benchmark (``lamp-qa-arts``, ``lamp-qa-lifestyle``,
``lamp-qa-society``). A record of the official data holds ``id``, ``question``, ``narrative`` (the
asker's own details), ``rubric_aspects`` (``aspect``, ``reason``, ``evidence``) and ``profile`` (the
asker's past questions, items with ``id`` and ``text``). ``narrative`` and ``rubric_aspects`` are
for evaluation only: they are kept in the example's *gold* (which no personalizer reads), never in
its input or profile, so they cannot reach a generator's prompt.

Faithful to the official code (``baselines.py``, ``data/formetters.py``, ``evaluation/evaluator.py``
of the LaMP-QA repository):

- prompts: without retrieved items the no-personalization prompt (a fixed system text and the
  question); with retrieved items the RAG prompt (its system text, then the items' texts joined by
  a blank line, best first, and the question). The harness hands a generator one prompt; the
  system text comes first and a blank line separates it from the user text, which is what the
  official code itself sends to a chat template without a system role;
- answers: the generator is asked for a JSON object with ``personalized_answer``; that field is
  the answer (parsed as the official ``str_to_json`` does: ``json``, then ``json5``). The official
  baseline re-generates an unparsable answer up to 20 times and then answers ``""``; the harness
  generates once and, when the text is not such an object, scores the raw text (a documented
  deviation; the cell's predictions keep both);
- the judged metric ``aspect-score``: one judge chat per (question, answer, aspect) with the
  official system and user texts; the judge's answer is parsed as the official ``parse_json``
  (code fences removed, ``json.loads(strict=False)``, then ``json5``) and must hold
  ``match_score``; the question's score is the sum over its aspects divided by 2 x the number of
  aspects; the metric is the mean over questions. Retries follow the official rule (see
  :mod:`lamp_harness.run.judge`): greedy first, then +0.1 temperature per retry with top-p 0.95, at
  most 100 retries, then 0. The offline preset's stand-in judge (SmolLM2-135M) instead picks the
  most likely of the three official answers (:data:`JUDGE_CHOICES`, ``--judge-arg
  decode=labels``), a documented deviation: it cannot write the JSON itself;
- decoding of the official baselines: nucleus sampling at temperature 0.1, top-p 0.95, up to
  4,096 new tokens (``--generator-arg temperature=0.1 --generator-arg top_p=0.95``); RAG over the
  profile ranked by ``facebook/contriever-msmarco`` with 10 items (``--retriever contriever
  --retriever-arg model=facebook/contriever-msmarco --k 10``).

Data: ``--data lamp-qa`` (the default) reads the Hugging Face dataset ``alireza7/LaMP-QA`` through
``huggingface_hub`` into ``$LAMP_HOME/data/lamp-qa`` (offline once cached); ``--data-dir DIR``
reads what the official ``utils/download_datasets.py`` writes (``{Category}_{split}.json``);
``--data demo`` is synthetic (see :mod:`lamp_tasks.lamp_qa_demo`). The harness's ``dev`` split is
the benchmark's ``validation`` split (``--split validation`` is accepted as its name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lamp_harness import Example, JudgedMetric, JudgePrompt, MetricResult, ProfileItem, Task, TokenCounter

PROMPT_VERSION = "lamp-qa-1"
METRIC = "aspect-score"

CATEGORIES = {
    "lamp-qa-arts": "Art_and_Entertainment",
    "lamp-qa-lifestyle": "Lifestyle_and_Personal_Development",
    "lamp-qa-society": "Society_and_Culture",
}
"""Task name -> the official configuration (and file-name prefix) of its category."""

# -- the official generation prompts (data/formetters.py), verbatim ------------------------------

NO_RAG_SYSTEM = (
    "You are a helpful assistant designed to generate personalized responses to user questions.  "
    "Your output should be a valid json object in ```json ``` block that contains the following "
    "fields:\n   - personalized_answer: contains the personalized answer to the user's current "
    "question."
)

RAG_SYSTEM = """You are a helpful assistant designed to generate personalized responses to user questions. Your task is to answer a user's question from a post in a personalized way by considering this user's past post questions and detailed descriptions of these questions.
# Your input:
    - The user's current question from a post.
    - The user's past post questions and detailed descriptions of these questions.
# Your task: Answer the user's current question in a personalized way by considering this user's past post questions and detailed descriptions of these questions, to learn about the user's preferences.
# Your output: You should generate personalized answer to the user's current question by considering this user's past post questions and detailed descriptions of these questions to learn about user's preferences. Your output should be a valid json object in ```json ``` block that contains the following fields:
    - personalized_answer: contains the personalized answer to the user's current question considering the this user's past post questions and detailed descriptions of these questions to learn about user's preferences.
"""  # noqa: E501

RAG_USER = """
# Past post questions and detailed descriptions of these questions:
{profile}
# Current post question:
{question}
"""

# -- the official judge prompts (evaluation/evaluator.py), verbatim -------------------------------

JUDGE_SYSTEM = """You are a fair and insightful judge with exceptional reasoning and analytical abilities. Your task is to evaluate a user's question, a generated response to that question, and an aspect that is important to the user. Based on this information, identify if the aspect is addressed in the generated response. Provide a clear and accurate assessment.

# your input:
    - question: the question asked by the user.
    - details: the detailed explanation of the question from the user.
    - response: a generated response to the user's question
    - aspect: the aspect that is important to the user, consisting of the following fields:
        - aspect: the title for the aspect.
        - reason: the reason that this aspect is important for the user.
        - evidence: the evidence from the user detailed explanation that the aspect extracted from.

# your output: Your output should be only a valid json object in ```json ``` block without any explanations that contains the following fields:
    - match_score: A score between 0 to 2 that indicates how well the generated response addresses this aspect, where: 0 means the response does not cover this aspect, 1 means the response somewhat covers this aspect, and 2 means the response covers this aspect very well.
"""  # noqa: E501

JUDGE_USER = """
question: {question}
details: {details}
response: {response}
aspect: {aspects}

Your output should be only a valid json object in ```json ``` block without any explanations.
"""


JUDGE_CHOICES = tuple(f'```json\n{{"match_score": {n}}}\n```' for n in range(3))
"""The answers the official prompt allows, in the ```json``` block it asks for: what label
decoding (``--judge-arg decode=labels``) chooses from."""


def judge_json(text: str) -> Any:
    """The official ``parse_json``: code fences removed, ``json`` (not strict), then ``json5``;
    ``ValueError`` when neither parses."""
    import json5

    text = text.replace("```json", "").replace("```", "").strip()
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    try:
        return json5.loads(text)
    except Exception:  # json5 raises ValueError, but also other errors on odd input
        raise ValueError("Invalid json object") from None


def answer_json(text: str) -> Any:
    """The official ``str_to_json`` (how the baselines read a generated answer)."""
    import json5

    if text.startswith("json"):
        text = text[len("json") :]
    if text.endswith("json"):
        text = text[: -len("json")]
    text = text.strip().replace("\n", "").replace("```json", "").replace("```", "")
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    try:
        return json5.loads(text)
    except Exception:
        raise ValueError("Invalid JSON") from None


def aspect_text(aspect: Mapping[str, Any]) -> str:
    """One rubric aspect as the official evaluator writes it into the judge's prompt."""
    return f"-aspect: {aspect['aspect']}\n    -reason: {aspect['reason']}\n    -evidence: {aspect['evidence']}"


def gold_record(narrative: str, aspects: Sequence[Mapping[str, Any]]) -> str:
    """The gold of a LaMP-QA example: the evaluation-only fields, as one JSON string."""
    return json.dumps({"narrative": narrative, "rubric_aspects": [dict(a) for a in aspects]}, ensure_ascii=False)


def gold_problem(output: str) -> str | None:
    """Why ``output`` is not a valid LaMP-QA gold, or ``None``."""
    try:
        data = json.loads(output)
    except ValueError:
        return "is not the JSON of narrative and rubric_aspects"
    if not isinstance(data, dict) or not isinstance(data.get("narrative"), str):
        return "has no 'narrative' string"
    aspects = data.get("rubric_aspects")
    if not isinstance(aspects, list) or not aspects:
        return "has no non-empty 'rubric_aspects' list"
    for j, aspect in enumerate(aspects):
        if not isinstance(aspect, dict):
            return f"rubric_aspects[{j}] is not an object"
        for key in ("aspect", "reason", "evidence"):
            if not isinstance(aspect.get(key), str):
                return f"rubric_aspects[{j}] has no '{key}' string"
    return None


class LampQA(Task):
    """A LaMP-QA category (subclasses set ``name``, ``official_name`` and ``category``)."""

    benchmark: ClassVar[str | None] = "LaMP-QA"

    kind: ClassVar[str] = "generation"
    profile_fields: ClassVar[tuple[str, ...]] = ("text",)
    max_new_tokens: ClassVar[int] = 4096
    """The official baselines' ``--max_tokens``."""
    data_source: ClassVar[str | None] = "lamp-qa"
    category: ClassVar[str] = ""
    judged_metrics: ClassVar[tuple[JudgedMetric, ...]] = (
        JudgedMetric(
            METRIC,
            PROMPT_VERSION,
            max_new_tokens=4096,
            max_retries=100,
            top_p=0.95,
            # The paper's judge; serve it with vLLM (`--judge vllm:Qwen/Qwen2.5-32B-Instruct`) or
            # any OpenAI-compatible server (`--judge openai:... --judge-arg base_url=...`).
            default_judge="vllm:Qwen/Qwen2.5-32B-Instruct",
            max_input_tokens=32000,
            # The offline preset's stand-in: the packaged SmolLM2 (135M). It cannot write the
            # official JSON, so it picks the best of JUDGE_CHOICES by log-likelihood (a documented
            # deviation); its scores only show that the pipeline works; see docs/judges.md.
            preset_judges={
                "offline": (
                    None,
                    {"max_input_tokens": "2048", "max_new_tokens": "32", "parse_retries": "2", "decode": "labels"},
                )
            },
            judge_choices=JUDGE_CHOICES,
        ),
    )

    # -- retrieval and prompts --------------------------------------------------------------------
    def query(self, example: Example) -> str:
        return example.input

    def document(self, item: ProfileItem) -> str:
        return item.get("text")

    def ppep(self, item: ProfileItem, free_text: str | None = None) -> str:
        return item.get("text") if free_text is None else free_text

    def prompt(
        self, example: Example, items: Sequence[ProfileItem], tokens: TokenCounter, max_tokens: int = 256, **_: Any
    ) -> str:
        """The official prompt. The official code puts every retrieved item in; when the whole
        prompt is over ``max_tokens`` the lowest-ranked items are left out (whole) until it fits,
        and when not even the best one fits, its text is cut to what is left, so the question is
        never cut. A budget too small for the RAG prompt's own text gets the no-personalization
        prompt (cut to the budget when even that is too long). Raise ``--max-input-tokens`` (the
        official code has no budget) to keep all items."""
        bare = f"{NO_RAG_SYSTEM}\n\n{example.input}"
        if not items or tokens.count(RAG_SYSTEM) >= max_tokens:
            # no room for the RAG prompt at all: the bare prompt, cut to the budget if need be
            return bare if tokens.count(bare) <= max_tokens else tokens.truncate(bare, max_tokens)

        def build(texts: Sequence[str]) -> str:
            profile = "\n\n".join(texts)
            return f"{RAG_SYSTEM}\n\n{RAG_USER.format(profile=profile, question=example.input)}"

        kept = list(items)
        while kept:
            text = build([self.ppep(item) for item in kept])
            if tokens.count(text) <= max_tokens:
                return text
            if len(kept) == 1:
                left = max_tokens - tokens.count(build([""]))
                best = tokens.truncate(self.ppep(kept[0]), left) if left > 0 else ""
                text = build([self.ppep(kept[0], free_text=best)] if best else [])
                return text if tokens.count(text) <= max_tokens else tokens.truncate(text, max_tokens)
            kept.pop()
        return build([])

    def parse(self, text: str) -> str:
        """``personalized_answer`` of the generated JSON object, else the stripped text."""
        try:
            data = answer_json(text)
        except ValueError:
            return text.strip()
        if isinstance(data, dict) and "personalized_answer" in data:
            return str(data["personalized_answer"])
        return text.strip()

    # -- scoring ----------------------------------------------------------------------------------
    def validate_gold(self, output: str) -> str | None:
        return gold_problem(output)

    def score(self, predictions: Mapping[str, str], golds: Mapping[str, str], *, seed: int = 0) -> list[MetricResult]:
        return []  # the task's one metric is judged (judged_metrics)

    def judge_prompts(self, metric: str, example: Example, output: str) -> Sequence[JudgePrompt]:
        gold = json.loads(example.gold or "{}")
        return [
            JudgePrompt(
                str(j),
                JUDGE_SYSTEM,
                JUDGE_USER.format(
                    question=example.input, details=gold["narrative"], response=output, aspects=aspect_text(aspect)
                ),
                label=str(aspect["aspect"]),
            )
            for j, aspect in enumerate(gold["rubric_aspects"])
        ]

    def judge_parse(self, metric: str, text: str) -> float:
        """``match_score`` of the judge's JSON answer (``ValueError``: asked again). Any number is
        kept as the official evaluator keeps it."""
        data = judge_json(text)
        if not isinstance(data, dict) or "match_score" not in data:
            raise ValueError("no match_score")
        score = data["match_score"]
        if not isinstance(score, int | float):
            raise ValueError(f"match_score {score!r} is not a number")
        return float(score)

    def judge_combine(self, metric: str, example: Example, scores: Sequence[float]) -> float:
        return sum(scores) / (len(scores) * 2)

    demo_notes: ClassVar[tuple[str, ...]] = (
        "The task asks for the official 4,096 new tokens; a small model on a CPU can take that long "
        "on one answer, so cap the demo's answers with --task-arg max_new_tokens=256 (recorded in "
        "config.json as the cell's budget; see docs/judges.md).",
    )
    """What ``lamp data`` says about ``--data demo`` for these tasks, beside the demo's own notes."""

    def demo_data(self, split: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Synthetic questions and golds in the harness's files (``--data demo``)."""
        from lamp_tasks.lamp_qa_demo import generate

        return generate(self, split)


class LampQAArts(LampQA):
    name = "lamp-qa-arts"
    official_name = "LaMP-QA_Art_and_Entertainment"
    category = CATEGORIES[name]


class LampQALifestyle(LampQA):
    name = "lamp-qa-lifestyle"
    official_name = "LaMP-QA_Lifestyle_and_Personal_Development"
    category = CATEGORIES[name]


class LampQASociety(LampQA):
    name = "lamp-qa-society"
    official_name = "LaMP-QA_Society_and_Culture"
    category = CATEGORIES[name]
