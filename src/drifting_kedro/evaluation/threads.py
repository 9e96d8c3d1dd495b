"""Torch's intra-op thread count for one block of work, restored afterwards."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch threads (None: leave torch's setting as it is).

    Seeded rollouts replay exactly only at one thread count (sums round differently), and a
    single thread keeps evaluation from fighting a training job for the cores.
    """
    if count is None:
        yield
        return
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"torch thread count must be a positive integer or null, got {count!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
