"""Evaluate: offline metrics, closed-loop success in simulation, latency, one summary, and the
policy registered as an MLflow model."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    evaluate_in_simulation,
    evaluate_offline,
    measure_latency,
    register_policy,
    summarize_evaluation,
)

POLICY_INPUTS = [
    "policy_checkpoint",
    "params:demonstrations",
    "params:ingest",
    "params:features",
    "params:evaluate",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=evaluate_offline,
                inputs=[
                    "policy_checkpoint",
                    "unified_actions",
                    "vlm_features",
                    "params:evaluate",
                ],
                outputs=["offline_metrics", "per_dim_mse", "offline_draws"],
                name="evaluate_offline_node",
            ),
            Node(
                func=evaluate_in_simulation,
                inputs=POLICY_INPUTS,
                outputs=["closed_loop_metrics", "evaluation_videos"],
                name="evaluate_in_simulation_node",
            ),
            Node(
                func=measure_latency,
                inputs=POLICY_INPUTS,
                outputs="latency_metrics",
                name="measure_latency_node",
            ),
            Node(
                func=summarize_evaluation,
                inputs=[
                    "offline_metrics",
                    "per_dim_mse",
                    "offline_draws",
                    "closed_loop_metrics",
                    "latency_metrics",
                ],
                outputs=["evaluation_metrics", "evaluation_summary", "evaluation_plots"],
                name="summarize_evaluation_node",
            ),
            Node(
                func=register_policy,
                inputs=[
                    "policy_checkpoint",
                    "closed_loop_metrics",
                    "params:ingest",
                    "params:features",
                    "params:evaluate",
                ],
                outputs=None,
                name="register_policy_node",
            ),
        ]
    )
