"""Hooks: after a run, one line telling the user where outputs are and how to see them; after a
failure on an input that was never made, which pipeline makes it; the MLflow run named by what
it does, with its code version and dataset versions."""

import logging
from pathlib import Path

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError
from kedro.io.core import VersionNotFoundError
from kedro.pipeline import Pipeline

from drifting_kedro import run_metadata
from drifting_kedro.tracking import MlflowRunLogger

logger = logging.getLogger(__name__)

MISSING_INPUT_NOTE = "Missing input: "  # the CLI shows a note with this prefix as the error
DEFAULT_RUN_ENV = "local"  # the env `kedro run` uses when none is given (on top of base)

# Catalog entries that tell what a run does, and ingest's manifest of what it read.
TRAINED = "policy_checkpoint"
EVALUATED = "evaluation_summary"
MANIFEST = "frames"  # dataset -> {episodes, frames, ...}


class RunSummaryHooks:
    @hook_impl
    def after_pipeline_run(self, run_params: dict) -> None:
        env = run_params.get("env") or DEFAULT_RUN_ENV
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


class RunMetadataHooks:
    """Names and tags the MLflow run kedro-mlflow started, and logs the datasets it used.

    Datasets come from ingest's frame-store manifest: right after ingest when the run ingests
    (its roots exist then), else at the start, from the manifest an earlier run left. A run that
    only evaluates is named after the checkpoint it scores once a node has loaded it.
    """

    def __init__(self) -> None:
        self._run: MlflowRunLogger | None = None
        self._checkpoint_unnamed = False

    @hook_impl(trylast=True)  # after kedro-mlflow's hook, which starts the run
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog) -> None:
        active = mlflow.active_run()
        if active is None:  # tracking is disabled for this pipeline
            self._run = None
            return
        self._run = MlflowRunLogger(active.info.run_id, mlflow.get_tracking_uri())
        self._project_path = Path(run_params.get("project_path") or ".")
        self._parameters = catalog.get("parameters").load()  # not logged as a pipeline load
        self._label = (
            run_metadata.pipeline_label(run_params.get("pipeline_names")),
            run_params.get("env") or DEFAULT_RUN_ENV,
        )
        outputs = pipeline.all_outputs()
        trains, evaluates = TRAINED in outputs, EVALUATED in outputs
        self._context = "training" if trains else "evaluation" if evaluates else "preprocessing"
        self._checkpoint_unnamed = evaluates and not trains
        policy = []
        if trains:
            trainer = self._parameters["train"]["trainer"]
            policy.append(run_metadata.policy_label(trainer["head"], trainer["max_steps"]))
        self._set_name(run_metadata.run_name(*self._label, *policy))
        self._run.set_tags(
            {
                **run_metadata.git_tags(self._project_path),
                "kedro.pipeline": self._label[0],
                "kedro.env": self._label[1],
            }
        )
        if MANIFEST not in outputs and catalog.exists(MANIFEST):
            self._log_datasets(catalog.get(MANIFEST).load())

    @hook_impl
    def after_node_run(self, inputs: dict, outputs: dict) -> None:
        if self._run is None:
            return
        if MANIFEST in outputs:
            self._log_datasets(outputs[MANIFEST])
        if self._checkpoint_unnamed and TRAINED in inputs:
            self._name_evaluated_checkpoint(inputs[TRAINED])

    def _set_name(self, name: str) -> None:
        self._run.set_name(name)
        logger.info("MLflow run %s is named '%s'", self._run.run_id, name)

    def _log_datasets(self, manifest: dict[str, dict]) -> None:
        sources = run_metadata.configured_sources(self._parameters)
        versions = run_metadata.dataset_versions(sources, manifest, self._project_path)
        self._run.log_dataset_versions(versions, self._context)

    def _name_evaluated_checkpoint(self, policy_checkpoint: dict) -> None:
        """`evaluate.checkpoint` when it names a kept file, else the catalog's checkpoint."""
        kept = self._parameters.get("evaluate", {}).get("checkpoint")
        checkpoint = run_metadata.peek_checkpoint(kept) if kept else policy_checkpoint
        policy, tags = run_metadata.checkpoint_facts(checkpoint)
        self._set_name(run_metadata.run_name(*self._label, policy))
        self._run.set_tags(tags)
        self._checkpoint_unnamed = False


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
