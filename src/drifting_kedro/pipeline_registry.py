"""Project pipelines: six stages, the `precompute` composite, and `__default__` running all."""

from kedro.pipeline import Pipeline

# Kedro 1.x loads pipelines lazily, so composites import the modules they join explicitly.
from drifting_kedro.pipelines import (
    action_mapping,
    evaluate,
    features,
    ingest,
    normalization,
    train,
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    stages = {
        "ingest": ingest.create_pipeline(),
        "action_mapping": action_mapping.create_pipeline(),
        "normalization": normalization.create_pipeline(),
        "features": features.create_pipeline(),
        "train": train.create_pipeline(),
        "evaluate": evaluate.create_pipeline(),
    }
    precompute = (
        stages["ingest"] + stages["action_mapping"] + stages["normalization"] + stages["features"]
    )
    return {
        **stages,
        "precompute": precompute,
        "__default__": precompute + stages["train"] + stages["evaluate"],
    }
