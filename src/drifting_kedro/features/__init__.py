"""VLM features: backbones, the frame store ingest writes, the feature store precompute writes.

``run_precompute`` / ``merge_parts`` load on first use, so that
``python -m drifting_kedro.features.precompute`` does not import its module twice.
"""

from typing import Any

from drifting_kedro.features.backbone import (
    LANGUAGE_CAMERA,
    Backbone,
    BackboneOutput,
    available_backbones,
    build_backbone,
    register_backbone,
)
from drifting_kedro.features.frames import FrameStore, FrameStoreWriter
from drifting_kedro.features.store import (
    FeatureStore,
    FeatureStoreWriter,
    collate_features,
    merge_feature_stores,
)

__all__ = [
    "LANGUAGE_CAMERA",
    "Backbone",
    "BackboneOutput",
    "FeatureStore",
    "FeatureStoreWriter",
    "FrameStore",
    "FrameStoreWriter",
    "available_backbones",
    "build_backbone",
    "collate_features",
    "merge_feature_stores",
    "merge_parts",
    "register_backbone",
    "run_precompute",
]


def __getattr__(name: str) -> Any:
    if name in ("run_precompute", "merge_parts"):
        from drifting_kedro.features import precompute

        return getattr(precompute, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
