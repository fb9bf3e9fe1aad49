"""The ``mlflow`` reporter: one MLflow run per cell, under an experiment named after the run folder.

Enable it with ``lamp run --reporter mlflow`` (or ``reporter = ["mlflow"]`` in a matrix file, or
``LAMP_REPORTERS=mlflow``). Each MLflow run carries the cell's ``config.json`` as params (flat
``generator.model``-style keys), its metrics with their 95% intervals (``rouge-1``,
``rouge-1.ci_low``, ``rouge-1.ci_high``) and timing, tags (cell id, task, split, label), and the
cell's files (predictions, metrics, scores, config, timing) as artifacts.

Where it logs: ``MLFLOW_TRACKING_URI`` when set (a server, a ``file:`` store, a database), else a
SQLite store in the run folder (``sqlite:///RUNS/mlflow.db``, artifacts in ``RUNS/mlruns``; browse it with
``mlflow ui --backend-store-uri sqlite:///RUNS/mlflow.db``). A cell logged once is not logged again:
rerunning a finished matrix only adds the cells it has not seen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lamp_plugins.trackers import artifacts, cell_config, flatten, metric_values, require

from lamp_harness.hookspecs import hookimpl

_PARAM_BATCH = 100  # MLflow's limit of params per batch call
_PARAM_CHARS = 6000  # MLflow's limit of a param value


class MlflowReporter:
    """Logs each finished cell (also cells an earlier run finished) as one MLflow run."""

    def __init__(self) -> None:
        require("mlflow", "mlflow", "mlflow-skinny")
        self._client: Any = None
        self._experiment: str | None = None
        self.logged = 0

    @hookimpl
    def lamp_run_started(self, run: Any) -> None:
        from mlflow.tracking import MlflowClient

        out = Path(run.out_dir).resolve()
        configured = os.environ.get("MLFLOW_TRACKING_URI")
        self._client = MlflowClient(tracking_uri=configured or f"sqlite:///{out / 'mlflow.db'}")
        name = out.name
        experiment = self._client.get_experiment_by_name(name)
        # With the default store, artifacts live beside it in the run folder (MLflow's own default
        # would be ./mlruns in whatever folder the command ran from).
        location = None if configured else (out / "mlruns").as_uri()
        self._experiment = (
            experiment.experiment_id if experiment else self._client.create_experiment(name, artifact_location=location)
        )
        self.logged = 0

    @hookimpl
    def lamp_cell_finished(self, run: Any, cell: Any, metrics: list[Any], timing: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        if self._client is None:
            self.lamp_run_started(run)
        client, experiment = self._client, self._experiment
        seen = client.search_runs([experiment], filter_string=f"tags.lamp_cell_id = '{cell.cell_id}'", max_results=1)
        if seen:
            return
        tags = {
            "lamp_cell_id": cell.cell_id,
            "lamp_task": cell.task,
            "lamp_split": cell.split,
            "lamp_label": cell.label,
            "lamp_run_folder": str(Path(run.out_dir).resolve()),
        }
        created = client.create_run(experiment, run_name=cell.label, tags=tags)
        run_id = created.info.run_id
        try:
            params = [Param(k, v[:_PARAM_CHARS]) for k, v in sorted(flatten(cell_config(cell)).items())]
            for start in range(0, len(params), _PARAM_BATCH):
                client.log_batch(run_id, params=params[start : start + _PARAM_BATCH])
            stamp = created.info.start_time
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, stamp, 0) for k, v in metric_values(metrics, timing).items()],
                tags=[RunTag("lamp_skipped", str(bool(timing.get("skipped"))).lower())],
            )
            for path in artifacts(cell):
                client.log_artifact(run_id, str(path), artifact_path="cell")
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        self.logged += 1

    @hookimpl
    def lamp_run_finished(self, run: Any, results: list[dict[str, Any]]) -> None:
        if run.console is not None and self._client is not None:
            run.console.print(
                f"mlflow: logged {self.logged} cell(s) to experiment {Path(run.out_dir).resolve().name!r} "
                f"({self._client.tracking_uri})"
            )
