"""A folder of media files (mp4 videos, png plots) saved from `{relative path: bytes}`."""

import shutil
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset


class MediaFolderDataset(AbstractDataset[dict[str, bytes], dict[str, Path]]):
    """Each save replaces the folder's contents, so it shows exactly one run's media.

    Wrapped in kedro-mlflow's MlflowArtifactDataset, the whole folder becomes run artifacts.
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _load(self) -> dict[str, Path]:
        files = sorted(p for p in self._path.rglob("*") if p.is_file())
        return {p.relative_to(self._path).as_posix(): p for p in files}

    def _save(self, data: dict[str, bytes]) -> None:
        if self._path.exists():
            shutil.rmtree(self._path)
        self._path.mkdir(parents=True)
        for name, content in data.items():  # names may hold sub-folders: "<dataset>/<camera>.mp4"
            target = self._path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def _exists(self) -> bool:
        return self._path.is_dir()
