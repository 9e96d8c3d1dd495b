"""A versioned folder of per-dataset HDF5 feature stores."""

import glob
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version


class FeatureStoresDataset(AbstractVersionedDataset[dict[str, str], dict[str, str]]):
    """Saves `{dataset: store path}` by hard-linking each store into a new version folder.

    Linking (copying across file systems) keeps the staging files as the resumable cache while
    every version stays immutable. Loading returns `{dataset: path}` of that version's stores.
    """

    def __init__(self, filepath: str, version: Version | None = None) -> None:
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=lambda p: (Path(p) / "manifest.json").exists(),
            glob_function=glob.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _load(self) -> dict[str, str]:
        folder = Path(self._get_load_path())
        manifest = folder / "manifest.json"
        if not manifest.exists():
            raise DatasetError(
                f"no feature stores at {folder}: run `kedro run --pipeline=precompute`"
            )
        names = json.loads(manifest.read_text())["datasets"]
        return {name: str(folder / f"{name}.h5") for name in names}

    def _save(self, data: dict[str, str]) -> None:
        folder = Path(self._get_save_path())
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in data.items():
            target = folder / f"{name}.h5"
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        (folder / "manifest.json").write_text(json.dumps({"datasets": sorted(data)}, indent=2))
