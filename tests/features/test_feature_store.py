import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from drifting_kedro.features.backbone import BackboneOutput
from drifting_kedro.features.store import (
    FeatureStore,
    FeatureStoreWriter,
    collate_features,
    merge_feature_stores,
)

H = 6
ATTRS = {
    "dataset": "toy_sim",
    "backbone": "toy-test",
    "config_hash": "abc123",
    "random_init": True,
    "hidden_size": H,
    "source_version": "frames-v1",
}


def _batch(lengths: list[int], seed: int) -> BackboneOutput:
    """Padded batch whose sample j has lengths[j] real tokens."""
    g = torch.Generator().manual_seed(seed)
    b, length = len(lengths), max(lengths)
    mask = torch.arange(length)[None] < torch.tensor(lengths)[:, None]
    tokens = torch.randn(b, length, H, generator=g) * mask[..., None]
    cameras = torch.randint(-1, 3, (b, length), generator=g)
    return BackboneOutput(tokens, mask, torch.randn(b, H, generator=g), cameras)


BATCHES = [([3, 5, 2], 0), ([4, 1], 1), ([6, 6, 3, 2], 2)]


def _write(path, batches=BATCHES, complete=True) -> list[BackboneOutput]:
    outputs, sample = [], 0
    with FeatureStoreWriter(path, ATTRS) as writer:
        for lengths, seed in batches:
            out = _batch(lengths, seed)
            idx = np.arange(sample, sample + len(lengths))
            writer.append(out, idx // 4, idx % 4)  # 4 frames per episode
            outputs.append(out)
            sample += len(lengths)
        writer.close(complete=complete)
    return outputs


def _expected(outputs: list[BackboneOutput]) -> list[dict]:
    rows = []
    for out in outputs:
        for j in range(out.tokens.shape[0]):
            m = out.mask[j]
            rows.append(
                {
                    "tokens": out.tokens[j][m].half(),
                    "token_camera": out.token_camera[j][m],
                    "pooled": out.pooled[j].half(),
                }
            )
    return rows


def test_round_trip_random_access(tmp_path):
    path = tmp_path / "f.h5"
    expected = _expected(_write(path))
    store = FeatureStore(path)
    assert len(store) == 9 and store.hidden_size == H and store.random_init
    assert store.backbone == "toy-test" and store.config_hash == "abc123"
    assert store.source_version == "frames-v1" and store.dataset == "toy_sim"
    assert store.offsets.tolist() == np.cumsum([0, 3, 5, 2, 4, 1, 6, 6, 3, 2]).tolist()
    for i in [8, 0, 5, 3, -1]:
        item, want = store[i], expected[i]
        assert item["tokens"].dtype == torch.float16
        assert torch.equal(item["tokens"], want["tokens"])
        assert torch.equal(item["token_camera"].long(), want["token_camera"])
        assert torch.equal(item["pooled"], want["pooled"])
        assert (item["episode_index"], item["frame_index"]) == divmod(i % 9, 4)
    with pytest.raises(IndexError, match="sample 9 out of range"):
        store[9]
    with h5py.File(path) as f:  # flat arrays, not one group per sample
        assert set(f) == {
            "tokens",
            "token_camera",
            "offsets",
            "pooled",
            "episode_index",
            "frame_index",
        }
        assert f["tokens"].shape == (32, H) and f["tokens"].dtype == np.float16


def test_collate_pads_and_masks(tmp_path):
    _write(tmp_path / "f.h5")
    store = FeatureStore(tmp_path / "f.h5")
    batch = collate_features([store[0], store[1], store[4]])  # 3, 5, 1 tokens
    assert batch["tokens"].shape == (3, 5, H) and batch["tokens"].dtype == torch.float32
    assert batch["mask"].sum(1).tolist() == [3, 5, 1]
    assert (batch["tokens"][~batch["mask"]] == 0).all()
    assert (batch["token_camera"][0, 3:] == -1).all()
    torch.testing.assert_close(batch["tokens"][1], store[1]["tokens"].float())
    assert batch["pooled"].shape == (3, H) and batch["episode_index"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("merged", [False, True], ids=["written", "merged"])
def test_picklable_and_readable_from_dataloader_workers(tmp_path, merged):
    _write(tmp_path / "f.h5")
    if merged:  # precompute's final file: contiguous arrays, memory-mapped by each reader
        merge_feature_stores([tmp_path / "f.h5"], tmp_path / "m.h5", ATTRS)
    store = FeatureStore(tmp_path / ("m.h5" if merged else "f.h5"))
    assert isinstance(store._open()["tokens"], np.memmap) == merged
    store[0]  # the parent's open handle must not travel to the workers
    assert torch.equal(pickle.loads(pickle.dumps(store))[2]["tokens"], store[2]["tokens"])
    loader = DataLoader(store, batch_size=4, num_workers=2, collate_fn=collate_features)
    batches = list(loader)
    assert [b["tokens"].shape[0] for b in batches] == [4, 4, 1]
    for k, batch in enumerate(batches):
        direct = collate_features([store[i] for i in range(4 * k, min(4 * k + 4, len(store)))])
        for key, value in direct.items():
            assert torch.equal(batch[key], value), key


def test_incomplete_store_is_refused_unless_asked(tmp_path):
    _write(tmp_path / "f.h5", complete=False)
    with pytest.raises(ValueError, match="incomplete.*resume"):
        FeatureStore(tmp_path / "f.h5")
    assert len(FeatureStore(tmp_path / "f.h5", require_complete=False)) == 9


def test_resume_truncates_uncommitted_rows(tmp_path):
    path = tmp_path / "f.h5"
    full = _expected(_write(tmp_path / "full.h5"))
    _write(path, BATCHES[:2], complete=False)
    with h5py.File(path, "r+") as f:  # a batch killed after its data, before its counters
        for key in ("tokens", "pooled"):
            f[key].resize(f[key].shape[0] + 3, axis=0)
            f[key][-3:] = 7.0
    writer = FeatureStoreWriter(path, ATTRS)
    assert (writer.num_samples, writer.num_tokens) == (5, 15)
    writer.append(_batch(*BATCHES[2]), np.arange(5, 9) // 4, np.arange(5, 9) % 4)
    writer.close(complete=True)
    store = FeatureStore(path)
    assert len(store) == 9
    for i in range(9):
        assert torch.equal(store[i]["tokens"], full[i]["tokens"])
        assert torch.equal(store[i]["pooled"], full[i]["pooled"])


def test_resume_with_other_config_hash_is_a_clear_error(tmp_path):
    _write(tmp_path / "f.h5", BATCHES[:1], complete=False)
    with pytest.raises(ValueError, match="config hash 'abc123'.*'zzz'.*delete the file"):
        FeatureStoreWriter(tmp_path / "f.h5", {**ATTRS, "config_hash": "zzz"})
    with pytest.raises(ValueError, match="source_version"):
        FeatureStoreWriter(tmp_path / "f.h5", {**ATTRS, "source_version": "frames-v2"})


def test_non_finite_features_are_refused(tmp_path):
    out = _batch([2, 2], 0)
    out.tokens[1, 0, 0] = 1e6  # overflows fp16
    with FeatureStoreWriter(tmp_path / "f.h5", ATTRS) as writer:
        with pytest.raises(ValueError, match=r"non-finite features.*\[\(3, 1\)\]"):
            writer.append(out, np.array([3, 3]), np.array([0, 1]))
        assert writer.num_samples == 0


def test_indices_for(tmp_path):
    _write(tmp_path / "f.h5")
    store = FeatureStore(tmp_path / "f.h5")
    assert store.indices_for(np.array([2, 0, 1]), np.array([0, 3, 1])).tolist() == [8, 3, 5]
    with pytest.raises(KeyError, match=r"\(5, 0\)"):
        store.indices_for(np.array([0, 5]), np.array([0, 0]))


def test_merge_equals_single_store(tmp_path):
    full = FeatureStore(_write_and_return(tmp_path / "full.h5", BATCHES))
    _write(tmp_path / "a.h5", BATCHES[:2])
    with FeatureStoreWriter(tmp_path / "b.h5", ATTRS) as writer:
        writer.append(_batch(*BATCHES[2]), np.arange(5, 9) // 4, np.arange(5, 9) % 4)
        writer.close(complete=True)
    assert (
        merge_feature_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5", ATTRS) == 9
    )
    merged = FeatureStore(tmp_path / "m.h5")
    assert merged.offsets.tolist() == full.offsets.tolist()
    for i in range(9):
        for key in ("tokens", "token_camera", "pooled"):
            assert torch.equal(merged[i][key], full[i][key])
    assert not (tmp_path / "m.h5.merging").exists()


def _write_and_return(path, batches):
    _write(path, batches)
    return path


def test_unreadable_file_on_resume_says_what_to_do(tmp_path):
    (tmp_path / "f.h5").write_bytes(b"half an HDF5 header")
    with pytest.raises(ValueError, match="cannot resume .*Delete it"):
        FeatureStoreWriter(tmp_path / "f.h5", ATTRS)
