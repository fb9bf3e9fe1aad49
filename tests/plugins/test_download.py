"""The official-server data source against a local http.server on 127.0.0.1: a normal download, a
connection dropped mid-file and resumed with Range, an HTML page served with 200, a 404, offline."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lamp_tasks.download import NotFound, download_file, remote_folder

from lamp_harness.base.errors import LampError
from lamp_harness.base.io import file_sha256
from lamp_harness.cli import main
from lamp_harness.inputs.data import resolve_dataset
from lamp_harness.plugin.contracts import RunContext
from lamp_harness.plugin.registry import host


def _questions(n: int = 30) -> bytes:
    records = [
        {
            "id": f"31{i}",
            "input": f"Generate a headline for the following article: story {i} " * 3,
            "profile": [{"id": f"31{i}{j}", "title": f"Title {j}", "text": f"Text {j} " * 5} for j in range(3)],
        }
        for i in range(n)
    ]
    return json.dumps(records, indent=1).encode()


def _outputs(n: int = 30) -> bytes:
    return json.dumps({"task": "LaMP_4", "golds": [{"id": f"31{i}", "output": f"Headline {i}"} for i in range(n)]}).encode()


class Server:
    """Serves ``files`` (URL path -> bytes) with Range support; ``drop_once`` paths send half the
    body on their first request and close the connection; ``html`` paths answer 200 + HTML."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.html: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                outer.requests.append((path, self.headers.get("Range")))
                if path in outer.html:
                    body = b"<html><body>The page you asked for is not here.</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path not in outer.files:
                    self.send_error(404)
                    return
                body = outer.files[path]
                start = 0
                range_header = self.headers.get("Range")
                if range_header and range_header.startswith("bytes="):
                    start = int(range_header[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if path in outer.drop_once:
                    outer.drop_once.discard(path)
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    srv = Server()
    monkeypatch.setenv("LAMP_DATA_URL", srv.url)
    yield srv
    srv.close()


def _task(name: str):
    return host().registry.create("task", name)


def test_normal_download_into_cache_with_checksums(server, lamp_home):
    server.files["/LaMP_4/dev/dev_questions.json"] = _questions()
    server.files["/LaMP_4/dev/dev_outputs.json"] = _outputs()
    context = RunContext(lamp_home=lamp_home)
    dataset = resolve_dataset(_task("lamp-4"), data=None, data_dir=None, split="dev", context=context)
    assert len(dataset.examples) == 30 and dataset.examples[0].gold == "Headline 0"
    assert dataset.source == "lamp:user"
    folder = lamp_home / "data" / "lamp" / "user" / "lamp-4"
    recorded = json.loads((folder / "checksums.json").read_text())
    assert recorded["dev_questions.json"]["sha256"] == file_sha256(folder / "dev_questions.json")
    assert recorded["dev_questions.json"]["url"] == server.url + "LaMP_4/dev/dev_questions.json"
    assert dataset.checksums["dev_questions.json"] == recorded["dev_questions.json"]["sha256"]
    assert not list(folder.glob("*.part"))
    # the second use reads the cache: no new request
    before = len(server.requests)
    resolve_dataset(_task("lamp-4"), data="lamp", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))
    assert len(server.requests) == before


def test_dropped_connection_resumes_with_range(server, tmp_path):
    body = _questions(200)
    server.files["/f.json"] = body
    server.drop_once.add("/f.json")
    done = download_file(server.url + "f.json", tmp_path / "f.json", progress=False)
    assert (tmp_path / "f.json").read_bytes() == body
    assert done.size == len(body)
    ranges = [r for p, r in server.requests if p == "/f.json"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(body) // 2}-"
    assert not (tmp_path / "f.json.part").exists()


def test_interrupted_download_resumes_on_the_next_call(server, tmp_path):
    body = _questions(50)
    server.files["/f.json"] = body
    (tmp_path / "f.json.part").write_bytes(body[:1000])  # left by an earlier, interrupted run
    download_file(server.url + "f.json", tmp_path / "f.json", progress=False)
    assert (tmp_path / "f.json").read_bytes() == body
    assert server.requests == [("/f.json", "bytes=1000-")]


def test_html_page_with_status_200_is_rejected(server, lamp_home):
    server.html.add("/LaMP_4/dev/dev_questions.json")
    context = RunContext(lamp_home=lamp_home)
    with pytest.raises(LampError, match="HTML page instead of JSON") as info:
        resolve_dataset(_task("lamp-4"), data="lamp", data_dir=None, split="dev", context=context)
    assert "LaMP_4/dev/dev_questions.json" in str(info.value)
    folder = lamp_home / "data" / "lamp" / "user" / "lamp-4"
    assert not folder.exists() or not any(folder.iterdir())  # nothing half-written


def test_body_that_is_not_json_is_rejected(server, tmp_path):
    server.files["/f.json"] = b'[{"id": "1", "input": "trunc'
    with pytest.raises(LampError, match="not JSON"):
        download_file(server.url + "f.json", tmp_path / "f.json", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_404_is_a_one_line_error(server, tmp_path):
    with pytest.raises(NotFound, match=r"not found on the server \(HTTP 404\)") as info:
        download_file(server.url + "LaMP_9/dev/dev_questions.json", tmp_path / "x.json", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.json.part").exists()


def test_offline_names_url_and_alternatives(monkeypatch, lamp_home):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv("LAMP_DATA_URL", f"http://127.0.0.1:{port}/LaMP")
    with pytest.raises(LampError) as info:
        resolve_dataset(_task("lamp-7"), data=None, data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/LaMP/LaMP_7/dev/dev_questions.json" in message
    assert "--data-dir" in message and "--data demo" in message and "\n" not in message


def test_url_layout_movie_tagging_news_and_time_split(monkeypatch):
    monkeypatch.setenv("LAMP_DATA_URL", "https://example.org/LaMP")
    assert remote_folder(_task("lamp-2"), "dev", "user") == "https://example.org/LaMP/LaMP_2/new/dev/"
    assert remote_folder(_task("lamp-2-news"), "train", "user") == "https://example.org/LaMP/LaMP_2/train/"
    assert remote_folder(_task("lamp-2"), "test", "time") == "https://example.org/LaMP/time/LaMP_2/new/test/"
    assert remote_folder(_task("lamp-5"), "dev", "time") == "https://example.org/LaMP/time/LaMP_5/dev/"
    monkeypatch.delenv("LAMP_DATA_URL")
    assert remote_folder(_task("lamp-1"), "dev", "user") == "https://ciir.cs.umass.edu/downloads/LaMP/LaMP_1/dev/"


def test_lamp6_is_not_public(lamp_home):
    with pytest.raises(LampError, match="not public") as info:
        resolve_dataset(_task("lamp-6"), data="lamp", data_dir=None, split="dev", context=RunContext(lamp_home=lamp_home))
    assert "--data-dir" in str(info.value)


def test_without_download_a_missing_split_says_how_to_get_it(server, lamp_home):
    with pytest.raises(LampError, match="lamp data download --task lamp-4 --scheme time --split dev"):
        resolve_dataset(
            _task("lamp-4"),
            data="lamp",
            data_dir=None,
            split="dev",
            scheme="time",
            context=RunContext(lamp_home=lamp_home),
            download=False,
        )
    assert server.requests == []


def test_cli_download_time_split_test_has_no_golds(server, lamp_home, capsys):
    server.files["/time/LaMP_2/new/test/test_questions.json"] = _questions(3)
    main(["data", "download", "--task", "lamp-2", "--scheme", "time", "--split", "test"])
    assert [p for p, _ in server.requests] == ["/time/LaMP_2/new/test/test_questions.json"]
    folder = lamp_home / "data" / "lamp" / "time" / "lamp-2"
    assert sorted(p.name for p in folder.iterdir()) == ["checksums.json", "test_questions.json"]
    assert "test_questions.json" in capsys.readouterr().out


def test_cli_download_error_exits_2(server, capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "download", "--task", "lamp-4", "--split", "dev"])
    assert info.value.code == 2
    assert "HTTP 404" in capsys.readouterr().err
