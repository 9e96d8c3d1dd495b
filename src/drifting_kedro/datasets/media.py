"""A folder of media files (mp4 videos, png plots) saved from `{relative path: bytes}`."""

import os
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset

from drifting_kedro.locking import replaced_atomically


class MediaFolderDataset(AbstractDataset[dict[str, bytes], dict[str, Path]]):
    """Each save replaces the folder's contents, so it shows exactly one run's media.

    The new files go to a temporary sibling folder swapped in at the end, so a failed save keeps
    the previous media. Replacing deletes the old folder, so `path` must lie below a layer of the
    project's data folder (e.g. data/08_reporting/videos): a mistyped path deletes nothing else.
    Wrapped in kedro-mlflow's MlflowArtifactDataset, the whole folder becomes run artifacts.
    """

    def __init__(self, path: str, data_dir: str = "data") -> None:
        self._path = Path(path)
        self._data_dir = Path(data_dir)  # relative paths resolve from the project root, as `path`

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _load(self) -> dict[str, Path]:
        files = sorted(p for p in self._path.rglob("*") if p.is_file())
        return {p.relative_to(self._path).as_posix(): p for p in files}

    def _check_inside_data(self) -> None:
        data_dir = Path(os.path.abspath(self._data_dir))
        target = Path(os.path.abspath(self._path))
        if not target.is_relative_to(data_dir) or len(target.relative_to(data_dir).parts) < 2:
            raise ValueError(
                f"MediaFolderDataset will not replace {self._path} (= {target}): each save "
                f"deletes the folder first, so it must lie below a layer of the project's data "
                f"folder {data_dir} (e.g. data/08_reporting/videos). Fix its `path` in "
                "conf/<env>/catalog.yml."
            )

    def _save(self, data: dict[str, bytes]) -> None:
        self._check_inside_data()
        with replaced_atomically(self._path) as folder:
            folder.mkdir()
            for name, content in data.items():  # names may hold sub-folders: "<dataset>/<cam>.mp4"
                target = folder / name
                if not Path(os.path.normpath(target)).is_relative_to(folder):
                    raise ValueError(f"media file name {name!r} leaves the folder {self._path}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)

    def _exists(self) -> bool:
        return self._path.is_dir()
