"""The judge through the real ``openai`` generator against an OpenAI-compatible HTTP server on
127.0.0.1 that answers as a judge would, malformed JSON included, refuses with 429s and is killed
in the middle of judging."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from judge_toys import Recording, scripted_answer

from lamp_harness.base.errors import LampError

MODEL = "judge-model"


class JudgeServer:
    """``/v1/models`` and ``/v1/chat/completions``; answers :func:`scripted_answer` for the
    request's prompt and temperature. ``refuse`` queues 429s; ``die_after`` stops answering (the
    connection is closed unanswered) after that many completions."""

    def __init__(self, port: int = 0) -> None:
        self.completions = 0
        self.refused = 0
        self.refuse = 0
        self.die_after: int | None = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"data": [{"id": MODEL}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server.lock:
                    if server.refuse:
                        server.refuse -= 1
                        server.refused += 1
                        return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                    if server.die_after is not None and server.completions >= server.die_after:
                        self.close_connection = True
                        return self.connection.close()
                    server.completions += 1
                prompt = body["messages"][-1]["content"]
                text = scripted_answer(prompt, f"{float(body.get('temperature', 0)):.1f}")
                self._send(
                    200,
                    {
                        "choices": [{"message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 7},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    made = JudgeServer()
    yield made
    made.close()


def _run(tmp_path, url: str, http_retries: int = 4):
    from lamp_harness.run.runner import Matrix, run_matrix

    matrix = Matrix(
        tasks=("lamp-qa-arts",),
        personalizers=("none", "ipa"),
        retrievers=("bm25",),
        ks=(2,),
        generators=("recording",),
        data="demo",
        limit=6,
        judge=f"openai:{MODEL}",
        judge_args={
            "base_url": url,
            "parse_retries": "3",
            "max_retries": str(http_retries),
            "backoff": "0.01",
            "concurrency": "2",
        },
    )
    return run_matrix(matrix, tmp_path / "runs", progress=False)


def test_an_openai_judge_with_429s_and_malformed_answers(judges, server, tmp_path):
    server.refuse = 3
    results = _run(tmp_path, server.url)
    assert server.refused == 3
    usage = json.loads((tmp_path / "runs" / results[0]["cell_id"] / "timing.json").read_text())["judging"]
    judge = usage["judges"][0]
    assert judge["calls"] > judge["questions"] and judge["unparsable"] > 0  # retries were sent
    assert judge["generator"]["retries"] >= 1  # the 429s, retried by the openai generator
    assert judge["prompt_tokens"] > 0
    sent = server.completions
    _run(tmp_path, server.url)  # the same command: nothing is sent
    assert server.completions == sent


def test_a_judge_server_killed_mid_judging_loses_nothing(judges, server, tmp_path):
    server.die_after = 10
    with pytest.raises(LampError) as error:
        _run(tmp_path, server.url, http_retries=1)
    assert "\n" not in str(error.value) and server.url in str(error.value)
    answered = server.completions
    generated = len(Recording.seen)
    port = server.server.server_address[1]
    server.close()
    restarted = JudgeServer(port)  # the server comes back on the same address
    try:
        results = _run(tmp_path, restarted.url, http_retries=1)
        # the cell being judged is not generated again (only the cell never reached is generated)
        assert generated == 6 and sum("# Past post questions" not in p for p in Recording.seen) == 6
        first = json.loads((tmp_path / "runs" / results[0]["cell_id"] / "timing.json").read_text())
        judge = first["judging"]["judges"][0]
        # every answer given before the kill is reused (the batch in flight was kept by the openai
        # generator's response cache); the server is only asked what it never answered
        assert judge["generator"]["cache_hits"] == answered
        assert restarted.completions == judge["generator"]["requests_sent"] == judge["calls"] - answered
    finally:
        restarted.close()
