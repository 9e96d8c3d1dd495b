"""Action mapping: native actions and states into the unified 128-D space."""

from kedro.pipeline import Node, Pipeline

from .nodes import map_to_unified


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=map_to_unified,
                inputs="episodes",
                outputs="unified_actions",
                name="map_to_unified_node",
            )
        ]
    )
