"""The LaMP-QA judge through the ``openai`` generator against a real vLLM OpenAI-compatible server
serving SmolLM2 on 127.0.0.1 (``--judge openai:MODEL --judge-arg base_url=...``), behind the
counting proxy of ``support/vllm_server.py``. A rerun of the same matrix into another folder sends no
judge request; ``lamp score`` with label decoding judges through the server's completions
endpoint. Skips when ``.venv-vllm`` is not built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vllm_env import engine_env
from vllm_server import MODEL, Proxy

pytestmark = pytest.mark.slow


@pytest.fixture
def judge_proxy(server):
    made = Proxy(server.url)
    yield made
    made.close()


def _lamp(args: list[str], home: Path, session_lamp_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**engine_env(home, session_lamp_home / "models"), "OPENAI_API_KEY": "sk-unused"}
    lamp = Path(sys.executable).parent / "lamp"
    return subprocess.run([str(lamp), *args], env=env, capture_output=True, text=True, timeout=1500)


def _run(out: Path, server_url: str, judge_url: str) -> list[str]:
    # The answers come from the server directly; only the judge's calls go through the proxy.
    return [
        "run",
        "--task",
        "lamp-qa-arts",
        "--data",
        "demo",
        "--personalizer",
        "none",
        "--limit",
        "2",
        "--generator",
        f"openai:{MODEL}",
        "--generator-arg",
        f"base_url={server_url}",
        "--generator-arg",
        "max_new_tokens=48",
        "--judge",
        f"openai:{MODEL}",
        "--judge-arg",
        f"base_url={judge_url}",
        "--judge-arg",
        "max_new_tokens=24",
        "--judge-arg",
        "parse_retries=1",
        "--quiet",
        "--out",
        str(out),
    ]


def _cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/metrics.json"))


def test_the_judge_runs_through_a_real_vllm_server_and_a_rerun_sends_nothing(
    server,
    judge_proxy,
    lamp_home,
    session_lamp_home,
    tmp_path,
):
    first = _lamp(_run(tmp_path / "a", server.url, judge_proxy.url), lamp_home, session_lamp_home)
    assert first.returncode == 0, first.stderr[-2000:]
    sent = judge_proxy.requests
    [cell] = _cells(tmp_path / "a")
    judging = json.loads((cell / "timing.json").read_text())["judging"]["judges"][0]
    # 2 questions x 2 aspects, each asked once, plus the retries of unparsable answers
    assert judging["questions"] == 4 and judging["calls"] == sent >= 4 and judging["cached"] == 0
    metric = json.loads((cell / "metrics.json").read_text())["metrics"][0]["name"]
    assert metric.startswith(f"aspect-score@{MODEL}:lamp-qa-1:")
    rationale = json.loads((cell / "judgments.json").read_text())[metric]["examples"]
    assert all(q["raw"] is not None for r in rationale.values() for q in r["questions"])

    again = _lamp(_run(tmp_path / "b", server.url, judge_proxy.url), lamp_home, session_lamp_home)
    assert again.returncode == 0, again.stderr[-2000:]
    assert judge_proxy.requests == sent  # a rerun sends 0 judge requests
    [other] = _cells(tmp_path / "b")
    judged_again = json.loads((other / "timing.json").read_text())["judging"]["judges"][0]
    assert judged_again["calls"] == 0 and judged_again["cached"] == judging["calls"]

    # label decoding through the server's completions endpoint: a second metric, one call a question
    scored = _lamp(
        [
            "score",
            str(tmp_path / "a"),
            "--judge",
            f"openai:{MODEL}",
            "--judge-arg",
            f"base_url={judge_proxy.url}",
            "--judge-arg",
            "decode=labels",
            "--quiet",
        ],
        lamp_home,
        session_lamp_home,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    names = [m["name"] for m in json.loads((cell / "metrics.json").read_text())["metrics"]]
    assert len(names) == 2 and names[0] == metric
    judges = json.loads((cell / "config.json").read_text())["judges"]
    assert [j["decode"] for j in judges] == ["generate", "labels"]
    labelled = json.loads((cell / "judgments.json").read_text())[names[1]]["examples"]
    assert all(q.get("parsed") is not False and q["tries"] == 1 for r in labelled.values() for q in r["questions"])
    assert judge_proxy.requests > sent
