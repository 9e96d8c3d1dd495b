"""Features: VLM features of every frame (multi-view images + language)."""

from kedro.pipeline import Node, Pipeline

from .nodes import precompute_features


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=precompute_features,
                inputs=["frames", "params:features", "params:features_launch"],
                outputs="vlm_features",
                name="precompute_features_node",
            )
        ]
    )
