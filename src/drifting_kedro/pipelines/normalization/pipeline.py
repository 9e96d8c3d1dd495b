"""Normalization: statistics that training applies and inference inverts."""

from kedro.pipeline import Node, Pipeline

from .nodes import compute_normalization_stats


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_normalization_stats,
                inputs="unified_actions",
                outputs="norm_stats",
                name="compute_normalization_stats_node",
            )
        ]
    )
