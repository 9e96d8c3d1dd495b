"""Latency of one drifting forward pass against K-step diffusion / flow sampling on the same DiT.

Measured side by side in one run, one torch thread, batch of one observation:
    python benchmarks/model_latency.py --sizes tiny B --steps 10 --repeats 9
"""

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch

from drifting_kedro.model import DiffusionHead, FlowMatchingHead, build_policy


def _cond(batch: int, tokens: int, vlm_hidden: int) -> dict[str, torch.Tensor]:
    mask = torch.zeros(batch, 128)
    mask[:, 16:32] = 1.0  # bimanual region
    return {
        "vlm_tokens": torch.randn(batch, tokens, vlm_hidden),
        "vlm_mask": torch.ones(batch, tokens, dtype=torch.bool),
        "token_camera": torch.zeros(batch, tokens, dtype=torch.long),
        "pooled": torch.randn(batch, vlm_hidden),
        "embodiment_id": torch.full((batch,), 2),
        "state": torch.randn(batch, 128),
        "state_mask": mask.clone(),
        "action_mask": mask,
        "cfg_alpha": torch.ones(batch),
    }


def _interleaved_medians(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per call, timing the calls round-robin so machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "B"])
    parser.add_argument("--steps", type=int, default=10, help="K for the multi-step heads")
    parser.add_argument("--tokens", type=int, default=64, help="VLM tokens per observation")
    parser.add_argument("--vlm-hidden", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cond = _cond(1, args.tokens, args.vlm_hidden)
    print(f"batch 1, T=16, {args.tokens} VLM tokens of width {args.vlm_hidden}, 1 thread")  # noqa: T201
    for size in args.sizes:
        policies = {
            head: build_policy(size, vlm_hidden_size=args.vlm_hidden, head=head).eval()
            for head in ("drifting", "diffusion", "flow")
        }
        calls = {
            "drifting": partial(policies["drifting"].generate, cond, 1),
            "diffusion": partial(DiffusionHead().sample, policies["diffusion"], cond, args.steps),
            "flow": partial(FlowMatchingHead().sample, policies["flow"], cond, args.steps),
        }
        with torch.no_grad():
            ms = _interleaved_medians(calls, args.repeats)
        params = policies["drifting"].num_parameters() / 1e6
        line = f"{size:>4} ({params:6.1f}M): drifting 1 step {ms['drifting']:8.2f} ms"
        for head in ("diffusion", "flow"):
            ratio = ms[head] / ms["drifting"]
            line += f" | {head} {args.steps} steps {ms[head]:8.2f} ms ({ratio:4.1f}x)"
        print(line)  # noqa: T201


if __name__ == "__main__":
    main()
