"""Time the drifting field against one float32 matmul of the same shapes (run side by side).

python benchmarks/drifting_field.py                 # N=4096, M=4352, D=128
python benchmarks/drifting_field.py --large         # also N = M = 65,536 (minutes)
"""

# ruff: noqa: T201 (a benchmark script prints its figures)
from __future__ import annotations

import argparse
import resource
import time

import torch

from drifting_kedro.drifting import compute_drift


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4096, help="queries (generated samples)")
    parser.add_argument("--positives", type=int, default=256, help="targets = n + positives")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="also run N = M = 65,536 once")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, dim = args.n, args.dim
    x = torch.randn(n, dim, generator=gen)
    y_pos = torch.randn(args.positives, dim, generator=gen) + 0.5
    m = n + args.positives
    targets = torch.randn(m, dim, generator=gen)
    out = torch.empty(n, m)

    t_mm = _best_time(lambda: torch.mm(x, targets.T, out=out), args.repeats)
    t_one = _best_time(lambda: compute_drift(x, y_pos, temperatures=(0.05,)), args.repeats)
    t_three = _best_time(lambda: compute_drift(x, y_pos), args.repeats)
    print(f"threads={args.threads}  N={n}  M={m}  D={dim}")
    print(f"matmul [N,D]@[D,M]      {t_mm * 1e3:8.1f} ms")
    print(f"field, 1 temperature    {t_one * 1e3:8.1f} ms   ratio {t_one / t_mm:5.2f}x")
    print(f"field, 3 temperatures   {t_three * 1e3:8.1f} ms   ratio {t_three / t_mm:5.2f}x")

    if args.large:
        big = 65_536
        xb = torch.randn(big, dim, generator=gen)
        yb = torch.randn(big, dim, generator=gen) + 0.5
        start = time.perf_counter()
        _, stats = compute_drift(xb, yb, xb.flip(0), temperatures=(0.05,))
        elapsed = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"N = M = {big}, D={dim}, 1 temperature: {elapsed:.1f} s, peak RSS {peak_gib:.2f} GiB"
        )
        print(f"  stats {stats}")


if __name__ == "__main__":
    main()
