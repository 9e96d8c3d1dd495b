"""Project settings: configuration environments, the run report and MLflow run metadata, the
per-stage data locks."""

import warnings

from drifting_kedro.hooks import DEFAULT_RUN_ENV, RunMetadataHooks, RunSummaryHooks
from drifting_kedro.stage_locks import StageLockHooks

# Kedro imports this module before anything else of the project, and before its plugins: the
# place to keep third-party notices a user cannot act on out of every run's output. Kedro and
# kedro-mlflow still call OmegaConf's renamed `register_new_resolver`.
warnings.filterwarnings("ignore", r"register_new_resolver\(\) is deprecated", UserWarning, "kedro")


def _import_kedro_mlflow_quietly() -> None:
    """Import kedro-mlflow without MLflow's notice that its pipeline model has no type hints.

    The project never logs that model, and MLflow raises the notice under a filter of its own
    that no warning filter overrides, so only not showing it helps; notices about the project's
    own models still show.
    """
    show = warnings.showwarning

    def show_unless_type_hint_notice(message, *args, **kwargs) -> None:
        if "Add type hints to the `predict` method" not in str(message):
            show(message, *args, **kwargs)

    warnings.showwarning = show_unless_type_hint_notice
    try:
        import kedro_mlflow.mlflow  # noqa: F401
    finally:
        if warnings.showwarning is show_unless_type_hint_notice:  # else logging took it over
            warnings.showwarning = show


_import_kedro_mlflow_quietly()

HOOKS = (RunSummaryHooks(), StageLockHooks(), RunMetadataHooks())

# Parameters merge leaf by leaf (lists are replaced whole): an env file or a `--params`
# override changes the keys it names and keeps base's others. Kedro's default replaces a
# whole top-level entry, so `--env=<env> --params=train.trainer.max_steps=...` dropped the rest
# of `train` whenever the env had parameter files of its own.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": DEFAULT_RUN_ENV,
    "merge_strategy": {"parameters": "soft"},
}
