"""summarize_evaluation: one summary row per dataset, kedro-mlflow metrics, every panel."""

import pytest

from drifting_kedro.pipelines.evaluate.nodes import summarize_evaluation


@pytest.fixture(scope="module")
def summary(offline_draws, per_dim_mse):
    offline = {
        f"{name}/{metric}": value
        for name in offline_draws
        for metric, value in (("mse", 0.5), ("mmd2", 0.1), ("gmm_entropy", 0.2), ("lambda_v", 1e-3))
    }
    closed_loop = {
        "aloha_sim_transfer_cube": {
            "success_rate": 0.25,
            "mean_reward": 1.5,
            "mean_length": 300.0,
            "episodes": 4.0,
        }
    }
    latency = {
        "drifting_1step/threads1": 10.0,
        "diffusion_10step/threads1": 80.0,
        "diffusion_10step_vs_drifting/threads1": 8.0,
    }
    return summarize_evaluation(offline, per_dim_mse, offline_draws, closed_loop, latency)


def test_summary_table_has_one_row_per_dataset(summary):
    _, table, _ = summary
    assert sorted(table["dataset"]) == ["aloha_sim_transfer_cube", "fetch_pick_and_place"]
    assert {"mse", "mmd2", "gmm_entropy", "lambda_v", "success_rate"} <= set(table.columns)
    row = table.set_index("dataset").loc["aloha_sim_transfer_cube"]
    assert row["success_rate"] == 0.25 and row["mse"] == 0.5


def test_metrics_are_in_kedro_mlflow_format(summary):
    metrics, _, _ = summary
    assert metrics["aloha_sim_transfer_cube/success_rate"] == {"value": 0.25, "step": 0}
    assert metrics["fetch_pick_and_place/lambda_v"] == {"value": 1e-3, "step": 0}
    assert metrics["latency_ms/diffusion_10step_vs_drifting/threads1"]["value"] == 8.0
    for entry in metrics.values():
        assert set(entry) == {"value", "step"}
        assert type(entry["value"]) is float and type(entry["step"]) is int


def test_plots_hold_the_summary_panels_and_each_dataset_panels(summary, offline_draws):
    _, _, figures = summary
    assert {"per_dim_error_radar.png", "success_rate.png", "latency.png"} <= set(figures)
    for name in offline_draws:
        assert f"{name}/drifting_field.png" in figures
        assert f"{name}/mode_coverage.png" in figures
    assert len(figures) == 3 + 6 * len(offline_draws)
