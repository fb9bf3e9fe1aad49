"""The opt-in experiment-tracker reporters, against the real libraries: MLflow with its local SQLite
store (no server) and W&B in offline mode (local files only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lamp_cli import demo_run
from lamp_cli import lamp_output as lamp

RUN = demo_run("--personalizer", "none,ipa", "--retriever", "bm25", generator="toy-words", limit=6)


@pytest.mark.slow
def test_mlflow_logs_one_run_per_cell_with_params_metrics_intervals_and_artifacts(toys, tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "my-experiment"
    code, _, err = lamp(capsys, *RUN, "--out", str(out), "--reporter", "mlflow")
    assert code == 0, err
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("my-experiment")
    runs = client.search_runs([experiment.experiment_id])
    cells = {
        json.loads((d / "config.json").read_text())["cell_id"]: d for d in out.iterdir() if (d / "config.json").is_file()
    }
    assert sorted(r.data.tags["lamp_cell_id"] for r in runs) == sorted(cells)
    for run in runs:
        cell = cells[run.data.tags["lamp_cell_id"]]
        config = json.loads((cell / "config.json").read_text())
        metrics = {m["name"]: m for m in json.loads((cell / "metrics.json").read_text())["metrics"]}
        assert run.info.run_name == config["label"] and run.info.status == "FINISHED"
        assert run.data.params["generator.model"] == "toy"
        assert run.data.params["personalizer.name"] == config["personalizer"]["name"]
        assert run.data.params["data.checksums.dev_outputs.json"] == config["data"]["checksums"]["dev_outputs.json"]
        assert run.data.metrics["rouge-1"] == pytest.approx(metrics["rouge-1"]["value"])
        assert run.data.metrics["rouge-1.ci_low"] == pytest.approx(metrics["rouge-1"]["ci_low"])
        assert run.data.metrics["rouge-L.ci_high"] == pytest.approx(metrics["rouge-L"]["ci_high"])
        assert "timing.wall_s" in run.data.metrics
        names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "cell")}
        assert {"predictions.jsonl", "metrics.json", "config.json", "scores.json"} <= names
        assert (out / "mlruns").is_dir()  # artifacts beside the store, not in the current folder
        local = client.download_artifacts(run.info.run_id, "cell/predictions.jsonl", str(tmp_path / run.info.run_id))
        assert Path(local).read_bytes() == (cell / "predictions.jsonl").read_bytes()

    # Enabled from the environment; a rerun of the finished matrix logs nothing twice.
    monkeypatch.setenv("LAMP_REPORTERS", "mlflow")
    code, _, err = lamp(capsys, *RUN, "--out", str(out))
    assert code == 0, err
    assert len(client.search_runs([experiment.experiment_id])) == len(cells)


@pytest.mark.slow
def test_mlflow_from_a_matrix_file_and_an_explicit_tracking_uri(toys, tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root for this store is ./mlruns
    matrix = tmp_path / "matrix.toml"
    matrix.write_text('task = "lamp-7"\ndata = "demo"\ngenerator = "toy-words"\nlimit = 4\nreporter = ["mlflow"]\n')
    code, _, err = lamp(capsys, "run", "--config", str(matrix), "--out", str(tmp_path / "runs"), "--quiet")
    assert code == 0, err
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("runs")
    assert len(MlflowClient(tracking_uri=uri).search_runs([experiment.experiment_id])) == 1
    assert not (tmp_path / "runs" / "mlflow.db").exists()


@pytest.mark.slow
def test_wandb_offline_writes_one_local_run_per_cell(toys, tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    import pytest_socket

    # W&B's local service talks over a unix socket: still nothing leaves the machine.
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1", "localhost"], allow_unix_socket=True)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    out = tmp_path / "runs"
    code, _, err = lamp(capsys, *RUN, "--out", str(out), "--reporter", "wandb")
    assert code == 0, err
    offline = sorted((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 2
    # Offline runs are W&B transaction logs (what `wandb sync` uploads); their records hold the
    # config, history and summary as protobuf with JSON values.
    logs = [next(folder.glob("run-*.wandb")).read_bytes() for folder in offline]
    for cell in (d for d in out.iterdir() if (d / "metrics.json").is_file()):
        config = json.loads((cell / "config.json").read_text())
        (log,) = [b for b in logs if config["cell_id"].encode() in b]
        assert config["label"].encode() in log and config["data"]["checksums"]["dev_outputs.json"].encode() in log
        for metric in json.loads((cell / "metrics.json").read_text())["metrics"]:
            for key in (metric["name"], f"{metric['name']}.ci_low", f"{metric['name']}.ci_high"):
                assert key.encode() in log
        assert b"lamp-cell" in log  # the cell's files, as an artifact


def test_missing_library_and_unknown_reporter_are_one_line_errors(toys, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, _, err = lamp(capsys, *RUN, "--out", str(tmp_path / "a"), "--reporter", "mlflow")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs the mlflow-skinny package" in err and "pip install 'lamp-harness[mlflow]'" in err
    assert not (tmp_path / "a").exists()  # refused before any work
    code, _, err = lamp(capsys, *RUN, "--out", str(tmp_path / "b"), "--reporter", "tensorboard")
    assert code == 2 and "Unknown reporter 'tensorboard'. Available: mlflow, wandb" in err


def test_reporters_are_listed_as_plugins(capsys):
    code, out, _ = lamp(capsys, "plugins")
    assert code == 0 and "reporter" in out and "mlflow" in out and "wandb" in out
