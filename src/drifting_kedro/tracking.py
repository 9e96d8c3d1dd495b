"""Writing into an existing MLflow run by id: the torchrun ranks' metrics and the run's description.

The trainer is handed a `MetricLogger`; on rank 0 it is an `MlflowRunLogger` attached to the
Kedro session's run through MLFLOW_RUN_ID / MLFLOW_TRACKING_URI, so training curves land in the
same MLflow run as the pipeline's parameters. The project's hooks use the same logger to name the
run and log its dataset versions (`run_metadata`). No new run is ever started here, and nothing is
written into a run that has ended: a trainer outliving its Kedro session stops instead.
"""

import json
import logging
import os
from typing import Protocol

from drifting_kedro.run_metadata import DatasetVersion

logger = logging.getLogger(__name__)


class MetricLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_params(self, params: dict[str, object]) -> None: ...


class NullLogger:
    """For ranks other than 0 and for runs outside MLflow."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        del metrics, step

    def log_params(self, params: dict[str, object]) -> None:
        del params


class RunEndedError(RuntimeError):
    """The MLflow run this trainer logs into is no longer RUNNING."""


class MlflowRunLogger:
    """Logs into an existing MLflow run by id: never creates one, never writes into an ended one."""

    def __init__(self, run_id: str, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        self._check_running()
        timestamp = _now_ms()
        batch = [Metric(_safe_key(k), float(v), timestamp, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        self._check_running()
        batch = [Param(_safe_key(k), str(v)[:6000]) for k, v in params.items()]
        self.client.log_batch(self.run_id, params=batch)

    def set_name(self, name: str) -> None:
        self._check_running()
        self.client.update_run(self.run_id, name=name)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._check_running()
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dataset_versions(self, versions: list[DatasetVersion], context: str) -> None:
        """Each dataset as an MLflow dataset input (`context`: training, evaluation...), its
        episode and frame counts as the profile the UI shows beside the digest."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        self._check_running()
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        inputs = [DatasetInput(_dataset_entity(version), tags) for version in versions]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def _check_running(self) -> None:
        status = self.client.get_run(self.run_id).info.status
        if status != "RUNNING":
            raise RunEndedError(
                f"MLflow run {self.run_id} is {status}, no longer RUNNING: the Kedro session that "
                "launched this trainer has ended, so the trainer stops instead of logging into it"
            )


def logger_from_environment(rank: int) -> MetricLogger:
    """Rank 0 logs to the run named by MLFLOW_RUN_ID when it is set; everyone else is silent."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if rank != 0 or not run_id:
        return NullLogger()
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    logger.info("Logging metrics into MLflow run %s at %s", run_id, uri)
    return MlflowRunLogger(run_id, uri)


def _dataset_entity(version: DatasetVersion):
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.entities import Dataset

    if version.on_hub:
        source_type, source = "hugging_face", HuggingFaceDatasetSource(version.location).to_json()
    else:  # what MLflow's own local source writes
        source_type, source = "local", json.dumps({"uri": version.location})
    return Dataset(
        name=version.name,
        digest=version.digest,
        source_type=source_type,
        source=source,
        profile=json.dumps({"episodes": version.episodes, "frames": version.frames}),
    )


def _safe_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces; map anything else to "_".
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
