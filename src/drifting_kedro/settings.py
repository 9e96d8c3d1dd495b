"""Project settings: configuration environments and the hooks that report where outputs went."""

from drifting_kedro.hooks import RunSummaryHooks

HOOKS = (RunSummaryHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
