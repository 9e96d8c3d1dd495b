"""Metric logging for processes that Kedro does not run (the torchrun ranks).

The trainer is handed a `MetricLogger`; on rank 0 it is an `MlflowRunLogger` attached to the
Kedro session's run through MLFLOW_RUN_ID / MLFLOW_TRACKING_URI, so training curves land in the
same MLflow run as the pipeline's parameters. No new run is ever started here, and nothing is
written into a run that has ended: a trainer outliving its Kedro session stops instead.
"""

import logging
import os
from typing import Protocol

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


def _safe_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces; map anything else to "_".
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
