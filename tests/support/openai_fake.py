"""A real OpenAI-compatible HTTP server on 127.0.0.1 (no model behind it) that injects faults.

It answers ``/v1/chat/completions`` and ``/v1/completions`` with a short text derived from the
prompt, ``/v1/models`` with ``models`` (any JSON), and records every request (method, path,
headers, body). ``faults`` is a queue of what to serve instead of the next completion answers:

- ``("json", payload)``: HTTP 200 with this JSON (malformed answers), sent as text when a string;
- ``("status", code, headers, body)``: that status, headers and body;
- ``("echo", code)``: that status with the request's ``Authorization`` header in the error
  message (with 200: a valid answer quoting its ``api-key`` header);
- ``("drip", seconds)``: a valid answer, one byte every ``seconds`` (headers included);
- ``("hang", seconds)``: nothing for ``seconds``, then a 503.

``always`` (a fault) is served once the queue is empty, for servers that stay broken.

The ``fake`` fixture (registered in ``conftest.py``) is a server that lives for one test;
``openai_run`` writes the ``lamp run`` arguments of the openai generator against one.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from lamp_cli import demo_run


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Answer ``handler``'s request with a JSON ``body`` (a client that gave up is not an error)."""
    try:
        handler.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except OSError:  # the client timed out and left
        pass


def answer_text(prompt: str) -> str:
    """What the fake model answers: deterministic, from the prompt's first words."""
    return "echo: " + " ".join(prompt.split()[:4])


class FakeOpenAI:
    """The server (see module doc); ``url`` is its API root, ``requests`` what it received."""

    def __init__(self, models: Any = None) -> None:
        self.models = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]} if models is None else models
        self.faults: list[tuple[Any, ...]] = []
        self.always: tuple[Any, ...] | None = None
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._record(self, b"")
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, json.dumps(fake.models).encode())
                return self._send(404, b'{"error": {"message": "no such route"}}')

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake._record(self, body)
                with fake.lock:
                    fault = fake.faults.pop(0) if fake.faults else fake.always
                if fault is None:
                    return self._send(200, fake._answer(self.path, body))
                kind = fault[0]
                if kind == "json":
                    payload = fault[1]
                    return self._send(200, payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
                if kind == "status":
                    _, code, headers, text = fault
                    return self._send(code, text.encode(), headers)
                if kind == "echo":
                    message = f"invalid credentials: Authorization: {self.headers.get('Authorization')}"
                    if fault[1] == 200:  # a "successful" answer quoting the headers it got
                        message = f"you sent api-key {self.headers.get('api-key')}"
                        choice = {"message": {"role": "assistant", "content": message}}
                        return self._send(200, json.dumps({"choices": [choice]}).encode())
                    return self._send(fault[1], json.dumps({"error": {"message": message}}).encode())
                if kind == "drip":
                    return self._drip(fake._answer(self.path, body), fault[1])
                if kind == "hang":
                    time.sleep(fault[1])
                    return self._send(503, b"{}")
                raise AssertionError(f"unknown fault {fault!r}")

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                send_json(self, status, body, headers)

            def _drip(self, body: bytes, pause: float) -> None:
                raw = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                try:
                    for i in range(len(raw)):
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up: what the test wants
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "headers": dict(handler.headers),
                    "body": json.loads(body) if body else None,
                }
            )

    @staticmethod
    def _answer(path: str, body: bytes) -> bytes:
        request = json.loads(body)
        if path.endswith("/chat/completions"):
            text = answer_text(request["messages"][-1]["content"])
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        else:
            text = answer_text(str(request["prompt"]))
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        usage = {"prompt_tokens": 7, "completion_tokens": len(text.split()), "total_tokens": 7 + len(text.split())}
        return json.dumps({"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}).encode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def completions(self) -> int:
        """How many completion requests (POST) arrived."""
        return sum(1 for r in self.requests if r["method"] == "POST")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    """A :class:`FakeOpenAI` server for one test, closed after it."""
    server = FakeOpenAI()
    yield server
    server.close()


def openai_run(url: str, out, *extra: str, model: str | None = "fake-model") -> tuple[str, ...]:
    """``lamp run`` of lamp-7 on the demo data (2 profiles) with the openai generator against the
    server at ``url`` (no backoff between retries), results to ``out``, then EXTRA; the generator
    is ``openai:MODEL``, or plain ``openai`` (the server's model) when ``model`` is None."""
    generator = f"openai:{model}" if model else "openai"
    return demo_run(
        "--generator-arg", f"base_url={url}", "--generator-arg", "backoff=0", *extra, generator=generator, limit=2, out=out
    )
