"""Evaluate: offline metrics, closed-loop success in simulation, latency, one summary."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    evaluate_in_simulation,
    evaluate_offline,
    measure_latency,
    select_checkpoint,
    summarize_evaluation,
)

POLICY_INPUTS = [
    "evaluated_checkpoint",
    "evaluated_norm_stats",
    "params:ingest",
    "params:features",
    "params:evaluate",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=select_checkpoint,
                inputs=["policy_checkpoint", "norm_stats", "params:evaluate"],
                outputs=["evaluated_checkpoint", "evaluated_norm_stats"],
                name="select_checkpoint_node",
            ),
            Node(
                func=evaluate_offline,
                inputs=[
                    "evaluated_checkpoint",
                    "evaluated_norm_stats",
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
        ]
    )
