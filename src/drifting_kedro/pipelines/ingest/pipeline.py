"""Ingest: every configured source, read once."""

from kedro.pipeline import Node, Pipeline

from .nodes import ingest_episodes, render_data_videos


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_episodes,
                inputs="params:ingest",
                outputs=["episodes", "frames"],
                name="ingest_episodes_node",
            ),
            Node(
                func=render_data_videos,
                inputs=["frames", "params:data_videos"],
                outputs="data_videos",
                name="render_data_videos_node",
            ),
        ]
    )
