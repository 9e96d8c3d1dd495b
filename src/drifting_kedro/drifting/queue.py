"""FIFO sample queue (MoCo-style, paper A.8) for the seeds' global-queue drifting recipe."""

from __future__ import annotations

import torch
from torch import Tensor


class SampleQueue:
    """Ring buffer of the last ``capacity`` samples of dimension ``dim``.

    ``push`` overwrites the oldest samples; ``sample`` draws without replacement. Its state is
    a plain dict of tensors and ints so a trainer can store it in a checkpoint.
    """

    def __init__(self, capacity: int, dim: int, device: torch.device | str | None = None) -> None:
        if capacity < 1 or dim < 1:
            raise ValueError(f"SampleQueue needs capacity >= 1 and dim >= 1, got {capacity}, {dim}")
        self.capacity, self.dim = capacity, dim
        self.buffer = torch.zeros(capacity, dim, device=device)  # [capacity, D]
        self.ptr = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @torch.no_grad()
    def push(self, samples: Tensor) -> None:
        """Append samples [..., D] (detached, float32); keeps only the newest ``capacity``."""
        if samples.shape[-1] != self.dim:
            raise ValueError(f"SampleQueue of dim {self.dim} got samples {tuple(samples.shape)}")
        flat = samples.detach().reshape(-1, self.dim)[-self.capacity :]
        idx = (self.ptr + torch.arange(flat.shape[0])) % self.capacity
        self.buffer[idx.to(self.buffer.device)] = flat.to(self.buffer.device, torch.float32)
        self.ptr = (self.ptr + flat.shape[0]) % self.capacity
        self.size = min(self.size + flat.shape[0], self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` distinct stored samples [n, D] in random order."""
        if not 1 <= n <= self.size:
            raise ValueError(f"cannot sample {n} from a SampleQueue holding {self.size} samples")
        gen_device = generator.device if generator is not None else None
        idx = torch.randperm(self.size, generator=generator, device=gen_device)[:n]
        return self.buffer[idx.to(self.buffer.device)].clone()

    def state_dict(self) -> dict[str, Tensor | int]:
        return {"buffer": self.buffer.cpu().clone(), "ptr": self.ptr, "size": self.size}

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        buffer = state["buffer"]
        if not isinstance(buffer, Tensor) or tuple(buffer.shape) != (self.capacity, self.dim):
            shape = tuple(buffer.shape) if isinstance(buffer, Tensor) else type(buffer)
            raise ValueError(
                f"queue state has buffer {shape}, expected ({self.capacity}, {self.dim}); "
                "train.queue_size or the action layout changed since the checkpoint"
            )
        self.buffer = buffer.to(self.buffer.device, torch.float32).clone()
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
