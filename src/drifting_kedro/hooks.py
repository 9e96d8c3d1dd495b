"""Hooks: after a run, one line telling the user where outputs are and how to see them."""

import logging

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class RunSummaryHooks:
    @hook_impl
    def after_pipeline_run(self, run_params: dict) -> None:
        env = run_params.get("env") or "local"
        logger.info(
            "Done (env=%s). Outputs are under data/ (versioned ones in timestamped folders); "
            "open the runs with: mlflow ui --backend-store-uri sqlite:///mlflow.db   "
            "and the graph with: kedro viz run",
            env,
        )
