import pickle

import h5py
import numpy as np
import pytest
import torch

from drifting_kedro.features.frames import FrameStore, FrameStoreWriter, resize_square

CAMERAS = ["top", "wrist"]  # the toy_sim cameras of conftest


def test_round_trip(frame_store_path, make_episode):
    store = FrameStore(frame_store_path)
    assert len(store) == 21 and store.dataset == "toy_sim" and store.cameras == CAMERAS
    assert store.fps == 50.0 and store.image_size == 12
    assert store.episode_index.tolist() == [0] * 7 + [1] * 5 + [2] * 9
    assert store.frame_index.tolist() == [*range(7), *range(5), *range(9)]
    episode = make_episode(1, 5)
    assert store.instruction(8) == episode.language
    assert store.instruction(-1) == make_episode(2, 9).language != episode.language
    expected = np.stack([resize_square(episode.images[c], 12) for c in CAMERAS], axis=1)
    expected = torch.from_numpy(expected).permute(0, 1, 4, 2, 3)  # [T, V, 3, S, S]
    assert store.images(9).dtype == torch.uint8 and store.images(9).shape == (2, 3, 12, 12)
    assert torch.equal(store.images(9), expected[2])
    assert torch.equal(store.images_batch([7, 8, 9, 10, 11]), expected)  # contiguous read
    batch = store.images_batch([11, 0, 11, 9])  # any order, duplicates
    assert batch.shape == (4, 2, 3, 12, 12)
    assert torch.equal(batch[0], expected[4]) and torch.equal(batch[2], expected[4])
    assert torch.equal(batch[3], expected[2]) and torch.equal(batch[1], store.images(0))
    with pytest.raises(IndexError, match="sample 21 out of range"):
        store.images(21)


def test_resize_is_antialiased_and_keeps_square_frames_exact():
    flat = np.full((2, 30, 50, 3), 200, dtype=np.uint8)
    assert (resize_square(flat, 8) == 200).all()
    square = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert resize_square(square, 8) is square
    stripes = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average out rather than alias
    assert abs(int(resize_square(stripes, 8).mean()) - 127) <= 2


def test_picklable_and_reopens_lazily(frame_store_path):
    store = FrameStore(frame_store_path)
    first = store.images(3)
    copy = pickle.loads(pickle.dumps(store))
    assert torch.equal(copy.images(3), first)
    assert copy.instruction(3) == store.instruction(3)


def test_version_tracks_content(tmp_path, write_frames):
    a = FrameStore(write_frames(tmp_path / "a.h5")).version
    b = FrameStore(write_frames(tmp_path / "b.h5")).version
    c = FrameStore(write_frames(tmp_path / "c.h5", lengths=(7, 5, 8))).version
    assert a == b != c


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: setattr(e, "dataset", "other"), "belongs to dataset 'other'"),
        (lambda e: setattr(e, "language", " "), "has no language instruction"),
        (lambda e: e.images.pop("wrist"), r"missing cameras \['wrist'\]"),
        (lambda e: e.images.update(top=e.images["top"][:-1]), "4 frames for 5 actions"),
        (lambda e: e.images.update(top=e.images["top"].astype(np.float32)), "must be uint8"),
        (lambda e: setattr(e, "fps", 10.0), "fps 10.0 differs"),
        (lambda e: setattr(e, "episode_index", 0), "already written"),
    ],
)
def test_bad_episodes_are_named(tmp_path, make_episode, change, message):
    writer = FrameStoreWriter(tmp_path / "f.h5", "toy_sim", CAMERAS, 12)
    writer.add_episode(make_episode(0, 3))
    bad = make_episode(1, 5)
    change(bad)
    with pytest.raises(ValueError, match=message) as err:
        writer.add_episode(bad)
    assert "episode" in str(err.value)
    writer.close()


def test_crashed_write_leaves_no_store(tmp_path, make_episode):
    path = tmp_path / "f.h5"
    with pytest.raises(RuntimeError), FrameStoreWriter(path, "toy_sim", CAMERAS, 12) as writer:
        writer.add_episode(make_episode(0, 3))
        raise RuntimeError("ingest crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="run ingest first"):
        FrameStore(path)


def test_unsealed_store_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:  # as a writer from before stores were renamed into place
        f.create_dataset("images", data=np.zeros((1, 1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="not a sealed frame store"):
        FrameStore(path)


def test_sealed_store_is_renamed_into_place(tmp_path, make_episode):
    path = tmp_path / "f.h5"
    writer = FrameStoreWriter(path, "toy_sim", CAMERAS, 12)
    writer.add_episode(make_episode(0, 3))
    assert not path.exists() and len(list(tmp_path.iterdir())) == 1  # a hidden temporary
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"] and len(FrameStore(path)) == 3
