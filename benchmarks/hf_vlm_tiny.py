"""Per-sample forward time of the tiny-random VLM backbones (CPU, 1 torch thread).

Both backbones are timed in the same run, interleaved, on the same uint8 inputs (V = 2 views),
so their ratio is measured side by side. Usage: python benchmarks/hf_vlm_tiny.py [--reps 20]
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from drifting_kedro.features.backbone import build_backbone  # noqa: E402

NAMES = ("qwen3vl-tiny-random", "paligemma2-tiny-random")


def time_encode(backbone, images: torch.Tensor, instructions: list[str]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        backbone.encode(images, instructions)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbones = {name: build_backbone(name) for name in NAMES}
    gen = torch.Generator().manual_seed(0)
    print(f"{'backbone':<24} {'B':>3} {'HxW':>7} {'L':>4} {'ms/sample':>10}")
    for batch in (1, 8):
        for side in (64, 96):
            images = torch.randint(
                0, 256, (batch, 2, 3, side, side), dtype=torch.uint8, generator=gen
            )
            instructions = ["pick up the cube and transfer it to the other arm"] * batch
            for backbone in backbones.values():  # warm-up
                time_encode(backbone, images, instructions)
            times: dict[str, list[float]] = {name: [] for name in NAMES}
            for _ in range(args.reps):
                for name, backbone in backbones.items():
                    times[name].append(time_encode(backbone, images, instructions))
            medians = {name: statistics.median(t) / batch * 1e3 for name, t in times.items()}
            for name, backbone in backbones.items():
                with torch.no_grad():
                    length = backbone.encode(images[:1], instructions[:1]).tokens.shape[1]
                print(
                    f"{name:<24} {batch:>3} {side:>3}x{side:<3} {length:>4} {medians[name]:>10.2f}"
                )
            ratio = medians[NAMES[0]] / medians[NAMES[1]]
            label = "ratio qwen/paligemma"
            print(f"{label:<24} {batch:>3} {side:>3}x{side:<3} {'':>4} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
