"""Judged metrics (LLM-as-judge) and the LaMP-QA task: the official scoring rule, caching,
resuming, ``lamp score`` and what reaches a generator's prompt."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from judge_toys import LabelJudge, Recording, ScriptedJudge, scripted_answer

from lamp_harness.base.errors import LampError
from lamp_harness.plugin.contracts import RunContext

# -- the official evaluator, transcribed plainly (evaluation/evaluator.py of LaMP-QA) -----------


class _Params:
    def __init__(self, temperature, top_p, max_tokens, logprobs):
        self.temperature = temperature


class _Out:
    def __init__(self, text):
        self.outputs = [type("O", (), {"text": text})()]


class _OfficialLLM:
    """The vLLM ``LLM`` the official evaluator calls, answering :func:`scripted_answer`."""

    class _Tok:
        def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=True):
            return f"{conversation[0]['content']}\n\n{conversation[1]['content']}"

    def get_tokenizer(self):
        return self._Tok()

    def generate(self, prompts, params):
        return [_Out(scripted_answer(p, f"{params.temperature:.1f}")) for p in prompts]


def official_evaluator(queries, responses, details, aspects, llm, max_retries=100):
    import json5
    from lamp_tasks.lamp_qa import JUDGE_SYSTEM, JUDGE_USER

    def parse_json(json_str):
        json_str = json_str.replace("```json", "").replace("```", "").strip()
        try:
            return json.loads(json_str, strict=False)
        except Exception:
            pass
        try:
            return json5.loads(json_str)
        except Exception:
            raise ValueError("Invalid json object") from None

    tokenizer = llm.get_tokenizer()
    ids, prompts = [], []
    for i, (query, response, detail, aspect) in enumerate(zip(queries, responses, details, aspects, strict=True)):
        for j, asp in enumerate(aspect):
            a = f"-aspect: {asp['aspect']}\n    -reason: {asp['reason']}\n    -evidence: {asp['evidence']}"
            conversation = [
                {"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_USER.format(question=query, details=detail, response=response, aspects=a)},
            ]
            prompts.append(tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True))
            ids.append({"q_id": i, "a_id": j})
    temperature, retries, outputs_dict = 0.0, 0, {}
    while prompts:
        retries += 1
        outputs = llm.generate(prompts, _Params(temperature=temperature, top_p=0.95, max_tokens=4096, logprobs=1))
        wrongs = []
        for id_, prompt, output in zip(ids, prompts, outputs, strict=True):
            outputs_dict.setdefault(id_["q_id"], {})
            try:
                obj = parse_json(output.outputs[0].text)
                obj["match_score"]
                outputs_dict[id_["q_id"]][id_["a_id"]] = obj
            except Exception:
                if retries > max_retries:
                    outputs_dict[id_["q_id"]][id_["a_id"]] = {"match_score": 0}
                    continue
                wrongs.append((id_, prompt))
        prompts = [p for _, p in wrongs]
        ids = [i for i, _ in wrongs]
        if temperature < 1.0:
            temperature += 0.1
    scores = []
    for i, aspect in enumerate(aspects):
        scores.append(sum(outputs_dict[i][j]["match_score"] for j in range(len(aspect))) / (len(aspect) * 2))
    return {"score": sum(scores) / len(scores), "per_question_scores": scores}


def _demo(task_name="lamp-qa-arts", split="dev"):
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.registry import host

    task = host().registry.create("task", task_name)
    dataset = resolve_dataset(task, data="demo", data_dir=None, split=split, context=RunContext(lamp_home=lamp_home()))
    return task, dataset.examples


@pytest.mark.parametrize("max_retries", [0, 1, 3, 12])
def test_the_judge_scores_exactly_as_the_official_evaluator(judges, max_retries):
    from lamp_harness.plugin.registry import host
    from lamp_harness.run.judge import JudgeChoice, judge_examples, resolve_judge

    task, examples = _demo()
    outputs = {ex.id: f"Try {ex.input.split()[-1]} with friends." for ex in examples}
    metric = task.judged_metrics[0]
    registry = host().registry
    identity = resolve_judge(registry, metric, JudgeChoice("scripted-judge", {"parse_retries": str(max_retries)}), "offline")
    judged = judge_examples(
        task, metric, identity, examples, outputs, registry=registry, context=RunContext(lamp_home=Path(".")), progress=False
    )
    golds = [json.loads(ex.gold) for ex in examples]
    official = official_evaluator(
        [ex.input for ex in examples],
        [outputs[ex.id] for ex in examples],
        [g["narrative"] for g in golds],
        [g["rubric_aspects"] for g in golds],
        _OfficialLLM(),
        max_retries=max_retries,
    )
    ours = judged.scores.rows[:, 0].tolist()
    assert ours == pytest.approx(official["per_question_scores"], abs=0)
    assert float(judged.scores.rows.mean()) == pytest.approx(official["score"], abs=1e-12)
    answers = [q for r in judged.rationale.values() for q in r["questions"]]
    assert any(q.get("parsed") is False for q in answers)  # the fixed answers include unparsable ones
    assert any(q["tries"] > 1 and q.get("parsed") is not False for q in answers) == (max_retries > 0)


def test_temperatures_step_as_the_official_loop():
    from lamp_harness.run.judge import temperatures

    steps, t = [], 0.0
    for _ in range(15):
        steps.append(f"{t:.1f}")
        if t < 1.0:
            t += 0.1
    assert temperatures(14) == steps and steps[10:] == ["1.0", "1.1", "1.1", "1.1", "1.1"]


def test_judge_answers_are_parsed_as_the_official_parse_json(judges):
    task, _ = _demo()
    assert task.judge_parse("aspect-score", '```json\n{"match_score": 2}\n```') == 2.0
    assert task.judge_parse("aspect-score", "{match_score: 1, // json5\n}") == 1.0
    assert task.judge_parse("aspect-score", '{"match_score": 1, "note": "a\ttab"}') == 1.0  # strict=False
    for bad in ("no json here", '{"score": 2}', "[1, 2]", '{"match_score": "two"}'):
        with pytest.raises(ValueError):
            task.judge_parse("aspect-score", bad)


def _run(tmp_path, out="runs", **overrides):
    from lamp_harness.run.runner import Matrix, run_matrix

    settings = dict(
        tasks=("lamp-qa-arts",),
        personalizers=("none", "ipa"),
        retrievers=("bm25",),
        ks=(3,),
        generators=("recording",),
        data="demo",
        limit=6,
        judge="scripted-judge",
        judge_args={"parse_retries": "2"},
    )
    settings.update(overrides)
    return run_matrix(Matrix(**settings), tmp_path / out, progress=False)


def test_narrative_and_rubric_never_reach_a_generator_prompt(judges, tmp_path):
    task, examples = _demo()
    results = _run(tmp_path, limit=None)
    assert len(results) == 2 and Recording.seen
    secrets = set()
    for ex in examples:
        gold = json.loads(ex.gold)
        secrets.add(gold["narrative"])
        for aspect in gold["rubric_aspects"]:
            secrets.update({aspect["aspect"], aspect["reason"]})
    for prompt in Recording.seen:
        assert not [s for s in secrets if s in prompt], prompt
    # ... while the retrieved profile (the RAG prompt) does reach it
    assert any("# Past post questions" in p for p in Recording.seen)


def test_a_run_judges_once_and_another_matrix_sends_nothing(judges, tmp_path, cli):
    results = _run(tmp_path)
    first_calls = ScriptedJudge.calls
    assert first_calls > 0
    cell = Path(results[0]["dir"])
    metrics = json.loads((cell / "metrics.json").read_text())["metrics"]
    name = metrics[0]["name"]
    assert re.fullmatch(r"aspect-score@scripted-judge:lamp-qa-1:[0-9a-f]{6}", name)
    judging = json.loads((cell / "timing.json").read_text())["judging"]["judges"][0]
    assert judging["calls"] + judging["cached"] >= judging["questions"] > 0
    rationale = json.loads((cell / "judgments.json").read_text())[name]["examples"]
    assert all("raw" in q and "score" in q for r in rationale.values() for q in r["questions"])
    scores = json.loads((cell / "scores.json").read_text())
    assert [m["name"] for m in scores["metrics"]] == [name]
    config = json.loads((cell / "config.json").read_text())
    assert config["judges"][0]["metric_name"] == name

    _run(tmp_path)  # the same command: finished cells
    _run(tmp_path, out="other")  # another matrix, same outputs: every answer from the cache
    assert ScriptedJudge.calls == first_calls
    other = json.loads((Path(str(results[0]["dir"]).replace("/runs/", "/other/")) / "timing.json").read_text())
    assert other["judging"]["judges"][0]["calls"] == 0

    # a second judge through `lamp score`: a second metric, nothing generated
    generated = len(Recording.seen)
    from lamp_harness.run.judge import JudgeChoice, score_cells

    summaries = score_cells([tmp_path / "runs"], JudgeChoice("scripted-judge:second"), progress=False)
    assert len(summaries) == 2 and sum(s["judged"][0]["calls"] for s in summaries) > 0  # same outputs: asked once
    assert len(Recording.seen) == generated
    names = [m["name"] for m in json.loads((cell / "metrics.json").read_text())["metrics"]]
    assert names[0] == name and re.fullmatch(r"aspect-score@second:lamp-qa-1:[0-9a-f]{6}", names[1])
    assert len(json.loads((cell / "judgments.json").read_text())) == 2
    code, out, err = cli("leaderboard", str(tmp_path / "runs"))
    assert code == 0, err
    assert "aspect-score@scripted-judge" in out and "aspect-score@second" in out
    code, out, err = cli("leaderboard", str(tmp_path / "runs"), "--by", "profile-size")
    assert code == 0, err


def test_a_judge_going_down_loses_nothing_and_a_rerun_resumes(judges, tmp_path):
    from lamp_harness.run.judge import BATCH

    ScriptedJudge.fail_after = BATCH  # one batch answered, then the server is gone
    with pytest.raises(LampError, match="unreachable"):
        _run(tmp_path, personalizers=("none",))
    assert ScriptedJudge.calls == BATCH
    ScriptedJudge.fail_after = None
    generated = len(Recording.seen)
    results = _run(tmp_path, personalizers=("none",))
    assert len(Recording.seen) == generated  # the predictions were kept: nothing generated again
    usage = json.loads((Path(results[0]["dir"]) / "timing.json").read_text())["judging"]["judges"][0]
    # the first round's answers were committed before the judge went down; only the rest is sent
    assert usage["cached"] >= usage["questions"] and 0 < usage["calls"] <= ScriptedJudge.calls - BATCH


def _official_files(folder: Path, split="validation"):
    from lamp_tasks.lamp_qa_demo import generate

    task, _ = _demo()
    questions, outputs = generate(task, "dev")
    golds = {g["id"]: json.loads(g["output"]) for g in outputs["golds"]}
    records = [{"id": q["id"], "question": q["input"], "profile": q["profile"], **golds[q["id"]]} for q in questions]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"Art_and_Entertainment_{split}.json").write_text(json.dumps(records))
    return records


def test_data_dir_reads_the_official_download_layout(judges, tmp_path):
    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.registry import host

    records = _official_files(tmp_path / "official")
    task = host().registry.create("task", "lamp-qa-arts")
    dataset = resolve_dataset(
        task, data=None, data_dir=tmp_path / "official", split="dev", context=RunContext(lamp_home=lamp_home())
    )
    assert [ex.id for ex in dataset.examples] == [r["id"] for r in records]
    first = dataset.examples[0]
    assert first.input == records[0]["question"] and "narrative" not in json.dumps([i.fields for i in first.profile])
    assert json.loads(first.gold)["rubric_aspects"] == records[0]["rubric_aspects"]

    records[3]["rubric_aspects"][1].pop("evidence")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Art_and_Entertainment_test.json").write_text(json.dumps(records))
    with pytest.raises(LampError) as error:
        resolve_dataset(task, data=None, data_dir=tmp_path / "bad", split="test", context=RunContext(lamp_home=lamp_home()))
    message = str(error.value)
    assert "\n" not in message and "Art_and_Entertainment_test.json" in message
    assert "record 3" in message and "rubric_aspects[1].evidence" in message
    with pytest.raises(LampError, match="has no Art_and_Entertainment_train.json"):
        resolve_dataset(task, data=None, data_dir=tmp_path / "bad", split="train", context=RunContext(lamp_home=lamp_home()))


def _two_answered_examples():
    """What the packaged-judge tests judge: the first two demo examples of LaMP-QA (arts), one
    fixed answer each, the task's judged metric, the plugin registry and a CPU context."""
    from lamp_harness.plugin.registry import host

    task, examples = _demo()
    examples = examples[:2]
    outputs = {ex.id: "Start small: ten minutes a day, free videos online, and a cheap sketchbook." for ex in examples}
    return task, examples, outputs, task.judged_metrics[0], host().registry, RunContext(lamp_home=Path("."), device="cpu")


@pytest.mark.slow
def test_the_packaged_smollm2_judges_through_the_real_hf_generator(tmp_path):
    """The offline preset's stand-in judge, end to end: real prompts, real answers, parsed or
    retried by sampling, every call cached (a second pass sends nothing)."""
    from lamp_harness.run.judge import JudgeChoice, judge_examples, resolve_judge

    task, examples, outputs, metric, registry, context = _two_answered_examples()
    identity = resolve_judge(
        registry,
        metric,
        JudgeChoice(None, {"parse_retries": "1", "max_new_tokens": "16", "decode": "generate"}),
        "offline",
        context,
    )
    assert identity.plugin == "hf" and identity.model_name.lower().startswith("smollm2")
    judged = judge_examples(task, metric, identity, examples, outputs, registry=registry, context=context, progress=False)
    questions = judged.usage["questions"]
    assert questions == 4 and questions <= judged.usage["calls"] <= 2 * questions
    assert judged.usage["generated_tokens"] > 0 and judged.usage["prompt_tokens"] > 300 * questions
    for result in judged.rationale.values():
        assert 0.0 <= result["score"] <= 1.0 and all(q["raw"] for q in result["questions"])
    again = judge_examples(task, metric, identity, examples, outputs, registry=registry, context=context, progress=False)
    assert again.usage["calls"] == 0 and again.rationale == judged.rationale


@pytest.mark.slow
def test_the_offline_stand_in_judge_decodes_labels_through_the_real_hf_generator(tmp_path):
    """The offline preset's default judge: SmolLM2 scores the three official answers by
    log-likelihood, so every question gets a valid score at the first call."""
    from lamp_tasks.lamp_qa import JUDGE_CHOICES

    from lamp_harness.run.judge import judge_examples, resolve_judge

    task, examples, outputs, metric, registry, context = _two_answered_examples()
    identity = resolve_judge(registry, metric, None, "offline", context)
    assert identity.plugin == "hf" and identity.decode == "labels" and identity.choices == JUDGE_CHOICES
    judged = judge_examples(task, metric, identity, examples, outputs, registry=registry, context=context, progress=False)
    assert judged.usage["questions"] == judged.usage["calls"] == 4
    assert judged.usage["retried"] == judged.usage["unparsable"] == 0
    answers = [q for r in judged.rationale.values() for q in r["questions"]]
    assert all(q["raw"] in JUDGE_CHOICES and q["tries"] == 1 and "parsed" not in q for q in answers)
    # the generator's own label scores: the chosen answer is the most likely of the three
    generator = registry.get("generator", "hf").load()(context, max_input_tokens="2048")
    from lamp_harness.plugin.contracts import GenerationRequest

    prompts = [q for ex in examples for q in task.judge_prompts(metric.name, ex, outputs[ex.id])]
    rows = generator.label_scores(
        [GenerationRequest(f"q{i}", f"{p.system}\n\n{p.user}", choices=JUDGE_CHOICES) for i, p in enumerate(prompts)]
    )
    assert [JUDGE_CHOICES[max(range(3), key=row.__getitem__)] for row in rows] == [q["raw"] for q in answers]
    again = judge_examples(task, metric, identity, examples, outputs, registry=registry, context=context, progress=False)
    assert again.usage["calls"] == 0 and again.rationale == judged.rationale


def test_label_decoding_judges_with_the_metrics_choices_and_is_recorded(judges, tmp_path):
    from lamp_tasks.lamp_qa import JUDGE_CHOICES

    from lamp_harness.base.io import stable_hash
    from lamp_harness.plugin.registry import host
    from lamp_harness.run.judge import JudgeChoice, judge_examples, resolve_judge

    LabelJudge.decodes = []
    task, examples = _demo()
    outputs = {ex.id: f"Try {ex.input.split()[-1]}." for ex in examples}
    metric = task.judged_metrics[0]
    registry = host().registry
    free = resolve_judge(registry, metric, JudgeChoice("label-judge", {"parse_retries": "2"}), "offline")
    labels = resolve_judge(
        registry, metric, JudgeChoice("label-judge", {"parse_retries": "2", "decode": "labels"}), "offline"
    )
    # free-form judging keeps the digests recorded before label decoding existed
    old = {k: v for k, v in free.__dict__.items() if k not in ("metric", "model_name", "decode", "choices")}
    assert free.decode == "generate" and free.digest == stable_hash(old, 6)
    # label decoding is part of the judge's identity: another metric name, other cache keys, no retries
    assert labels.decode == "labels" and labels.choices == JUDGE_CHOICES and labels.max_retries == 0
    assert labels.metric_name != free.metric_name
    prompt = task.judge_prompts(metric.name, examples[0], "x")[0]
    assert labels.call_key("0.0", prompt) != free.call_key("0.0", prompt)

    context = RunContext(lamp_home=Path("."))
    off = judge_examples(task, metric, free, examples, outputs, registry=registry, context=context, progress=False)
    assert off.usage["unparsable"] == off.usage["questions"] and float(off.scores.rows.mean()) == 0.0
    calls = ScriptedJudge.calls
    on = judge_examples(task, metric, labels, examples, outputs, registry=registry, context=context, progress=False)
    assert ScriptedJudge.calls - calls == on.usage["calls"] == on.usage["questions"] > 0
    assert on.usage["retried"] == on.usage["unparsable"] == 0 and LabelJudge.decodes[-1] == "labels"
    expected = []
    for ex in examples:
        picks = [
            int(hashlib.sha256(f"{p.system}\n\n{p.user}".encode()).hexdigest(), 16) % 3
            for p in task.judge_prompts(metric.name, ex, outputs[ex.id])
        ]
        expected.append(sum(picks) / (2 * len(picks)))
    assert on.scores.rows[:, 0].tolist() == pytest.approx(expected, abs=0) and 0 < max(expected)

    # the offline preset's default stand-in decodes labels; the paper preset's judge generates
    assert resolve_judge(registry, metric, None, "offline").decode == "labels"
    paper = resolve_judge(registry, metric, None, "paper")
    assert paper.decode == "generate" and paper.max_retries == 100 and paper.choices == ()
    with pytest.raises(LampError, match="decode='beam'"):
        resolve_judge(registry, metric, JudgeChoice("label-judge", {"decode": "beam"}), "offline")


def test_a_run_records_the_label_decoding_judge(judges, tmp_path):
    results = _run(tmp_path, personalizers=("none",), judge="label-judge", judge_args={"decode": "labels"})
    cell = Path(results[0]["dir"])
    config = json.loads((cell / "config.json").read_text())
    judge = config["judges"][0]
    assert judge["decode"] == "labels" and len(judge["choices"]) == 3
    name = json.loads((cell / "metrics.json").read_text())["metrics"][0]["name"]
    assert name == judge["metric_name"]
    free = _run(tmp_path, out="free", personalizers=("none",), judge="label-judge")
    assert Path(free[0]["dir"]).name != cell.name  # the decoding is part of the cell id


class HubServer:
    """The Hugging Face hub on 127.0.0.1 for one dataset repository: its files per revision in
    the hub's layout (``/datasets/{repo}/resolve/{revision}/{path}``) and its file listing
    (``/api/datasets/{repo}/tree/{revision}``, what ``HfApi.list_repo_files`` reads)."""

    def __init__(self, repo: str, revisions: dict[str, dict[str, bytes]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import quote, unquote

        self.requests: list[str] = []
        hub = self
        quoted = {quote(r, safe=""): r for r in revisions} | {r: r for r in revisions}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, data: bytes, body: bool, kind: str = "application/octet-stream") -> None:
                self.send_response(code)
                if code == 404:
                    self.send_header("X-Error-Code", "EntryNotFound")
                else:
                    self.send_header("X-Repo-Commit", "0" * 40)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", kind)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _answer(self, body: bool) -> None:
                hub.requests.append(self.path)
                path = self.path.split("?")[0]
                tree = f"/api/datasets/{repo}/tree/"
                if path.startswith(tree):
                    files = revisions.get(quoted.get(path[len(tree) :].strip("/"), ""), {})
                    listing = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in sorted(files.items())
                    ]
                    return self._send(200, json.dumps(listing).encode(), body, "application/json")
                resolve = f"/datasets/{repo}/resolve/"
                for key, revision in quoted.items():
                    if path.startswith(resolve + key + "/"):
                        name = unquote(path[len(resolve + key) + 1 :])
                        if name in revisions[revision]:
                            return self._send(200, revisions[revision][name], body)
                self._send(404, b"", body)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CARD = """---
license: cc-by-nc-sa-4.0
configs:
- config_name: Art_and_Entertainment
  data_files:
  - split: train
    path: Art_and_Entertainment/train-*
  - split: validation
    path: Art_and_Entertainment/validation-*
  - split: test
    path: Art_and_Entertainment/test-*
- config_name: Society_and_Culture
  data_files:
  - split: validation
    path: Society_and_Culture/validation-*
---
# LaMP-QA
"""
"""A dataset card in the layout ``push_to_hub`` writes: one configuration per category, each
split's files named by a pattern (``datasets.load_dataset(REPO, category, split=...)`` reads it)."""


def _parquet(records) -> bytes:
    import io

    import pyarrow
    import pyarrow.parquet as parquet

    buffer = io.BytesIO()
    parquet.write_table(pyarrow.Table.from_pylist(records), buffer)
    return buffer.getvalue()


def _hub_dataset(task_name, monkeypatch, revisions):
    import huggingface_hub.constants
    from lamp_tasks.lamp_qa_data import REPO

    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset
    from lamp_harness.plugin.registry import host

    hub = HubServer(REPO, revisions)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    task = host().registry.create("task", task_name)
    try:
        return (
            task,
            hub,
            resolve_dataset(task, data=None, data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home())),
        )
    finally:
        hub.close()


@pytest.mark.slow
def test_the_hub_loader_reads_the_cards_configurations_and_works_offline_once_cached(judges, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from lamp_tasks.lamp_qa_data import card_data_files

    from lamp_harness.base.io import lamp_home
    from lamp_harness.inputs.data import resolve_dataset

    assert card_data_files(CARD, "Art_and_Entertainment", "test") == ["Art_and_Entertainment/test-*"]
    assert card_data_files(CARD, "Lifestyle_and_Personal_Development", "test") == []
    records = _official_files(tmp_path / "official")
    main = {
        "README.md": CARD.encode(),
        ".gitattributes": b"*.parquet filter=lfs\n",
        # two shards, read in name order; another split and another category that must not be read
        "Art_and_Entertainment/validation-00000-of-00002.parquet": _parquet(records[:12]),
        "Art_and_Entertainment/validation-00001-of-00002.parquet": _parquet(records[12:]),
        "Art_and_Entertainment/train-00000-of-00001.parquet": _parquet(records[:3]),
        "Society_and_Culture/validation-00000-of-00001.parquet": _parquet(records[:2]),
    }
    task, hub, dataset = _hub_dataset("lamp-qa-arts", monkeypatch, {"main": main})
    assert [ex.id for ex in dataset.examples] == [r["id"] for r in records]
    assert dataset.source == "lamp-qa:hub"
    assert any("/tree/main" in r for r in hub.requests) and any("00001-of-00002" in r for r in hub.requests)
    assert not any("train-" in r or "Society" in r or "refs%2Fconvert" in r for r in hub.requests)
    assert json.loads(dataset.examples[5].gold)["narrative"] == records[5]["narrative"]
    # the server is gone: the cached copy is used
    again = resolve_dataset(task, data=None, data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home()))
    assert again.examples == dataset.examples
    with pytest.raises(LampError) as error:  # a split never downloaded, with no server: one line
        resolve_dataset(task, data=None, data_dir=None, split="test", context=RunContext(lamp_home=lamp_home()))
    assert "\n" not in str(error.value) and "--data-dir" in str(error.value)


def test_the_hub_loader_falls_back_to_the_parquet_conversion(judges, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from lamp_tasks.lamp_qa_data import PARQUET_REVISION

    records = _official_files(tmp_path / "official")
    conversion = {
        f"Art_and_Entertainment/validation/{part:04d}.parquet": _parquet(chunk)
        for part, chunk in enumerate((records[:12], records[12:]))
    }
    # a card without configurations: the hub's own Parquet conversion is read
    _, hub, dataset = _hub_dataset(
        "lamp-qa-arts", monkeypatch, {"main": {"README.md": b"# LaMP-QA\n"}, PARQUET_REVISION: conversion}
    )
    assert [ex.id for ex in dataset.examples] == [r["id"] for r in records]
    assert any("0001.parquet" in r for r in hub.requests)


def test_the_paper_numbers_sit_beside_the_paper_judge_only(judges, tmp_path):
    from lamp_harness.report.leaderboard import leaderboard

    _run(tmp_path, out="paper", judge="scripted-judge:Qwen/Qwen2.5-32B-Instruct", personalizers=("none",))
    from lamp_harness.run.judge import JudgeChoice, score_cells

    score_cells([tmp_path / "paper"], JudgeChoice("scripted-judge:other"), progress=False)
    board = leaderboard([tmp_path / "paper"], references=["lamp-qa"])
    (block,) = board.blocks
    references = [i for i, c in enumerate(block.columns) if c.kind == "reference"]
    assert len(references) == 6, (block.columns, [r.metric for r in block.rows])
    rows = {row.metric.split(":")[0]: row for row in block.rows}
    assert set(rows) == {"aspect-score@Qwen2.5-32B-Instruct", "aspect-score@other"}
    paper = [rows["aspect-score@Qwen2.5-32B-Instruct"].values[i] for i in references]
    assert [v.value for v in paper] == [0.416, 0.428, 0.327, 0.400, 0.468, 0.471]
    assert all(rows["aspect-score@other"].values[i] is None for i in references)


def test_lamp_score_on_a_folder_without_cells_is_one_line(cli, tmp_path):
    code, out, err = cli("score", str(tmp_path))
    assert code == 2 and "no finished cells" in err and "lamp run" in err and "Traceback" not in err
    code, out, err = cli("score", str(tmp_path / "nope"))
    assert code == 2 and "is not a run folder or a cell folder" in err


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (
            "nmu_beams=2",
            "Error: --judge-arg for aspect-score: judge 'hf': unknown argument nmu_beams (did you mean num_beams?).",
        ),
        ("num_beams=0", "Error: --judge-arg for aspect-score: judge 'hf': argument num_beams=0 must be at least 1"),
        ("decode=bogus", "Error: --judge-arg for aspect-score: decode='bogus' is not one of generate, labels."),
    ],
    ids=["typo", "range", "setting"],
)
def test_a_bad_judge_argument_fails_before_any_cell_runs(cli, tmp_path, arg, expected):
    """The judge's generator options are checked with the plan: a typo used to surface only when
    the first cell was scored, after all its generation."""
    out = tmp_path / "runs"
    argv = ("run", "--task", "lamp-qa-arts", "--data", "demo", "--personalizer", "none", "--limit", "2")
    code, _, err = cli(*argv, "--judge-arg", arg, "--out", str(out), "--quiet")
    lines = [line for line in err.splitlines() if line.startswith("Error")]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert not list(out.glob("*/config.json"))  # no cell started
