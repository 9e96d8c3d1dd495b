"""Train: the torchrun trainer on precomputed features, tracked in MLflow."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_policy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_policy,
                inputs={
                    "unified_actions": "unified_actions",
                    "norm_stats": "norm_stats",
                    "vlm_features": "vlm_features",
                    "frames": "frames",
                    "train_options": "params:train",
                    "launch_options": "params:train_launch",
                },
                outputs="policy_checkpoint",
                name="train_policy_node",
            )
        ]
    )
