"""Project settings: configuration environments, the run report and the per-stage data locks."""

from drifting_kedro.hooks import RunSummaryHooks
from drifting_kedro.stage_locks import StageLockHooks

HOOKS = (RunSummaryHooks(), StageLockHooks())

# Parameters merge leaf by leaf (lists are replaced whole): an env file or a `--params`
# override changes the keys it names and keeps base's others. Kedro's default replaces a
# whole top-level entry, so `--env=<env> --params=train.trainer.max_steps=...` dropped the rest
# of `train` whenever the env had parameter files of its own.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
