"""kedro-datasets' parquet, JSON and CSV datasets, saved under a temporary name then renamed.

Their own `save` opens the target with mode "wb", truncating it at once: a run that reads the
file meanwhile, or a save that fails halfway, would leave it empty or cut. Here the same `save`
writes a hidden sibling that replaces the target in one rename.
"""

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from drifting_kedro.locking import replaced_atomically


class _AtomicSave:
    _save_to: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        return self._save_to or super()._get_save_path()

    def _save_atomically(self, save: Callable[[Any, Any], None], data: Any) -> None:
        if self._protocol != "file":  # object stores replace whole objects already
            save(self, data)
            return
        target = Path(get_filepath_str(self._get_save_path(), self._protocol))
        with replaced_atomically(target) as temporary:
            self._save_to = PurePosixPath(temporary)
            try:
                save(self, data)
            finally:
                self._save_to = None


class AtomicParquetDataset(_AtomicSave, ParquetDataset):
    def save(self, data: pd.DataFrame) -> None:
        self._save_atomically(ParquetDataset.save.__wrapped__, data)


class AtomicJSONDataset(_AtomicSave, JSONDataset):
    def save(self, data: Any) -> None:
        self._save_atomically(JSONDataset.save.__wrapped__, data)


class AtomicCSVDataset(_AtomicSave, CSVDataset):
    def save(self, data: pd.DataFrame) -> None:
        self._save_atomically(CSVDataset.save.__wrapped__, data)
