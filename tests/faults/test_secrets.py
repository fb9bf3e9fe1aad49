"""Secrets are never written: one notion of a secret setting (lamp_harness/base/secrets.py), refused as an
argument through every input path, and masked everywhere the harness writes or prints. The
end-to-end test plants secrets through every path against a real HTTP server on 127.0.0.1 and
greps every byte of the run folder, the leaderboard outputs and $LAMP_HOME."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lamp_cli import demo_run

from lamp_harness.base.secrets import has_url_credentials, is_secret_name, redact, redact_text, remember

SECRET = "sk-planted-0123456789abcdef"  # an argument's value (refused)
URL_SECRET = "urlpass-0123456789"  # inside base_url (refused)
ENV_SECRET = "sk-env-9876543210fedcba"  # in the environment via api_key_env (sent, never written)
FILE_SECRET = "sk-in-a-file-55555"  # in a matrix file (refused)
PLANTED = (SECRET, URL_SECRET, ENV_SECRET, FILE_SECRET)


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "API-KEY",
        "openai_api_key",
        "key",
        "secret_key",
        "hf_token",
        "token",
        "access_token",
        "password",
        "db_passwd",
        "client_secret",
        "credentials",
        "authorization",
        "OPENAI_API_KEY",
        "HF_TOKEN",
    ],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "api_key_env",
        "max_new_tokens",
        "max_input_tokens",
        "tokenizer",
        "pad_token_id",
        "eos_token_ids",
        "token_type_ids",
        "tpm",
        "temperature",
        "base_url",
        "keys",
        "monkey",
        "TOKENIZERS_PARALLELISM",
        "k1",
        "detokenize",
        "pooling_mode_cls_token",
        "token_logprobs",
        "stop_token_ids",
        "token_budget",
    ],
)
def test_names_that_are_not_secrets(name):
    assert not is_secret_name(name)


def test_redaction_masks_names_urls_bearers_and_registered_values():
    remember("registered-value-42")
    assert redact_text("see http://user:pw@host:8000/v1 now") == "see http://***@host:8000/v1 now"
    assert redact_text("Authorization: Bearer sk-abc123456") == "Authorization: *** ***"
    assert redact_text("label none / m / api_key=sk-1 / hf_token: x1") == "label none / m / api_key=*** / hf_token: ***"
    assert redact_text("the server said registered-value-42.") == "the server said ***."
    assert (
        redact_text("basic retrieval, max_new_tokens=12, Bearer token") == "basic retrieval, max_new_tokens=12, Bearer token"
    )
    assert redact(
        {
            "generator": {"api_key": "x", "base_url": "https://a:b@h/v1", "api_key_env": "MY_KEY"},
            "args": (("api_key", "v"), ("k1", "1.2")),
        }
    ) == {
        "generator": {"api_key": "***", "base_url": "https://***@h/v1", "api_key_env": "MY_KEY"},
        "args": (("api_key", "***"), ("k1", "1.2")),
    }
    assert has_url_credentials("http://u@h/") and not has_url_credentials("http://h/v1")


def _refused(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    # Besides the run's own status lines ("lamp run: ...", "started ..."), one line: the error.
    assert [line for line in lines if not line.startswith(("lamp run:", "started "))] == lines[-1:], err
    assert lines[-1].startswith("Error: "), err
    return lines[-1]


def _all_bytes(*roots: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for root in roots if root.exists() for p in sorted(root.rglob("*")) if p.is_file()]


@pytest.mark.slow
def test_a_secret_planted_through_every_input_path_is_never_written_or_printed(cli, fake, tmp_path, lamp_home, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    base = demo_run(generator="openai:fake-model", limit=2, out=out)
    printed: list[str] = []

    def refused(*args: str) -> str:
        code, stdout, err = cli(*args)
        printed.extend([stdout, err])
        return _refused(code, err)

    # 1. As arguments: refused in one line pointing to api_key_env, before anything is written.
    for arg in (f"api_key={SECRET}", f"openai:api-key={SECRET}", f"hf_token={SECRET}", f"password={SECRET}"):
        line = refused(*base, "--generator-arg", f"base_url={fake.url}", "--generator-arg", arg)
        assert "api_key_env" in line and "environment variable" in line
    line = refused(
        *base,
        "--retriever",
        "bm25",
        "--personalizer",
        "ipa",
        "--retriever-arg",
        f"bm25:token={SECRET}",
        "--generator-arg",
        f"base_url={fake.url}",
    )
    assert "--retriever-arg token=***" in line
    # 2. Credentials inside base_url (argument, or $OPENAI_BASE_URL).
    cred_url = fake.url.replace("http://", f"http://me:{URL_SECRET}@")
    line = refused(*base, "--generator-arg", f"base_url={cred_url}")
    assert "credentials" in line and "***@" in line
    monkeypatch.setenv("OPENAI_BASE_URL", cred_url)
    line = refused(*base)
    assert "$OPENAI_BASE_URL" in line and "credentials" in line
    monkeypatch.delenv("OPENAI_BASE_URL")
    # 3. A matrix file: refused naming the file and the line.
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(f'task = ["lamp-7"]\n\n[generator-args]\nbase_url = "{fake.url}"\napi_key = "{FILE_SECRET}"\n')
    line = refused(
        "run",
        "--config",
        str(matrix),
        "--data",
        "demo",
        "--limit",
        "2",
        "--generator",
        "openai:fake-model",
        "--out",
        str(out),
        "--quiet",
    )
    assert f"{matrix}:5" in line
    nested = tmp_path / "nested.toml"
    nested.write_text(f'task = ["lamp-7"]\n\n[retriever-args.bm25]\nk1 = 1.2\nsecret = "{FILE_SECRET}"\n')
    assert f"{nested}:5" in refused("run", "--config", str(nested), "--data", "demo", "--out", str(out))
    assert fake.requests == [] and not list(out.glob("*/config.json"))

    # 4. The environment, through api_key_env: sent as the header, and the server echoes it back.
    monkeypatch.setenv("MY_LAMP_KEY", ENV_SECRET)
    env_args = (
        "--generator-arg",
        f"base_url={fake.url}",
        "--generator-arg",
        "api_key_env=MY_LAMP_KEY",
        "--generator-arg",
        "backoff=0",
    )
    fake.faults = [("echo", 401)]
    line = refused(*base, *env_args)
    assert "HTTP 401" in line and "***" in line and "MY_LAMP_KEY" in line
    fake.faults = [("echo", 200)]  # an answer quoting the key: the prediction keeps it masked
    code, stdout, err = cli(*base, *env_args, "--personalizer", "none,ipa", "--retriever", "bm25", "--reporter", "mlflow")
    printed.extend([stdout, err])
    assert code == 0, err
    assert all(r["headers"].get("Authorization") == f"Bearer {ENV_SECRET}" for r in fake.requests[-4:])
    raws = [json.loads(line)["raw"] for p in out.glob("*/predictions.jsonl") for line in p.read_text().splitlines()]
    assert "you sent api-key ***" in raws
    # A run folder written before secrets were masked: the leaderboard and reporters mask it.
    old = next(out.glob("lamp-7_none-*/config.json")).parent  # the refused 401 run left only a lock folder
    legacy = out / "legacy-cell"
    shutil.copytree(old, legacy)
    config = json.loads((legacy / "config.json").read_text())
    config["generator"]["request_args"]["api_key"] = SECRET
    config["label"] += f" / api_key={SECRET}"
    config["cell_id"] = "legacy-cell"
    (legacy / "config.json").write_text(json.dumps(config))
    metrics = json.loads((legacy / "metrics.json").read_text())
    for checksum in ("config", "scores"):  # a folder that old records no checksums of its files
        metrics.pop(checksum, None)
    (legacy / "metrics.json").write_text(json.dumps(metrics))
    boards = tmp_path / "boards"
    boards.mkdir()
    for fmt, name in (("markdown", "board.md"), ("html", "board.html"), ("json", "board.json"), ("csv", "board.csv")):
        code, stdout, err = cli("leaderboard", str(out), "--format", fmt, "--out", str(boards / name))
        printed.extend([stdout, err])
        assert code == 0, err
    assert "api_key=***" in (boards / "board.md").read_text()  # the legacy cell is shown, masked
    shutil.rmtree(legacy)  # planted by the test itself, not written by the harness

    # Every byte the harness wrote or printed.
    assert (out / "mlflow.db").exists() and (boards / "board.html").exists()
    assert any((lamp_home / "openai-cache.sqlite").exists() for _ in [0])
    for secret in PLANTED:
        for text in printed:
            assert secret not in text
        for path, data in _all_bytes(out, boards, lamp_home, tmp_path / "mlruns"):
            assert secret.encode() not in data, (secret, path)
