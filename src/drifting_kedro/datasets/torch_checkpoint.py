"""A versioned PyTorch checkpoint: saved atomically with its sha256, verified on load, read with
`weights_only=True` (a corrupt file is an error naming it)."""

import glob
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, Version

from drifting_kedro.training.checkpoint import load_checkpoint, save_checkpoint


class TorchCheckpointDataset(AbstractVersionedDataset[dict, dict]):
    def __init__(self, filepath: str, version: Version | None = None) -> None:
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=lambda p: Path(p).exists(),
            glob_function=glob.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _exists(self) -> bool:
        return Path(self._get_load_path()).exists()

    def _load(self) -> dict:
        return load_checkpoint(Path(self._get_load_path()))

    def _save(self, data: dict) -> None:
        save_checkpoint(data, Path(self._get_save_path()))
