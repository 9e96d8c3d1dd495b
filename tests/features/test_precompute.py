import os
import re
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from drifting_kedro.features.frames import FrameStore
from drifting_kedro.features.precompute import merge_parts, part_path, run_precompute, shard_range
from drifting_kedro.features.store import FeatureStore
from drifting_kedro.pipelines.features.nodes import precompute_features

ARRAYS = ("tokens", "token_camera", "offsets", "pooled", "episode_index", "frame_index")


def _arrays(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {key: f[key][:] for key in ARRAYS}


def _assert_same_store(a, b) -> None:
    left, right = _arrays(a), _arrays(b)
    for key in ARRAYS:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)
    meta = ("dataset", "backbone", "config_hash", "random_init", "hidden_size", "source_version")
    assert {k: FeatureStore(a).attrs[k] for k in meta} == {
        k: FeatureStore(b).attrs[k] for k in meta
    }


def test_shards_are_disjoint_and_contiguous():
    for n, world in [(21, 1), (21, 2), (21, 4), (3, 4)]:
        ranges = [shard_range(n, r, world) for r in range(world)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert part_path("/d/features.h5", 3).name == "features.rank3.h5"


def test_run_writes_every_frame_in_order(tmp_path, frame_store_path, toy_backbone):
    out = tmp_path / "features.h5"
    summary = run_precompute(frame_store_path, out, toy_backbone, batch_size=4, progress=False)
    assert summary["samples"] == 21 and summary["merged"] and summary["samples_per_s"] > 0
    frames, store = FrameStore(frame_store_path), FeatureStore(out)
    assert len(store) == 21 and store.random_init and store.source_version == frames.version
    np.testing.assert_array_equal(store.episode_index, frames.episode_index)
    np.testing.assert_array_equal(store.frame_index, frames.frame_index)
    assert store[0]["tokens"].shape == (2 + 4, 8)  # 2 views + "pick up the cube"
    assert store[7]["tokens"].shape == (2 + 6, 8)  # episode 1's instruction has 6 words
    assert not part_path(out, 0).exists()
    again = run_precompute(frame_store_path, out, toy_backbone, batch_size=4, progress=False)
    assert again["samples"] == 0  # complete: nothing recomputed


def test_resume_after_interruption_equals_uninterrupted_run(
    tmp_path, frame_store_path, toy_backbone
):
    full = tmp_path / "full.h5"
    run_precompute(frame_store_path, full, toy_backbone, batch_size=4, progress=False)
    out = tmp_path / "resumed.h5"
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_precompute(
            frame_store_path,
            out,
            toy_backbone,
            batch_size=4,
            progress=False,
            backbone_options={"fail_after": 2},
        )
    assert not out.exists()
    assert FeatureStore(part_path(out, 0), require_complete=False).attrs["num_samples"] == 8
    summary = run_precompute(frame_store_path, out, toy_backbone, batch_size=4, progress=False)
    assert summary["samples"] == 13  # only the rest was encoded
    _assert_same_store(full, out)
    pairs = set(zip(FeatureStore(out).episode_index, FeatureStore(out).frame_index, strict=True))
    assert len(pairs) == 21


def test_resume_with_another_config_is_a_clear_error(tmp_path, frame_store_path, toy_backbone):
    out = tmp_path / "features.h5"
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_precompute(
            frame_store_path,
            out,
            toy_backbone,
            batch_size=4,
            progress=False,
            backbone_options={"fail_after": 1},
        )
    with pytest.raises(ValueError, match="cannot resume .*config hash.*delete the file"):
        run_precompute(
            frame_store_path,
            out,
            toy_backbone,
            batch_size=4,
            progress=False,
            backbone_options={"scale": 2.0},
        )


def test_two_shards_merged_equal_one_shard(tmp_path, frame_store_path, toy_backbone):
    one = tmp_path / "one.h5"
    run_precompute(frame_store_path, one, toy_backbone, batch_size=4, progress=False)
    two = tmp_path / "two.h5"
    with pytest.raises(FileNotFoundError, match="rank1.h5"):
        merge_parts(two, 2)
    summaries = [
        run_precompute(
            frame_store_path, two, toy_backbone, batch_size=3, rank=r, world_size=2, progress=False
        )
        for r in (1, 0)
    ]
    assert [s["shard"] for s in summaries] == [(10, 21), (0, 10)]
    assert not any(s["merged"] for s in summaries) and not two.exists()
    assert merge_parts(two, 2) == 21
    _assert_same_store(one, two)
    assert not part_path(two, 0).exists() and not part_path(two, 1).exists()


def test_merge_refuses_an_incomplete_part(tmp_path, frame_store_path, toy_backbone):
    out = tmp_path / "features.h5"
    run_precompute(
        frame_store_path, out, toy_backbone, batch_size=4, rank=0, world_size=2, progress=False
    )
    with pytest.raises(RuntimeError):
        run_precompute(
            frame_store_path,
            out,
            toy_backbone,
            batch_size=4,
            rank=1,
            world_size=2,
            progress=False,
            backbone_options={"fail_after": 1},
        )
    with pytest.raises(ValueError, match=r"rank1.h5 is incomplete \(4 of 11 samples\)"):
        merge_parts(out, 2)


def test_small_real_end_to_end(tmp_path, write_frames):
    frames = write_frames(tmp_path / "frames.h5", lengths=(3, 2), image_size=32)
    out = tmp_path / "features.h5"
    summary = run_precompute(frames, out, "small-real", batch_size=2, progress=False)
    store = FeatureStore(out)
    assert summary["samples"] == 5 and len(store) == 5 and not store.random_init
    # 32 px views at image stride 16: a 2x2 map, 4 tokens per view, 96 + 384 wide.
    assert store.hidden_size == 480 and store[0]["tokens"].shape == (2 * 4 + 1, 480)
    assert store[4]["token_camera"].tolist() == [0] * 4 + [1] * 4 + [-1]


def _cli(frames, out, *extra: str) -> list[str]:
    return [
        "-m",
        "drifting_kedro.features.precompute",
        "--frames",
        str(frames),
        "--out",
        str(out),
        "--backbone",
        "small-real",
        "--batch-size",
        "2",
        "--no-progress",
        *extra,
    ]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path, write_frames):
    frames = write_frames(tmp_path / "frames.h5", lengths=(6, 5), image_size=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *_cli(frames, tmp_path / "one.h5")], check=True, env=env)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    subprocess.run(torchrun + _cli(frames, tmp_path / "two.h5"), check=True, env=env, timeout=300)
    _assert_same_store(tmp_path / "one.h5", tmp_path / "two.h5")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, write_frames):
    frames = write_frames(tmp_path / "frames.h5", lengths=(150, 150), image_size=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *_cli(frames, tmp_path / "full.h5")], check=True, env=env)
    out = tmp_path / "killed.h5"
    cli = [arg for arg in _cli(frames, out) if arg != "--no-progress"]
    proc = subprocess.Popen([sys.executable, *cli], env=env, stderr=subprocess.PIPE)
    progress = b""
    while not re.search(rb"\b(\d{2,3})/300", progress[-30:]):  # tqdm shows >= 10 samples
        char = proc.stderr.read(1)
        assert char, "precompute finished before it could be killed"
        progress += char
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and part_path(out, 0).exists()
    subprocess.run([sys.executable, *_cli(frames, out)], check=True, env=env)
    _assert_same_store(tmp_path / "full.h5", out)


@pytest.mark.slow
def test_features_node_encodes_regenerated_frames_instead_of_refusing_its_cache(
    tmp_path, write_frames
):
    """Demos regenerated in place (same dataset, new content) must not meet the stale cache."""
    launch = {"nproc_per_node": 1, "nnodes": 1, "node_rank": 0, "rdzv_endpoint": ""}
    options = {"backbone": "small-real", "batch_size": 4, "staging_dir": str(tmp_path / "stage")}
    path = tmp_path / "frames.h5"
    manifest = {"toy_sim": {"path": str(path)}}
    write_frames(path, lengths=(4, 3), image_size=32)
    first = precompute_features(manifest, options, launch)["toy_sim"]
    assert precompute_features(manifest, options, launch)["toy_sim"] == first  # cache hit
    path.unlink()
    write_frames(path, lengths=(5,), image_size=32)
    second = precompute_features(manifest, options, launch)["toy_sim"]
    assert second != first
    assert len(FeatureStore(second)) == 5
