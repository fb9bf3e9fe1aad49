"""Helpers for the tests that drive the real vLLM engine in ``.venv-vllm`` (built by
``scripts/setup-vllm.sh``): the virtualenv's commands, and a real OpenAI-compatible vLLM server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-vllm"
PYTHON = VENV / "bin" / "python"
LAMP = VENV / "bin" / "lamp"


def require_vllm() -> None:
    """Skip (with the reason and the fix) when ``.venv-vllm`` is not built."""
    if not LAMP.is_file() or not (VENV / ".lamp-engine").is_file():
        pytest.skip(".venv-vllm is absent: run `bash scripts/setup-vllm.sh` to test the vLLM engine")


def engine_env(lamp_home: Path, model_cache: Path) -> dict[str, str]:
    """Environment for a ``.venv-vllm`` subprocess: the test's LAMP_HOME, offline hub, no
    network, and vLLM's CPU engine kept small."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(
        LAMP_HOME=str(lamp_home),
        LAMP_MODEL_CACHE=str(model_cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_LOGGING_LEVEL="WARNING",
    )
    return env


def lamp_vllm(args: list[str], env: dict[str, str], timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """``.venv-vllm/bin/lamp ARGS``."""
    return subprocess.run([str(LAMP), *args], env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m vllm.entrypoints.openai.api_server`` (what ``vllm serve`` runs) on 127.0.0.1."""

    def __init__(self, model_dir: Path, name: str, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.model_dir = model_dir
        self.name = name
        self.env = env
        self.log = log
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 900) -> None:
        """Start and wait until ``/v1/models`` answers."""
        import httpx

        command = [
            str(PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--gpu-memory-utilization",
            "0.2",
            "--enforce-eager",
            "--block-size",
            "32",
            "--seed",
            "0",
        ]
        handle = open(self.log, "ab")  # noqa: SIM115 - the server writes to it until stop()
        self.process = subprocess.Popen(
            command, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with {self.process.returncode}: {self.log.read_text(errors='replace')[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM server did not start in {timeout:.0f} s")

    def stop(self) -> None:
        """Kill the server and its engine processes (its own session)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 9)
        self.process.wait(timeout=60)
        self.process = None


@contextlib.contextmanager
def serving(model_dir: Path, name: str, env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server(model_dir, name, env, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
