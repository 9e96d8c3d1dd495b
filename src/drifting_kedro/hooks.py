"""Hooks: after a run, one line telling the user where outputs are and how to see them; after a
failure on an input that was never made, which pipeline makes it."""

import logging

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError
from kedro.io.core import VersionNotFoundError
from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

MISSING_INPUT_NOTE = "Missing input: "  # the CLI shows a note with this prefix as the error


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

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict, pipeline: Pipeline, catalog
    ) -> None:
        """Add a note to a failed load of a missing input, naming what makes it.

        On a fresh clone `kedro run --pipeline=train` fails loading `unified_actions`, which
        only `precompute` writes; the note lists every missing input of the pipeline run.
        """
        try:
            note = missing_input_note(error, run_params.get("env"), pipeline, catalog)
        except Exception:  # a report must never hide the error it reports on
            logger.debug("No missing-input note", exc_info=True)
            return
        if note:
            error.add_note(note)


def missing_input_note(
    error: BaseException, env: str | None, pipeline: Pipeline, catalog
) -> str | None:
    """When loading a missing input failed: the missing inputs and the command that makes them.

    One pipeline that makes them all is named if there is one, else one per input; those whose
    own inputs exist and, among them, the smallest are preferred (`precompute` on a fresh clone,
    `action_mapping` when only its output is gone).
    """
    from kedro.framework.project import pipelines

    exists: dict[str, bool] = {}

    def absent(name: str) -> bool:
        if name.startswith("params:") or name == "parameters" or name not in catalog:
            return False
        if name not in exists:
            exists[name] = _exists(catalog, name)
        return not exists[name]

    def makers(names: list[str]) -> list[str]:
        found = [
            (key, stage)
            for key, stage in pipelines.items()
            if key != "__default__" and set(names) <= stage.all_outputs()
        ]
        found.sort(key=lambda item: (any(map(absent, item[1].inputs())), len(item[1].nodes)))
        return [key for key, _ in found]

    missing = [name for name in sorted(pipeline.inputs()) if absent(name)]
    failed = [str(e) for e in _chain(error) if isinstance(e, DatasetError | FileNotFoundError)]
    if not any(name in text for name in missing for text in failed):
        return None
    common = makers(missing)
    groups: dict[str | None, list[str]] = {}
    for name in missing:
        key = (common or makers([name]) or [None])[0]
        filepath = getattr(catalog.get(name), "_filepath", None)
        groups.setdefault(key, []).append(f"{name} ({filepath})" if filepath else name)
    prefix = f"kedro run --env={env}" if env else "kedro run"
    return MISSING_INPUT_NOTE + "; ".join(
        f"{', '.join(names)} {'does' if len(names) == 1 else 'do'} not exist yet: "
        + (f"run `{prefix} --pipeline={key}` first" if key else "no pipeline makes it")
        for key, names in groups.items()
    )


def _exists(catalog, name: str) -> bool:
    """Whether a dataset holds data; a versioned one that cannot tell, whether it has a version."""
    dataset = catalog.get(name)
    if type(dataset)._exists is not AbstractDataset._exists:
        return catalog.exists(name)
    if isinstance(dataset, AbstractVersionedDataset):
        try:
            dataset.resolve_load_version()
        except VersionNotFoundError:
            return False
    return True  # cannot tell: never reported missing


def _chain(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__
