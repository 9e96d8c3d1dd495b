"""Ingest: simulated demonstrations recorded, then every dataset read once."""

from kedro.pipeline import Node, Pipeline

from .nodes import ingest_episodes, record_demonstrations, render_data_videos


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=record_demonstrations,
                inputs="params:demonstrations",
                outputs="recorded_demonstrations",
                name="record_demonstrations_node",
            ),
            Node(
                func=ingest_episodes,
                inputs=["params:ingest", "recorded_demonstrations"],
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
