"""The ``openai`` generator against a real vLLM OpenAI-compatible server serving SmolLM2, through a
small real HTTP proxy on 127.0.0.1 that counts requests and injects faults (429 with Retry-After,
500s, stalls). One server for the module; the last test kills it mid-run and restarts it.
Skips when ``.venv-vllm`` is not built."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from vllm_env import engine_env
from vllm_server import MODEL, Proxy

pytestmark = pytest.mark.slow

SECRET = "sk-lamp-test-secret-0123456789"


@pytest.fixture
def proxy(server):
    made = Proxy(server.url)
    yield made
    made.close()


def _matrix(proxy: Proxy, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--task",
        "lamp-7,lamp-2",
        "--data",
        "demo",
        "--personalizer",
        "none,ipa",
        "--retriever",
        "bm25",
        "--decode",
        "labels",
        "--limit",
        "4",
        "--generator",
        f"openai:{MODEL}",
        "--generator-arg",
        f"base_url={proxy.url}",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _lamp(args: list[str], home: Path, session_lamp_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**engine_env(home, session_lamp_home / "models"), "OPENAI_API_KEY": SECRET}
    lamp = Path(sys.executable).parent / "lamp"
    return subprocess.run([str(lamp), *args], env=env, capture_output=True, text=True, timeout=900)


def _predictions(out: Path) -> dict[str, list[str]]:
    """Raw outputs per cell, keyed by the cell id without its configuration hash (runs with other
    client settings, e.g. cache=false, get other ids for the same task and method)."""
    found = {}
    for path in sorted(out.glob("*/predictions.jsonl")):
        found[path.parent.name.rsplit("-", 1)[0]] = [json.loads(line)["raw"] for line in path.read_text().splitlines()]
    return found


def _timings(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/timing.json"))]


def test_a_run_completes_and_an_identical_rerun_sends_no_request(proxy, lamp_home, session_lamp_home, tmp_path):
    first = _lamp(_matrix(proxy, tmp_path / "a"), lamp_home, session_lamp_home)
    assert first.returncode == 0, first.stderr[-2000:]
    sent = proxy.requests
    # 2 generation cells x 4 examples, and 2 label cells scoring 15 LaMP-2 labels for 4 examples.
    assert sent == 2 * 4 + 2 * 4 * 15
    assert all(auth == f"Bearer {SECRET}" for _, _, auth in proxy.log)
    timing = _timings(tmp_path / "a")
    assert sum(t["usage"]["requests_sent"] for t in timing) == sent
    assert all(t["usage"]["prompt_tokens"] > 0 and t["usage"]["cache_hits"] == 0 for t in timing)

    again = _lamp(_matrix(proxy, tmp_path / "b"), lamp_home, session_lamp_home)
    assert again.returncode == 0, again.stderr[-2000:]
    assert proxy.requests == sent  # every answer came from the response cache
    assert _predictions(tmp_path / "b") == _predictions(tmp_path / "a")
    assert all(t["usage"]["requests_sent"] == 0 and t["usage"]["cache_hits"] > 0 for t in _timings(tmp_path / "b"))
    # The key is sent to the server and written nowhere.
    for root in (tmp_path, lamp_home):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_faults_are_retried_within_the_configured_limits(proxy, lamp_home, session_lamp_home, tmp_path):
    proxy.faults = ["429", "500", "stall", "500"]
    args = _matrix(
        proxy,
        tmp_path / "runs",
        "--generator-arg",
        "rpm=120",
        "--generator-arg",
        "timeout=20",
        "--generator-arg",
        "backoff=0.2",
        "--generator-arg",
        "concurrency=4",
    )
    args[args.index("lamp-7,lamp-2")] = "lamp-7"
    done = _lamp(args, lamp_home, session_lamp_home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not proxy.faults
    stamps = [t for t, _, _ in proxy.log]
    assert len(stamps) == 2 * 4 + 4  # every example once, plus one retry per fault
    # rpm=120: requests start 0.5 s apart (slack for thread scheduling on a busy machine).
    assert all(b - a >= 0.25 for a, b in zip(stamps, stamps[1:], strict=False))
    assert stamps[-1] - stamps[0] >= 0.5 * (len(stamps) - 1) - 0.25
    # The 429 asked for 1 s: its retry came no earlier.
    refused = next(t for t, status in proxy.answers if status == 429)
    assert any(t - refused >= 0.95 for t in stamps)
    usage = [t["usage"] for t in _timings(tmp_path / "runs")]
    assert sum(u["retries"] for u in usage) == 4


def test_a_killed_server_stops_the_run_in_one_line_and_a_resume_completes(
    server, proxy, lamp_home, session_lamp_home, tmp_path
):
    reference = _lamp(_matrix(proxy, tmp_path / "reference", "--generator-arg", "cache=false"), lamp_home, session_lamp_home)
    assert reference.returncode == 0, reference.stderr[-2000:]
    start = proxy.requests
    killed = threading.Event()

    def kill_after_some(n: int) -> None:
        if n - start >= 12 and not killed.is_set():
            killed.set()
            server.stop()

    proxy.on_request = kill_after_some
    args = _matrix(
        proxy,
        tmp_path / "runs",
        "--generator-arg",
        "concurrency=1",
        "--generator-arg",
        "batch_size=2",
        "--generator-arg",
        "max_retries=2",
        "--generator-arg",
        "backoff=0.1",
    )
    failed = _lamp(args, lamp_home, session_lamp_home)
    assert killed.is_set() and failed.returncode == 2
    message = failed.stderr.strip().splitlines()[-1]
    assert proxy.url in message and "did not answer" in message and "Traceback" not in failed.stderr
    kept = sum(len(v) for v in _predictions(tmp_path / "runs").values())
    assert kept >= 2  # finished batches are in the run store

    proxy.on_request = None
    server.start()
    resumed = _lamp(args, lamp_home, session_lamp_home)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _predictions(tmp_path / "runs") == _predictions(tmp_path / "reference")
