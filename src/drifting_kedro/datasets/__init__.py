"""Kedro datasets for the project's large artefacts (the only Kedro code outside pipelines/)."""

from .atomic import AtomicCSVDataset, AtomicJSONDataset, AtomicParquetDataset
from .feature_stores import FeatureStoresDataset
from .media import MediaFolderDataset
from .torch_checkpoint import TorchCheckpointDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicParquetDataset",
    "FeatureStoresDataset",
    "MediaFolderDataset",
    "TorchCheckpointDataset",
]
