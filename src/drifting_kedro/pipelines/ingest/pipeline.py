"""Ingest: every configured source, read once."""

from kedro.pipeline import Node, Pipeline

from .nodes import ingest_episodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_episodes,
                inputs="params:ingest",
                outputs=["episodes", "frames"],
                name="ingest_episodes_node",
            )
        ]
    )
