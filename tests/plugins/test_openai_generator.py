"""The openai generator: its flow-control pieces on their own (rate-limit pacing, Retry-After
parsing, the response cache key, the answer check), the plugin listing of both engine generators,
and its faults through the real CLI against a real fault-injecting HTTP server on 127.0.0.1
(tests/support/openai_fake.py; the tests against a real vLLM server are in test_openai_server.py)."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from lamp_cli import demo_run
from lamp_plugins.openai_generator import MalformedAnswer, RateLimiter, ResponseCache, check_answer, retry_after
from openai_fake import FakeOpenAI, answer_text, openai_run


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


@pytest.mark.slow
def test_the_vllm_generator_without_the_engine_is_a_one_line_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        import pytest

        pytest.skip("vllm is installed in this environment")
    lamp = Path(sys.executable).parent / "lamp"
    done = subprocess.run(
        [str(lamp), *demo_run(generator="vllm", limit=1, out=tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "vLLM engine" in line and "setup-vllm.sh" in line and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# Faults against a real HTTP server on 127.0.0.1 (tests/support/openai_fake.py), through the real CLI.
# Each case: the exit code, one line on stderr, no traceback, nothing cached that should not be.
# ---------------------------------------------------------------------------------------------


def _run(cli, server: FakeOpenAI, out: Path, *extra: str, model: str | None = "fake-model"):
    return cli(*openai_run(server.url, out, *extra, model=model))


def _one_line(code: int, err: str, expected: int = 2) -> str:
    """The single error line of a failed command (exit code ``expected``, no traceback)."""
    assert code == expected, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    # Besides the run's own status lines ("lamp run: ...", "started ..."), one line: the error.
    assert [line for line in lines if not line.startswith(("lamp run:", "started "))] == lines[-1:], err
    assert lines[-1].startswith("Error: "), err
    return lines[-1]


def _cache_rows(lamp_home: Path) -> list[dict]:
    path = lamp_home / "openai-cache.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM responses")]


def _raws(out: Path) -> list[str]:
    return [json.loads(line)["raw"] for p in sorted(out.glob("*/predictions.jsonl")) for line in p.read_text().splitlines()]


MALFORMED = {
    "message null": {"choices": [{"index": 0, "message": None}]},
    "message a string": {"choices": [{"index": 0, "message": "hello"}]},
    "choice a string": {"choices": ["hello"]},
    "no choices": {"choices": []},
    "usage NaN": '{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": NaN}}',
    "usage Infinity": '{"choices": [{"message": {"content": "x"}}], "usage": {"completion_tokens": Infinity}}',
    "usage text": {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "12"}},
    "usage a list": {"choices": [{"message": {"content": "x"}}], "usage": [1, 2]},
    "no content": {"choices": [{"message": {"role": "assistant"}}]},
    "content null beside an error": {"choices": [{"message": {"content": None}}], "error": {"message": "overloaded"}},
    "error in the choice": {"choices": [{"message": {"content": ""}, "error": {"message": "cut"}}]},
    "not an object": [1, 2, 3],
    "not JSON": "<html>bad gateway</html>",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_answer_is_refused_by_the_check(case):
    payload = MALFORMED[case]
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return  # not JSON: the client's own parse refuses it (see the server test below)
    with pytest.raises(MalformedAnswer):
        check_answer(payload, chat=True)


def test_a_good_answer_passes_the_check_with_its_usage():
    answer = check_answer(
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1.0}}, True
    )
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ("hi", 3, 1)
    assert check_answer({"choices": [{"text": ""}]}, chat=False).text == ""  # an empty answer is an answer


@pytest.mark.parametrize("case", ["message null", "usage NaN", "content null beside an error", "not JSON"])
def test_a_malformed_answer_is_retried_and_never_cached(cli, fake, tmp_path, lamp_home, case):
    fake.faults = [("json", MALFORMED[case])]
    code, _, err = _run(cli, fake, tmp_path / "runs")
    assert code == 0, err
    assert fake.completions == 3  # two examples, one retry
    assert len(_cache_rows(lamp_home)) == 2
    assert all(check_answer(row, True) for row in _cache_rows(lamp_home))
    raws = _raws(tmp_path / "runs")
    assert len(raws) == 2 and all(r.startswith("echo:") for r in raws)  # the bad answer was never scored


@pytest.mark.parametrize("case", ["message a string", "choice a string", "usage Infinity", "no content"])
def test_a_server_that_keeps_answering_malformed_stops_in_one_line_and_a_rerun_recovers(
    cli, fake, tmp_path, lamp_home, case
):
    fake.always = ("json", MALFORMED[case])
    line = _one_line(*_run(cli, fake, tmp_path / "runs", "--generator-arg", "max_retries=1")[::2])
    assert "malformed answer" in line and fake.url in line and "did not answer after 2 attempts" in line
    assert _cache_rows(lamp_home) == []  # nothing bad was stored
    fake.always = None
    sent = fake.completions
    code, _, err = _run(cli, fake, tmp_path / "runs")
    assert code == 0, err
    assert fake.completions == sent + 2 and len(_cache_rows(lamp_home)) == 2


def test_a_cached_answer_that_fails_the_check_is_asked_again(cli, fake, tmp_path, lamp_home):
    code, _, err = _run(cli, fake, tmp_path / "a")
    assert code == 0, err
    with sqlite3.connect(lamp_home / "openai-cache.sqlite") as db:  # what an older version could store
        db.execute("UPDATE responses SET body = ?", (json.dumps({"choices": [{"message": None}]}),))
    code, _, err = _run(cli, fake, tmp_path / "b")
    assert code == 0, err
    assert fake.completions == 4 and all(check_answer(row, True) for row in _cache_rows(lamp_home))


def test_force_asks_the_server_again_and_stores_the_new_answers(cli, fake, tmp_path, lamp_home):
    assert _run(cli, fake, tmp_path / "runs")[0] == 0
    assert _run(cli, fake, tmp_path / "again")[0] == 0
    assert fake.completions == 2  # the second matrix came from the cache
    code, _, err = _run(cli, fake, tmp_path / "runs", "--force")
    assert code == 0, err
    assert fake.completions == 4
    timing = json.loads(next((tmp_path / "runs").glob("*/timing.json")).read_text())
    assert timing["usage"]["cache_hits"] == 0 and timing["usage"]["requests_sent"] == 2


def _damage(path: Path, how: str) -> None:
    if how == "folder":
        path.mkdir(parents=True)
        (path / "something").write_text("x")
    elif how == "garbage":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"this is not a database at all\n" * 200)
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])
    elif how == "wrong schema":
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE responses (id INTEGER, answer BLOB)")


@pytest.mark.parametrize("how", ["garbage", "truncated", "wrong schema", "folder"])
def test_a_damaged_response_cache_is_moved_aside_with_a_warning_and_rebuilt(cli, fake, tmp_path, lamp_home, how):
    cache = lamp_home / "openai-cache.sqlite"
    if how == "truncated":  # a real cache, with enough rows to span several pages, cut in half
        from lamp_plugins.openai_generator import ResponseCache

        filled = ResponseCache(cache)
        for i in range(300):
            filled.put(f"k{i}", {"choices": [{"message": {"content": "x" * 200}}]})
        filled._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filled._db.close()
    _damage(cache, how)
    code, _, err = _run(cli, fake, tmp_path / "runs")
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(cache) in warnings[0] and "rebuilt" in warnings[0], err
    assert len(_cache_rows(lamp_home)) == 2 and fake.completions == 2
    assert len(list(lamp_home.glob("openai-cache.sqlite.damaged-*"))) >= 1
    code, _, err = _run(cli, fake, tmp_path / "again")  # the rebuilt cache serves the rerun, silently
    assert code == 0 and "warning" not in err and fake.completions == 2


def test_concurrent_openers_of_a_damaged_cache_rebuild_it_once(tmp_path):
    from lamp_plugins.openai_generator import ResponseCache

    path = tmp_path / "openai-cache.sqlite"
    path.write_bytes(b"garbage" * 500)
    opened, errors = [], []

    def open_it() -> None:
        try:
            opened.append(ResponseCache(path))
        except Exception as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(opened) == 4
    assert len(list(tmp_path.glob("openai-cache.sqlite.damaged-*"))) == 1
    opened[0].put("k", {"choices": [{"text": "x"}]})
    assert opened[3].get("k") == {"choices": [{"text": "x"}]}


@pytest.mark.slow
def test_a_server_dripping_bytes_times_out_at_the_deadline(cli, fake, tmp_path, lamp_home):
    fake.always = ("drip", 0.2)  # every read succeeds within the 5 s timeout; the whole answer takes ~60 s
    started = time.monotonic()
    line = _one_line(
        *_run(
            cli,
            fake,
            tmp_path / "runs",
            "--generator-arg",
            "timeout=5",
            "--generator-arg",
            "deadline=1.5",
            "--generator-arg",
            "max_retries=1",
        )[::2]
    )
    assert time.monotonic() - started < 20
    assert "within deadline=1.5 s" in line and "finished predictions are kept" in line
    assert _cache_rows(lamp_home) == []


@pytest.mark.parametrize(
    "header",
    [
        {"Retry-After": "86400"},
        {"retry-after-ms": "1e12"},
        {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
        {"Retry-After": "inf"},
    ],
)
def test_a_retry_after_beyond_the_cap_is_one_line_at_once(cli, fake, tmp_path, header):
    fake.always = ("status", 429, header, '{"error": {"message": "slow down"}}')
    started = time.monotonic()
    line = _one_line(*_run(cli, fake, tmp_path / "runs")[::2])
    assert time.monotonic() - started < 15 and fake.completions <= 2  # no sleep, no retry
    assert "max_retry_wait=300" in line and "Retry-After" in line and "HTTP 429" in line


@pytest.mark.parametrize("value", ["soon", "nan", "-5"])
def test_an_unreadable_or_negative_retry_after_falls_back_to_the_backoff(cli, fake, tmp_path, value):
    fake.faults = [("status", 429, {"Retry-After": value}, "{}")]
    code, _, err = _run(cli, fake, tmp_path / "runs")
    assert code == 0, err
    assert fake.completions == 3


@pytest.mark.slow
def test_a_long_retry_after_is_announced_and_honoured(cli, fake, tmp_path):
    fake.faults = [("status", 503, {"Retry-After": "6"}, "{}")]
    started = time.monotonic()
    code, _, err = _run(cli, fake, tmp_path / "runs", "--generator-arg", "concurrency=1")
    assert code == 0, err
    assert time.monotonic() - started >= 6
    assert "waiting 6 s as its Retry-After asks" in err and "Traceback" not in err


def test_retry_after_reads_infinity_and_ignores_nan():
    assert retry_after({"retry-after": "inf"}) == math.inf
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"retry-after-ms": "1e12"}) == 1e9
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({"retry-after": "Mon, 99 Foo 2024 99:99:99 GMT"}) is None


@pytest.mark.parametrize(
    "arg",
    [
        "timeout=-1",
        "timeout=nan",
        "timeout=0",
        "timeout=abc",
        "deadline=inf",
        "deadline=0",
        "backoff=-1",
        "max_retry_wait=nan",
        "max_retries=-1",
        "concurrency=0",
        "rpm=-5",
        "tpm=1.5",
        "max_new_tokens=0",
        "temperature=NaN",
        "top_p=Infinity",
        "endpoint=embeddings",
        "cache=maybe",
        "api_key_env=sk-live-123",
        "stream=true",
    ],
)
def test_a_bad_argument_is_one_line_before_any_request(cli, fake, tmp_path, arg):
    line = _one_line(*_run(cli, fake, tmp_path / "runs", "--generator-arg", arg)[::2])
    # The generation budget is every generator's setting, checked by the harness before any generator exists.
    assert ("--generator-arg: argument max_new_tokens=0" if arg == "max_new_tokens=0" else "generator 'openai'") in line
    assert fake.requests == []
    if arg.startswith("api_key_env"):
        assert "sk-live-123" not in line


@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://127.0.0.1/v1", "http://127.0.0.1:99999/v1", "http:///v1", "http://127.0.0.1:1/v1?x=1"]
)
def test_an_unusable_base_url_is_one_line_at_once(cli, tmp_path, url):
    started = time.monotonic()
    code, _, err = cli(*demo_run("--generator-arg", f"base_url={url}", generator="openai:m", limit=2, out=tmp_path / "runs"))
    line = _one_line(code, err)
    assert "base_url" in line and "http" in line and time.monotonic() - started < 15


@pytest.mark.parametrize(
    "models",
    [
        {"data": [{"id": "fake-model"}]},
        [{"id": "fake-model"}],
        ["fake-model"],
        {"models": [{"name": "fake-model"}]},
        {"object": "list", "data": [{"id": "fake-model", "owned_by": "x"}]},
    ],
)
def test_the_served_model_is_found_in_the_shapes_servers_answer(cli, tmp_path, models):
    server = FakeOpenAI(models)
    try:
        code, _, err = _run(cli, server, tmp_path / "runs", model=None)
    finally:
        server.close()
    assert code == 0, err
    assert json.loads(next((tmp_path / "runs").glob("*/config.json")).read_text())["generator"]["model"] == "fake-model"


@pytest.mark.parametrize(
    "models", [{"object": "list"}, {"data": "fake-model"}, [{"owned_by": "x"}], 42, {"data": [{"id": "a"}, {"id": "b"}]}]
)
def test_a_model_list_that_names_no_single_model_is_one_line(cli, tmp_path, models):
    server = FakeOpenAI(models)
    try:
        line = _one_line(*_run(cli, server, tmp_path / "runs", model=None)[::2])
    finally:
        server.close()
    assert "/models" in line and "--generator openai:MODEL" in line


def test_the_answers_are_the_servers(cli, fake, tmp_path):
    code, _, err = _run(cli, fake, tmp_path / "runs")
    assert code == 0, err
    prompts = [r["body"]["messages"][0]["content"] for r in fake.requests if r["method"] == "POST"]
    assert sorted(_raws(tmp_path / "runs")) == sorted(answer_text(p) for p in prompts)


def test_a_cache_that_cannot_be_written_is_one_line_naming_it(cli, fake, tmp_path, lamp_home, monkeypatch):
    import lamp_plugins.openai_generator as module

    class ReadOnly(module.ResponseCache):
        """The real cache, reopened read-only: every write fails as on a full or read-only disk."""

        def _open(self) -> sqlite3.Connection:
            super()._open().close()
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    monkeypatch.setattr(module, "ResponseCache", ReadOnly)
    line = _one_line(*_run(cli, fake, tmp_path / "runs")[::2])
    assert str(lamp_home / "openai-cache.sqlite") in line and "response cache failed" in line
    assert "cache=false" in line and "finished predictions are kept" in line


@pytest.mark.parametrize("fault", [("json", MALFORMED["message null"]), ("status", 429, {"Retry-After": "86400"}, "{}")])
def test_a_run_stopped_by_the_server_loses_nothing_and_a_resume_sends_only_what_is_missing(
    cli, fake, tmp_path, lamp_home, fault
):
    args = ("--generator-arg", "concurrency=1", "--generator-arg", "batch_size=1", "--generator-arg", "max_retries=1")
    code, _, err = _run(cli, fake, tmp_path / "probe", "--limit", "1", *args)  # caches the first answer
    assert code == 0, err
    fake.always = fault  # from now on the server only fails
    line = _one_line(*_run(cli, fake, tmp_path / "runs", *args)[::2])
    assert fake.url in line and "finished predictions are kept" in line
    # The first example (answered from the cache) is in the run store; the cache holds only good answers.
    kept = _raws(tmp_path / "runs")
    assert len(kept) == 1 and kept[0].startswith("echo:")
    assert len(_cache_rows(lamp_home)) == 1
    fake.always = None
    sent = fake.completions
    code, _, err = _run(cli, fake, tmp_path / "runs", *args)
    assert code == 0, err
    assert fake.completions == sent + 1 and len(_raws(tmp_path / "runs")) == 2
