"""Nodes of the VLM-feature stage: one feature store per (dataset, backbone), via torchrun."""

import json
import logging
from pathlib import Path

from drifting_kedro.features.backbone import check_backbone
from drifting_kedro.features.frames import FrameStore
from drifting_kedro.launch import LaunchConfig, run_torchrun

logger = logging.getLogger(__name__)


def precompute_features(
    frames: dict[str, dict], features_options: dict, launch_options: dict
) -> dict[str, str]:
    """Encode every frame of every dataset with the configured backbone.

    Ranks take disjoint shards and a killed run resumes where it stopped: the staging files
    are the cache, keyed by dataset, backbone and frame-store content, so an unchanged rerun
    only re-links them.

    Args:
        frames: the frame-store manifest from ingest.
        features_options: `params:features` (backbone, backbone_options such as model_path,
            device, batch_size, staging_dir).
        launch_options: `params:features_launch` (torchrun settings).

    Returns:
        `dataset -> path` of each completed store, versioned by the catalog on save.
    """
    backbone = features_options["backbone"]
    check_backbone(
        backbone,
        device=features_options.get("device", "cpu"),
        **features_options.get("backbone_options", {}),
    )
    staging = Path(features_options["staging_dir"])
    launch = LaunchConfig(**launch_options)
    stores = {}
    options = [
        f"--option={key}={json.dumps(value)}"
        for key, value in features_options.get("backbone_options", {}).items()
    ]
    for name, entry in frames.items():
        # Keyed by the frames' content too: regenerated demos get new features, not an error.
        out = staging / f"{name}__{backbone}__{FrameStore(entry['path']).version}.h5"
        run_torchrun(
            "drifting_kedro.features.precompute",
            [
                "--frames", entry["path"],
                "--out", str(out),
                "--backbone", backbone,
                "--batch-size", str(features_options["batch_size"]),
                "--device", features_options.get("device", "cpu"),
                *options,
            ],
            launch,
        )  # fmt: skip
        stores[name] = str(out)
    return stores
