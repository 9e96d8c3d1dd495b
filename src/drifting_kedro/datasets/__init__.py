"""Kedro datasets for the project's large artefacts (the only Kedro code outside pipelines/)."""

from .feature_stores import FeatureStoresDataset
from .media import MediaFolderDataset
from .torch_checkpoint import TorchCheckpointDataset

__all__ = ["FeatureStoresDataset", "MediaFolderDataset", "TorchCheckpointDataset"]
