"""The ``hub`` data source against a real HTTP server on 127.0.0.1 that answers like the Hugging Face
hub (repository info, file tree, ``resolve`` downloads with ``Range``), serving small LongLaMP and
PersonaMem releases built here in their real layouts. Never the network."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

from lamp_harness.base.errors import LampError
from lamp_harness.inputs.data import resolve_dataset
from lamp_harness.plugin.contracts import RunContext
from lamp_harness.plugin.registry import host

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    """Files per repository, served in the hub's URL layout; ``cut`` drops the connection after
    that many bytes of the next file download (once), to test resuming."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[str] = []
        self.cut: int | None = None

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _files(self, repo):
                return hub.repos.get(repo)

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _json(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, body: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "datasets"]:
                    repo = "/".join(parts[2:4])
                    files = self._files(repo)
                    if files is None:
                        return self._json({"error": "Repository not found"}, 404)
                    if parts[4:5] == ["revision"]:
                        return self._json(
                            {
                                "id": repo,
                                "sha": COMMIT,
                                "private": False,
                                "siblings": [{"rfilename": name} for name in files],
                            }
                        )
                    if parts[4:5] == ["tree"]:
                        return self._json(
                            [
                                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                                for name, data in files.items()
                            ]
                        )
                if parts[:1] == ["datasets"] and "resolve" in parts:
                    at = parts.index("resolve")
                    repo, name = "/".join(parts[1:at]), "/".join(parts[at + 2 :])
                    files = self._files(repo) or {}
                    if name not in files:
                        self.send_response(404)
                        self.send_header("X-Error-Code", "EntryNotFound")
                        self.end_headers()
                        return
                    data = files[name]
                    start = 0
                    if self.headers.get("Range", "").startswith("bytes="):
                        start = int(self.headers["Range"][6:].split("-")[0])
                    self.send_response(206 if start else 200)
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data) - start))
                    if start:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.end_headers()
                    if body:
                        chunk = data[start:]
                        if hub.cut is not None:
                            chunk, hub.cut = chunk[: hub.cut], None
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            self.connection.close()
                            return
                        self.wfile.write(chunk)
                    return
                self.send_response(404)
                self.end_headers()

        return Handler


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LAMP_HUB_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield state
    server.shutdown()


def _parquet(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def _longlamp_rows(n: int):
    return [
        {
            "input": f'Generate the review text ... "Product {i}".',
            "output": f"A long review number {i}. " * 20,
            "reviewerId": f"u{i}",
            "profile": [
                {"overall": "5.0", "summary": f"s{j}", "description": f"d{j}", "reviewText": f"review {j} of user {i}"}
                for j in range(3)
            ],
        }
        for i in range(n)
    ]


def _personamem_files() -> dict[str, bytes]:
    chat = [{"role": "system", "content": "persona"}] + [
        {"role": "user" if i % 2 else "assistant", "content": f"MSG{i}"} for i in range(1, 12)
    ]
    contexts = (json.dumps({"c1": chat}) + "\n").encode()
    out = io.StringIO()
    writer = csv.DictWriter(
        out,
        [
            "question_id",
            "question_type",
            "user_question_or_message",
            "correct_answer",
            "all_options",
            "shared_context_id",
            "end_index_in_shared_context",
        ],
    )
    writer.writeheader()
    for q, end in enumerate([9, 3, 6]):
        writer.writerow(
            {
                "question_id": f"q{q}",
                "question_type": "recall_user_shared_facts",
                "user_question_or_message": f"Question {q}?",
                "correct_answer": "(b)",
                "all_options": repr([f"({x}) answer {x}" for x in "abcd"]),
                "shared_context_id": "c1",
                "end_index_in_shared_context": str(end),
            }
        )
    return {"questions_32k.csv": out.getvalue().encode(), "shared_contexts_32k.jsonl": contexts}


def _context(lamp_home):
    return RunContext(lamp_home=lamp_home)


def test_longlamp_download_converts_caches_and_works_offline(hub, lamp_home, monkeypatch) -> None:
    import huggingface_hub.constants as constants

    hub.repos["LongLaMP/LongLaMP"] = {
        "product_review_user/train-00000-of-00001.parquet": _parquet(_longlamp_rows(4)),
        "product_review_user/val-00000-of-00001.parquet": _parquet(_longlamp_rows(3)),
        "product_review_temporal/val-00000-of-00001.parquet": _parquet(_longlamp_rows(2)),
    }
    task = host().registry.create("task", "longlamp-review")
    data = resolve_dataset(task, data="hub", data_dir=None, split="dev", context=_context(lamp_home))
    assert len(data.examples) == 3 and data.source == "hub:LongLaMP/LongLaMP"
    assert data.examples[0].profile[0].get("reviewText") == "review 0 of user 0"
    downloads = [r for r in hub.requests if r.startswith("GET /datasets/")]
    assert downloads == [
        "GET /datasets/LongLaMP/LongLaMP/resolve/" + COMMIT + "/product_review_user/val-00000-of-00001.parquet"
    ]
    assert list((lamp_home / "hub").glob("datasets--LongLaMP--LongLaMP/snapshots/*/product_review_user/*"))
    # offline once cached: the converted files and the hub cache are enough
    (lamp_home / "data" / "hub" / "user" / "longlamp-review" / "dev_questions.json").unlink()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    again = resolve_dataset(task, data="hub", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))
    assert [e.gold for e in again.examples] == [e.gold for e in data.examples] and hub.requests == []
    # the temporal configuration is --scheme time
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    temporal = resolve_dataset(
        task, data="hub", data_dir=None, split="dev", scheme="time", context=RunContext(lamp_home=lamp_home)
    )
    assert len(temporal.examples) == 2


def test_offline_without_cache_is_one_line(hub, lamp_home, monkeypatch) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    task = host().registry.create("task", "longlamp-topic")
    with pytest.raises(LampError) as caught:
        resolve_dataset(task, data="hub", data_dir=None, split="dev", context=_context(lamp_home))
    assert "\n" not in str(caught.value) and "lamp data download" in str(caught.value)


def test_interrupted_download_resumes(hub, lamp_home) -> None:
    hub.repos["LongLaMP/LongLaMP"] = {
        "topic_writing_user/test-00000-of-00001.parquet": _parquet(
            [
                {
                    "input": "Generate the content for a reddit post x.",
                    "output": "y " * 500,
                    "profile": [{"summary": "s", "content": "c " * 300}],
                }
            ]
            * 20
        )
    }
    task = host().registry.create("task", "longlamp-topic")
    hub.cut = 1500
    try:
        resolve_dataset(task, data="hub", data_dir=None, split="test", context=_context(lamp_home))
    except LampError:
        pass  # the client may give up on the cut; the next call must finish from what it kept
    data = resolve_dataset(task, data="hub", data_dir=None, split="test", context=_context(lamp_home))
    assert len(data.examples) == 20
    ranges = [r for r in hub.requests if r.startswith("GET /datasets/")]
    assert len(ranges) >= 2


def test_personamem_from_the_hub_and_the_cli(hub, lamp_home, cli) -> None:
    hub.repos["bowen-upenn/PersonaMem"] = _personamem_files()
    code, out, err = cli("data", "download", "--task", "personamem-32k", "--split", "test")
    assert code == 0, err
    code, out, err = cli("data", "info", "personamem-32k")
    assert code == 0 and "bowen-upenn/PersonaMem" in out
    folder = lamp_home / "data" / "hub" / "user" / "personamem-32k"
    code, out, err = cli("data", "validate", str(folder), "--task", "personamem-32k")
    assert code == 0, out + err
    questions = json.loads((folder / "test_questions.json").read_text())
    assert [len(q["profile"]) and q["profile"][-1]["end"] for q in questions] == [3, 6, 9]
    assert all(f"MSG{end}" not in json.dumps(q) for q, end in zip(questions, [3, 6, 9], strict=True))
    code, out, err = cli("data", "download", "--task", "personamem-32k", "--split", "dev", "--data", "hub")
    assert code != 0 and "--split test" in (out + err)
