"""A real vLLM OpenAI-compatible server serving SmolLM2 (the module-scoped ``server`` fixture,
registered by ``tests/conftest.py``; skips without ``.venv-vllm``) and a small real HTTP proxy on
127.0.0.1 in front of it that counts requests and injects faults. Used by
``e2e/test_openai_server.py`` and ``e2e/test_judge_vllm_server.py``."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from openai_fake import send_json
from vllm_env import Server, engine_env, require_vllm

MODEL = "smollm2-135m-instruct"
STALL = 30  # seconds a stalled answer hangs; the client's timeout (20 s) gives up first
# The timeout must also outlast real generations on a busy 2-core machine.


class Proxy:
    """A forwarding HTTP proxy: records each completion request (time, path, auth header) and
    serves queued faults instead of forwarding: ``429`` (Retry-After: 1), ``500``, ``stall``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[str] = []
        self.log: list[tuple[float, str, str]] = []
        self.answers: list[tuple[float, int]] = []
        self.on_request = None
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _relay(self, method: str) -> None:
                import httpx

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    if method == "POST":
                        proxy.log.append((time.monotonic(), self.path, self.headers.get("Authorization", "")))
                    fault = proxy.faults.pop(0) if proxy.faults and method == "POST" else None
                    hook = proxy.on_request
                if hook is not None and method == "POST":
                    hook(len(proxy.log))
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"})
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if fault == "stall":
                    time.sleep(STALL)
                    return self._send(503, b"{}")
                try:
                    response = httpx.request(
                        method,
                        proxy.upstream + self.path.removeprefix("/v1"),
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=600,
                    )
                except httpx.HTTPError:
                    return self._send(502, b'{"error": {"message": "upstream down"}}')
                self._send(response.status_code, response.content)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                with proxy.lock:
                    proxy.answers.append((time.monotonic(), status))
                send_json(self, status, body, headers)

            def do_POST(self):
                self._relay("POST")

            def do_GET(self):
                self._relay("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        return len(self.log)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, session_lamp_home):
    """A real vLLM OpenAI-compatible server for SmolLM2, served under the model's alias (so the
    client finds the same tokenizer for prompt budgets)."""
    require_vllm()
    from lamp_plugins.models import materialize_smollm2

    os.environ["LAMP_MODEL_CACHE"] = str(session_lamp_home / "models")
    model_dir = materialize_smollm2()
    home = tmp_path_factory.mktemp("server-home")
    served = Server(model_dir, MODEL, engine_env(home, session_lamp_home / "models"), home / "server.log")
    served.start()
    yield served
    served.stop()
