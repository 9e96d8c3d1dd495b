import pandas as pd
import pytest

from drifting_kedro.ingest import assign_splits


@pytest.fixture
def dummy_episodes() -> pd.DataFrame:
    rows = [
        (name, ep, f)
        for name, count in (("a", 10), ("b", 2), ("c", 1))
        for ep in range(count)
        for f in range(3)
    ]
    return pd.DataFrame(rows, columns=["dataset", "episode_index", "frame_index"])


def test_last_episodes_of_each_dataset_are_held_out(dummy_episodes):
    split = assign_splits(dummy_episodes, val_fraction=0.2)
    held = dummy_episodes[split == "val"].groupby("dataset")["episode_index"].unique()
    assert sorted(held["a"]) == [8, 9]
    assert list(held["b"]) == [1]
    assert "c" not in held  # a single episode is never held out


def test_split_fraction_out_of_range_is_an_error(dummy_episodes):
    with pytest.raises(ValueError, match="val_fraction"):
        assign_splits(dummy_episodes, val_fraction=1.0)
