"""Closed-loop success against training wall time: every kept checkpoint of one or more runs.

Run (from the project that trained the runs, each with `train.trainer.keep_every`):
    python benchmarks/learning_curve.py --run default=data/06_models/runs/<id> \
        --run g4=data/06_models/runs/<id2> --episodes 50 --out docs/figures/learning_curve

Each kept `checkpoints/step_<N>.pt` (and `final.pt`) is scored in closed loop on every task
named with `--task`, over the evaluation's held-out seeds (odd, never a demonstration's), with
temporal ensembling and EMA weights as `kedro run --pipeline=evaluate` does. Training minutes
are the wall time from the run's `config.json` (written just before torchrun starts) to the
checkpoint file, so they include the launcher's start-up. Prints a markdown table and writes
`<out>.csv` and `<out>.png` (success rate against training minutes per task, with the 95 %
Wilson intervals of the seeds).
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import csv
import os
import re
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from drifting_kedro.evaluation.policy import InferencePolicy  # noqa: E402
from drifting_kedro.evaluation.rollouts import evaluate_closed_loop  # noqa: E402
from drifting_kedro.features.backbone import build_backbone  # noqa: E402
from drifting_kedro.sim.record import eval_seeds  # noqa: E402
from drifting_kedro.training.checkpoint import load_run_checkpoint  # noqa: E402

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def kept_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of a run's kept checkpoints, in step order; final.pt if no step_ file has
    its step."""
    folder = run_dir / "checkpoints"
    kept = {int(m.group(1)): p for p in folder.glob("step_*.pt") if (m := STEP_FILE.search(p.name))}
    final = folder / "final.pt"
    if final.exists():
        step = int(load_run_checkpoint(final)["step"])
        kept.setdefault(step, final)
    if not kept:
        raise FileNotFoundError(
            f"{folder} holds no step_<N>.pt or final.pt; train with train.trainer.keep_every"
        )
    return sorted(kept.items())


def score(path: Path, tasks: list[str], args: argparse.Namespace) -> dict[str, dict]:
    policy = InferencePolicy.from_checkpoint(
        load_run_checkpoint(path), build_backbone(args.backbone), image_size=args.image_size
    )
    return {
        task: evaluate_closed_loop(
            policy,
            task,
            eval_seeds(0, args.episodes),
            image_size=args.image_size,
            replan_every=25,
            temporal_ensemble=True,
            videos=0,
            threads=args.threads,
            parallel_envs=args.parallel_envs,
        )[0]
        for task in tasks
    }


def plot(rows: list[dict], tasks: list[str], path: Path) -> None:
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for label in dict.fromkeys(row["run"] for row in rows):
            points = [r for r in rows if r["run"] == label and r["task"] == task]
            minutes = [r["minutes"] for r in points]
            rate = [r["success_rate"] for r in points]
            errors = [
                [r["success_rate"] - r["ci_low"] for r in points],
                [r["ci_high"] - r["success_rate"] for r in points],
            ]
            axis.errorbar(minutes, rate, yerr=errors, marker="o", capsize=3, label=label)
        axis.set(title=task, xlabel="training minutes (2 CPU cores)", ylabel="success", ylim=(0, 1))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", action="append", required=True, help="label=run_dir")
    parser.add_argument(
        "--task", action="append", help="simulated dataset (default: the runs' sim datasets)"
    )
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--backbone", default="small-real")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parallel-envs", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("learning_curve"))
    args = parser.parse_args()
    tasks = args.task or ["aloha_sim_transfer_cube", "fetch_pick_and_place_abs"]
    rows = []
    for spec in args.run:
        label, _, folder = spec.partition("=")
        run_dir = Path(folder)
        started = (run_dir / "config.json").stat().st_mtime
        for step, path in kept_checkpoints(run_dir):
            minutes = (path.stat().st_mtime - started) / 60
            for task, metrics in score(path, tasks, args).items():
                rows.append(
                    {
                        "run": label,
                        "step": step,
                        "minutes": round(minutes, 1),
                        "task": task,
                        "successes": round(metrics["success_rate"] * metrics["episodes"]),
                        "episodes": int(metrics["episodes"]),
                        "success_rate": metrics["success_rate"],
                        "ci_low": metrics["success_ci95_low"],
                        "ci_high": metrics["success_ci95_high"],
                    }
                )
                row = rows[-1]
                print(
                    f"| {label} | {step} | {row['minutes']} | {task} | "
                    f"{row['successes']}/{row['episodes']} | "
                    f"{row['ci_low']:.0%}-{row['ci_high']:.0%} |",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, tasks, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
