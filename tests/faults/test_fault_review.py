"""Regressions from an independent fault-injection review of secrets and the openai generator:
each case is a fault or bad input that went wrong (a secret printed or recorded, a traceback, a
bad value sent), replayed through the real ``lamp`` CLI against a real HTTP server on 127.0.0.1.
Each asserts the exit code, one line, no traceback and that the planted secret appears in nothing
printed or written."""

from __future__ import annotations

import pytest
from lamp_plugins.openai_generator import check_base_url
from openai_fake import openai_run

from lamp_harness.base.secrets import redact_text

SECRET = "sk-review-planted-31415926"


def _run(cli, url: str, out, *extra: str, model: str = "fake-model"):
    return cli(*openai_run(url, out, *extra, model=model))


def _one_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith(("lamp run:", "started "))] == lines[-1:], err
    assert lines[-1].startswith("Error: "), err
    return lines[-1]


def _nowhere(secret: str, printed: str, *roots) -> None:
    assert secret not in printed
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()):
            assert secret.encode() not in path.read_bytes(), path


def test_a_key_in_a_url_query_or_path_is_masked_but_prose_placeholders_are_not():
    assert redact_text(f"http://h/v1?key={SECRET}&x=1").startswith("http://h/v1?key=***")
    assert redact_text(f"http://h/v1/key={SECRET}") == "http://h/v1/key=***"
    assert redact_text("pass --generator-arg KEY=VALUE") == "pass --generator-arg KEY=VALUE"


@pytest.mark.parametrize("name", ["api.key", "Api Key", "cookie", "ssh_passphrase"])
def test_secret_names_spelled_with_dots_or_spaces_and_other_credentials_are_refused(cli, fake, tmp_path, name):
    line = _one_line(*_run(cli, fake.url, tmp_path / "runs", "--generator-arg", f"{name}={SECRET}")[::2])
    assert "api_key_env" in line and SECRET not in line and fake.requests == []


@pytest.mark.parametrize("tail", [f"?key={SECRET}", f"?sig=1&key={SECRET}", f"#{SECRET}", f"?{SECRET}"])
def test_a_base_url_error_never_repeats_its_query_or_fragment(tail):
    with pytest.raises(Exception) as raised:
        check_base_url("http://127.0.0.1:8000/v1" + tail, "argument base_url")
    assert SECRET not in str(raised.value) and "query or fragment" in str(raised.value)


def test_a_model_named_like_the_key_is_masked_in_every_printed_line(cli, fake, tmp_path, lamp_home, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code, out, err = _run(cli, fake.url, tmp_path / "runs", model=SECRET)  # a key pasted as the model
    assert code == 0, err
    assert fake.requests and "***" in out + err
    _nowhere(SECRET, out + err, tmp_path / "runs", lamp_home)


def test_a_key_given_as_api_key_env_is_refused_in_one_line_and_never_written(cli, fake, tmp_path, lamp_home, monkeypatch):
    pasted = "sk_live_REVIEW_31415926"  # a valid variable name, but the key itself (and unset)
    monkeypatch.delenv(pasted, raising=False)
    code, out, err = _run(cli, fake.url, tmp_path / "runs", "--generator-arg", f"api_key_env={pasted}")
    line = _one_line(code, err)
    assert "api_key_env" in line and "not set" in line
    assert fake.requests == []
    _nowhere(pasted, out + err, tmp_path, lamp_home)


def test_an_answer_nested_too_deep_to_parse_is_retried_then_one_line(cli, fake, tmp_path, lamp_home):
    fake.always = ("json", "[" * 100_000 + "]" * 100_000)
    line = _one_line(*_run(cli, fake.url, tmp_path / "runs", "--generator-arg", "max_retries=1")[::2])
    assert "malformed answer" in line and "did not answer after 2 attempts" in line
    fake.always = None  # the server recovers: the rerun finishes
    code, _, err = _run(cli, fake.url, tmp_path / "runs")
    assert code == 0, err


@pytest.mark.parametrize("arg", ["temperature=nan", "top_p=inf", "presence_penalty=-Infinity"])
def test_non_finite_numbers_written_as_text_are_refused_before_any_request(cli, fake, tmp_path, arg):
    line = _one_line(*_run(cli, fake.url, tmp_path / "runs", "--generator-arg", arg)[::2])
    assert "not a finite number" in line and fake.requests == []


@pytest.mark.slow
def test_a_model_named_like_the_key_reaches_no_reporter(cli, fake, tmp_path, lamp_home, monkeypatch):
    """MLflow got the key in its run name and tags (the cell label), W&B in its metadata (the
    command line it records)."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["lamp", "run", "--generator", f"openai:{SECRET}"]  # what W&B reads as the command line
    monkeypatch.setattr("sys.argv", argv)
    code, out, err = _run(cli, fake.url, tmp_path / "runs", "--reporter", "mlflow,wandb", model=SECRET)
    assert code == 0, err
    assert (tmp_path / "runs" / "mlflow.db").is_file() and list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    import sys

    assert sys.argv == argv  # restored after W&B read it
    _nowhere(SECRET, out + err, tmp_path)
