"""The inference policy: observation → backbone → one generator pass → native action chunk.

The same object serves closed-loop rollouts and the latency benchmark, so what is timed is what
acts. Statistics come from the data (the normalization stage) and are inverted here, after the
model; the model only ever sees normalized tensors.
"""

import numpy as np
import torch

from drifting_kedro.action_space import (
    action_mask,
    embodiment_id,
    from_unified,
    normalize_quaternions,
    state_mask,
    state_to_unified,
)
from drifting_kedro.features.backbone import Backbone
from drifting_kedro.features.frames import resize_square
from drifting_kedro.model import DriftingPolicy, PolicyConfig, check_sampling_steps, sample_chunks
from drifting_kedro.normalization import DatasetStats, DimStats, denormalize, normalize
from drifting_kedro.sim.base import Observation
from drifting_kedro.training.checkpoint import check_registry_rows


class InferencePolicy:
    """Predicts native action chunks `[T, A]` for one observation of a registered dataset."""

    def __init__(
        self,
        model: DriftingPolicy,
        stats: DatasetStats,
        backbone: Backbone,
        *,
        image_size: int,
        num_steps: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        check_sampling_steps(model, num_steps)
        self.model = model.eval().to(device)
        self.stats, self.backbone = stats, backbone.eval().to(device)
        self.image_size, self.num_steps, self.device = image_size, num_steps, torch.device(device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict,
        backbone: Backbone,
        *,
        image_size: int,
        use_ema: bool = True,
        num_steps: int = 1,
        device: str | torch.device = "cpu",
    ) -> "InferencePolicy":
        """The policy of a self-contained checkpoint (`training.checkpoint.self_contained`),
        with the statistics it was trained on; its datasets must map as they did then."""
        check_registry_rows(checkpoint["datasets"])
        return cls(
            load_policy_model(checkpoint, use_ema),
            DatasetStats.from_dict(checkpoint["norm_stats"]),
            backbone,
            image_size=image_size,
            num_steps=num_steps,
            device=device,
        )

    @property
    def horizon(self) -> int:
        return self.model.config.action_horizon

    def conditioning(
        self, dataset: str, images: dict[str, np.ndarray], instruction: str, state: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """The model's inputs for one observation, prepared exactly as for training."""
        return self.batch_conditioning(dataset, [Observation(images, state, instruction)])

    def batch_conditioning(
        self, dataset: str, observations: list[Observation]
    ) -> dict[str, torch.Tensor]:
        """The model's inputs for B observations of one dataset, encoded in one backbone call."""
        pixels = torch.cat([observation_pixels(o.images, self.image_size) for o in observations])
        encoded = self.backbone.encode(
            pixels.to(self.device), [o.instruction for o in observations]
        )
        states = [
            normalize(
                state_to_unified(np.asarray(o.state, np.float32), dataset),
                self.stats[dataset],
                "state",
            )
            for o in observations
        ]
        count = len(observations)

        def rows(value, dtype=torch.float32):
            return torch.as_tensor(np.stack(value), dtype=dtype, device=self.device)

        return {
            # Features are stored in fp16; round the same way so inputs match training's.
            "vlm_tokens": encoded.tokens.half().float(),
            "vlm_mask": encoded.mask,
            "token_camera": encoded.token_camera,
            "pooled": encoded.pooled.half().float(),
            "embodiment_id": rows([embodiment_id(dataset)] * count, torch.long),
            "state": rows(states),
            "state_mask": rows([state_mask(dataset)] * count),
            "action_mask": rows([action_mask(dataset)] * count),
            "cfg_alpha": torch.ones(count, device=self.device),
        }

    def predict_chunk(
        self,
        dataset: str,
        images: dict[str, np.ndarray],
        instruction: str,
        state: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Native chunk [T, A]: denormalized, quaternions unit-norm, inside the data's range."""
        return self.predict_chunks(
            dataset, images, instruction, state, num_samples=1, generator=generator
        )[0]

    @torch.no_grad()
    def predict_chunks(
        self,
        dataset: str,
        images: dict[str, np.ndarray],
        instruction: str,
        state: np.ndarray,
        *,
        num_samples: int,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """`num_samples` native chunks [G, T, A] of one observation, encoded once."""
        cond = self.conditioning(dataset, images, instruction, state)
        unified = sample_chunks(self.model, cond, num_samples, self.num_steps, generator)[0]
        return self.native(dataset, unified)

    @torch.no_grad()
    def predict_batch(
        self, dataset: str, observations: list[Observation], generators: list[torch.Generator]
    ) -> np.ndarray:
        """One native chunk [B, T, A] per observation, each drawn from its own generator.

        Episodes stepped side by side share the backbone and generator calls, while each
        episode's draws stay those it would make alone (`predict_chunk` with its generator).
        """
        if len(generators) != len(observations):
            raise ValueError(
                f"predict_batch needs one generator per observation, got {len(generators)} "
                f"for {len(observations)}"
            )
        cond = self.batch_conditioning(dataset, observations)
        noise = torch.cat([self.model.draw_noise(1, self.device, g) for g in generators])
        unified = sample_chunks(self.model, cond, 1, self.num_steps, noise=noise)[:, 0]
        return self.native(dataset, unified)

    def native(self, dataset: str, unified: torch.Tensor) -> np.ndarray:
        """Normalized unified chunks [..., T, 128] -> native actions: denormalized, inside the
        demonstrations' range, quaternions unit-norm."""
        unified = denormalize(unified.float().cpu().numpy(), self.stats[dataset], "action")
        unified = clip_to_data_range(unified, self.stats[dataset].action)
        return from_unified(normalize_quaternions(unified, dataset), dataset)


def observation_pixels(images: dict[str, np.ndarray], image_size: int) -> torch.Tensor:
    """The backbone's uint8 input [1, V, 3, S, S] for one observation's camera images, cameras
    sorted and resized as ingest stored the training frames."""
    views = np.stack([resize_square(images[key][None], image_size)[0] for key in sorted(images)])
    return torch.from_numpy(views).permute(0, 3, 1, 2)[None]


def load_policy_model(checkpoint: dict, use_ema: bool = True) -> DriftingPolicy:
    """The trained generator of a checkpoint: its EMA weights by default, as the authors act."""
    model = DriftingPolicy(PolicyConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["ema" if use_ema else "model"])
    return model.eval()


def clip_to_data_range(unified: np.ndarray, stats: DimStats) -> np.ndarray:
    """Clamp each active dim (grippers included) to the range seen in the demonstrations."""
    mask = np.asarray(stats.mask, bool)
    clipped = np.clip(unified, np.asarray(stats.min), np.asarray(stats.max))
    return np.where(mask, clipped, unified)
