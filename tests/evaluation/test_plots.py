"""Every evaluation panel renders a real, non-blank PNG from small random inputs."""

import io

import numpy as np
import pytest
from PIL import Image

from drifting_kedro.evaluation import plots
from drifting_kedro.evaluation.offline import OfflineDraws

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATASET_PANELS = (
    "drifting_field",
    "sample_transport",
    "mode_coverage",
    "prediction_scatter",
    "action_histograms",
    "error_heatmap",
)


def assert_valid_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.load()
    pixels = np.asarray(image.convert("RGB")).astype(np.int32)  # [H, W, 3]
    assert min(pixels.shape[:2]) > 100
    colours = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(colours)) > 10  # not a blank canvas
    assert pixels.std() > 5


@pytest.fixture(scope="module")
def dataset_pngs(offline_draws) -> dict[str, bytes]:
    kept = offline_draws["aloha_sim_transfer_cube"]
    return plots.dataset_panels(
        "aloha_sim_transfer_cube", kept.draws, kept.experts, kept.drift, kept.dim_names
    )


def test_dataset_panels_are_named_by_dataset_and_panel(dataset_pngs):
    assert sorted(dataset_pngs) == sorted(
        f"aloha_sim_transfer_cube/{name}.png" for name in DATASET_PANELS
    )


@pytest.mark.parametrize("panel", DATASET_PANELS)
def test_dataset_panel_is_a_valid_png(dataset_pngs, panel):
    assert_valid_png(dataset_pngs[f"aloha_sim_transfer_cube/{panel}.png"])


def test_summary_panels_are_valid_pngs(per_dim_mse):
    assert_valid_png(plots.per_dim_error_radar(per_dim_mse))
    assert_valid_png(plots.success_rates({"aloha_sim_transfer_cube": {"success_rate": 0.4}}))
    with_interval = {"success_rate": 0.4, "success_ci95_low": 0.27, "success_ci95_high": 0.54}
    assert_valid_png(plots.success_rates({"aloha_sim_transfer_cube": with_interval}))
    assert_valid_png(
        plots.latency_bars({"drifting_1step/threads1": 12.0, "diffusion_10step/threads1": 95.0})
    )


def test_panels_render_a_single_observation_and_a_zero_field():
    """One held-out frame and a converged (zero) field are legitimate inputs, not crashes."""
    rng = np.random.default_rng(0)
    draws, experts = rng.normal(size=(1, 3, 2, 2)), rng.normal(size=(1, 2, 2))
    pngs = plots.dataset_panels("one", draws, experts, np.zeros_like(draws), ["a", "b"])
    for data in pngs.values():
        assert_valid_png(data)


def test_offline_draws_reject_mismatched_shapes():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4, 2, 3, 5))
    with pytest.raises(ValueError, match="experts"):
        OfflineDraws(np.arange(5), list("abcde"), draws, rng.normal(size=(4, 3, 4)), draws)
    with pytest.raises(ValueError, match="names"):
        OfflineDraws(np.arange(5), list("abc"), draws, rng.normal(size=(4, 3, 5)), draws)
