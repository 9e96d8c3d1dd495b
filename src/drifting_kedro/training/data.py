"""Training samples: one observation's features, state and future action chunk, normalized.

A sample is a frame t of an episode: the VLM features of frame t (from the feature store), the
unified state at t, and the unified action chunk t..t+T-1 (repeating the last action past the
episode's end). Online-VLM training reads frame t's images and instruction from the frame store
instead, and the step encodes them. Batches are drawn per step from seeds derived from
(seed, rank, step), so a resumed run draws exactly the batches the uninterrupted run would have
drawn.
"""

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from drifting_kedro.action_space import REGISTRY, action_mask, embodiment_id, state_mask
from drifting_kedro.features.frames import FrameStore
from drifting_kedro.features.store import FeatureStore, collate_features
from drifting_kedro.normalization import NormStats, normalize

logger = logging.getLogger(__name__)


class PolicySamples(Dataset):
    """Map-style dataset over every frame of every training episode of several datasets."""

    def __init__(
        self,
        table: pd.DataFrame,
        stats: dict[str, NormStats],
        feature_paths: dict[str, str],
        horizon: int,
        neighbor_positives: int = 0,
        *,
        frame_paths: dict[str, str] | None = None,
    ) -> None:
        """With `frame_paths` (online VLM), samples carry images and instruction, not features."""
        self.horizon = horizon
        self.neighbor_offsets = np.arange(-neighbor_positives, neighbor_positives + 1)
        self.dataset_names = sorted(table["dataset"].unique())
        self.online = frame_paths is not None
        paths, kind = (frame_paths, "frame") if self.online else (feature_paths, "feature")
        missing = [name for name in self.dataset_names if name not in paths]
        if missing:
            stage = "ingest" if self.online else "the features stage"
            raise ValueError(f"no {kind} store for datasets {missing}; run {stage}")
        store_class = FrameStore if self.online else FeatureStore
        self.stores = {name: store_class(paths[name]) for name in self.dataset_names}
        self.actions, self.states, self.episode_start, self.episode_end = [], [], [], []
        self.store_rows, sample_dataset, sample_row = [], [], []
        for d, name in enumerate(self.dataset_names):
            part = table[table["dataset"] == name].sort_values(["episode_index", "frame_index"])
            self.actions.append(
                normalize(np.stack(part["action"].to_numpy()), stats[name], "action")
            )
            self.states.append(normalize(np.stack(part["state"].to_numpy()), stats[name], "state"))
            episode = part["episode_index"].to_numpy()
            starts = np.searchsorted(episode, episode, side="left")
            ends = np.searchsorted(episode, episode, side="right") - 1
            self.episode_start.append(starts)
            self.episode_end.append(ends)
            keys = part["episode_index"].to_numpy(), part["frame_index"].to_numpy()
            store = self.stores[name]
            self.store_rows.append(store.indices_for(*keys))  # frame or feature store
            sample_dataset.append(np.full(len(part), d))
            sample_row.append(np.arange(len(part)))
        self.sample_dataset = np.concatenate(sample_dataset)
        self.sample_row = np.concatenate(sample_row)
        self.action_masks = [torch.from_numpy(action_mask(n)) for n in self.dataset_names]
        self.state_masks = [torch.from_numpy(state_mask(n)) for n in self.dataset_names]
        self.embodiments = [embodiment_id(n) for n in self.dataset_names]

    def __len__(self) -> int:
        return len(self.sample_dataset)

    def dataset_sizes(self) -> dict[str, int]:
        return {
            name: len(rows) for name, rows in zip(self.dataset_names, self.actions, strict=True)
        }

    def chunk(self, d: int, row: int) -> np.ndarray:
        """Action chunk [T, 128] from `row`, repeating the episode's last action past its end."""
        steps = np.minimum(row + np.arange(self.horizon), self.episode_end[d][row])
        return self.actions[d][steps]

    def __getitem__(self, i: int) -> dict:
        d, row = int(self.sample_dataset[i]), int(self.sample_row[i])
        store, store_row = self.stores[self.dataset_names[d]], int(self.store_rows[d][row])
        neighbors = np.clip(
            row + self.neighbor_offsets, self.episode_start[d][row], self.episode_end[d][row]
        )
        if self.online:  # images [V, 3, S, S] uint8, encoded in the training step
            observation = {
                "images": store.images(store_row),
                "instruction": store.instruction(store_row),
            }
        else:
            observation = {"features": store[store_row]}
        return {
            **observation,
            "state": torch.from_numpy(self.states[d][row].astype(np.float32)),
            "state_mask": self.state_masks[d],
            "action_mask": self.action_masks[d],
            "actions": torch.from_numpy(self.chunk(d, row).astype(np.float32)),  # [T, 128]
            "positives": torch.from_numpy(
                np.stack([self.chunk(d, int(n)) for n in neighbors]).astype(np.float32)
            ),  # [P, T, 128]
            "embodiment_id": torch.tensor(self.embodiments[d]),
            "dataset_id": torch.tensor(d),
        }


def collate_samples(items: list[dict]) -> dict:
    """Stack a batch; VLM tokens are padded to the longest sample with a key mask.

    Online-VLM batches keep images and instructions as lists: datasets differ in cameras.
    """
    observation = ("features", "images", "instruction")
    batch = {
        key: torch.stack([item[key] for item in items])
        for key in items[0]
        if key not in observation
    }
    if "images" in items[0]:
        return {**batch, **{key: [item[key] for item in items] for key in observation[1:]}}
    features = collate_features([item["features"] for item in items])
    return {
        **batch,
        "vlm_tokens": features["tokens"],
        "vlm_mask": features["mask"],
        "token_camera": features["token_camera"],
        "pooled": features["pooled"],
    }


def policy_inputs(
    batch: dict[str, torch.Tensor], cfg_alpha: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The conditioning keywords of `DriftingPolicy.forward` from a collated batch."""
    keys = (
        "vlm_tokens",
        "vlm_mask",
        "token_camera",
        "pooled",
        "embodiment_id",
        "state",
        "state_mask",
        "action_mask",
    )
    return {**{key: batch[key] for key in keys}, "cfg_alpha": cfg_alpha}


def sample_weights(samples: PolicySamples, dataset_weights: dict[str, float]) -> np.ndarray:
    """Per-sample probabilities: each dataset gets its configured share (default: its size)."""
    sizes = samples.dataset_sizes()
    _check_dataset_names("train.dataset_weights", dataset_weights, samples.dataset_names)
    shares = np.array(
        [dataset_weights.get(name, sizes[name]) for name in samples.dataset_names], float
    )
    if (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(
            f"train.dataset_weights must be >= 0 and not all zero, got {dataset_weights}"
        )
    per_sample = shares / shares.sum() / np.array([sizes[n] for n in samples.dataset_names])
    weights = per_sample[samples.sample_dataset]
    return weights / weights.sum()


def _check_dataset_names(option: str, per_dataset: dict, names: list[str]) -> None:
    """A name the registry does not know is an error (a typo would silently do nothing); a
    registered dataset this run does not train on is ignored, so one configuration serves
    environments that train on fewer sources (the smoke env has no Fetch)."""
    unknown = sorted(name for name in per_dataset if name not in REGISTRY)
    if unknown:
        raise ValueError(
            f"{option} names {unknown}, not registered datasets (the training data has "
            f"{sorted(names)})"
        )
    absent = sorted(set(per_dataset) - set(names))
    if absent:
        logger.info("%s: %s are not in this run's training data; ignored", option, absent)


def state_noise_scales(dataset_names: list[str], state_noise: dict[str, float]) -> torch.Tensor:
    """Per-dataset std of the state augmentation, indexed by a batch's `dataset_id`."""
    _check_dataset_names("train.state_noise", state_noise, dataset_names)
    return torch.tensor([float(state_noise.get(name, 0.0)) for name in dataset_names])


def perturb_state(batch: dict, scales: torch.Tensor, generator: torch.Generator) -> dict:
    """The batch with Gaussian noise of its dataset's std on every present state dim.

    The action labels stay clean: where the arm seems to be no longer predicts where it must go,
    so the policy has to read the object from the images (the copycat shortcut of proprio).
    """
    state = batch["state"]
    noise = torch.randn(state.shape, generator=generator, device=state.device, dtype=state.dtype)
    std = scales.to(state.device, state.dtype)[batch["dataset_id"]][:, None]  # [B, 1]
    return {**batch, "state": state + std * noise * batch["state_mask"]}


class StepBatchSampler(Sampler[list[int]]):
    """Yields the micro-batches of steps `start_step..max_steps-1` for one rank, by seed.

    Each micro-batch is drawn from `default_rng([seed, rank, step, micro])`: no sampler state
    to checkpoint, and a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        weights: np.ndarray,
        *,
        batch_size: int,
        accum_steps: int,
        start_step: int,
        max_steps: int,
        seed: int,
        rank: int,
    ) -> None:
        self.weights, self.batch_size, self.accum_steps = weights, batch_size, accum_steps
        self.start_step, self.max_steps, self.seed, self.rank = start_step, max_steps, seed, rank

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.accum_steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            for micro in range(self.accum_steps):
                rng = np.random.default_rng([self.seed, self.rank, step, micro])
                yield rng.choice(len(self.weights), size=self.batch_size, p=self.weights).tolist()
