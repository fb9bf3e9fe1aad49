"""The openai generator's flow-control pieces on their own (the server tests are in
test_openai_server.py): rate-limit pacing, Retry-After parsing, the response cache key, and the
plugin listing of both engine generators."""

from __future__ import annotations

import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

from lamp_plugins.openai_generator import RateLimiter, ResponseCache, retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _starts(limiter: RateLimiter, clock: FakeClock, tokens: list[int]) -> list[float]:
    starts = []
    for n in tokens:
        limiter.acquire(n)
        starts.append(clock.now)
    return starts


def test_rpm_paces_requests_evenly_over_the_minute():
    clock = FakeClock()
    starts = _starts(RateLimiter(rpm=60, clock=clock, sleep=clock.sleep), clock, [10] * 5)
    assert [round(s - starts[0], 6) for s in starts] == [0, 1, 2, 3, 4]


def test_tpm_spreads_each_request_tokens_over_the_minute():
    clock = FakeClock()
    starts = _starts(RateLimiter(tpm=600, clock=clock, sleep=clock.sleep), clock, [100, 300, 50])
    # 100 tokens of 600/min hold the next start 10 s, 300 tokens 30 s.
    assert [round(s - starts[0], 6) for s in starts] == [0, 10, 40]


def test_no_limit_never_waits():
    clock = FakeClock()
    _starts(RateLimiter(clock=clock, sleep=clock.sleep), clock, [10**6] * 3)
    assert clock.slept == []


def test_retry_after_reads_seconds_milliseconds_and_http_dates():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({}) is None
    later = retry_after({"retry-after": formatdate(timeval=__import__("time").time() + 30, usegmt=True)})
    assert later is not None and 25 <= later <= 31
    assert retry_after({"retry-after": "soon"}) is None


def test_cache_keys_cover_url_and_request_and_survive_reopening(tmp_path):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = ResponseCache.key("http://a/v1/chat/completions", body)
    assert key != ResponseCache.key("http://b/v1/chat/completions", body)
    assert key != ResponseCache.key("http://a/v1/chat/completions", {**body, "temperature": 1})
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(key, {"choices": [{"text": "x"}]})
    assert ResponseCache(tmp_path / "c.sqlite").get(key) == {"choices": [{"text": "x"}]}


def test_lamp_plugins_lists_the_engine_generators():
    lamp = Path(sys.executable).parent / "lamp"
    out = subprocess.run([str(lamp), "plugins"], capture_output=True, text=True, timeout=120).stdout
    assert "vllm" in out and "openai" in out


def test_the_vllm_generator_without_the_engine_is_a_one_line_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        import pytest

        pytest.skip("vllm is installed in this environment")
    lamp = Path(sys.executable).parent / "lamp"
    done = subprocess.run([str(lamp), "run", "--task", "lamp-7", "--data", "demo", "--limit", "1", "--generator",
                           "vllm", "--out", str(tmp_path / "runs"), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "vLLM engine" in line and "setup-vllm.sh" in line and "Traceback" not in done.stderr
