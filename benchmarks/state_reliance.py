"""How much a Fetch policy's targets follow the arm's reported position instead of the scene.

Run (from the project that trained the checkpoints):
    python benchmarks/state_reliance.py data/06_models/runs/<id>/checkpoints/step_8000.pt ...
    [--scenes 20] [--expert-steps 6] [--shift 0.03]

A pick-and-place demonstration's absolute targets are the block, then the goal: where the grip
is never changes them. A policy that has learnt the shortcut "the target is near the grip" moves
its targets when only the state moves. For each held-out scene (odd seeds, the closed loop's),
the scripted expert acts for k steps, so the observation is one a demonstration passes through
(every episode starts from the same pose: a shifted state at k = 0 is one no demonstration
shows). Then the grip's x and y in the state are shifted by -shift and +shift, the images
unchanged, and the slope d target / d state of the chunk's first `--horizon` targets is
measured, averaged over `--draws` noise draws. 0 reads the scene only; 1 copies the state.
"""

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from drifting_kedro.evaluation.policy import InferencePolicy  # noqa: E402
from drifting_kedro.features.backbone import build_backbone  # noqa: E402
from drifting_kedro.sim import make_env  # noqa: E402
from drifting_kedro.sim.experts import make_expert  # noqa: E402
from drifting_kedro.sim.record import eval_seeds  # noqa: E402
from drifting_kedro.training.checkpoint import load_run_checkpoint  # noqa: E402

torch.set_num_threads(1)
DATASET = "fetch_pick_and_place_abs"


def mean_targets(policy: InferencePolicy, observation, state: np.ndarray, args) -> np.ndarray:
    """Mean target xy over the chunk's first `horizon` steps and `draws` noise draws: [2]."""
    chunks = policy.predict_chunks(
        DATASET,
        observation.images,
        observation.instruction,
        state,
        num_samples=args.draws,
        generator=torch.Generator().manual_seed(0),
    )  # [draws, T, A]
    return chunks[:, : args.horizon, :2].mean(axis=(0, 1))


def slopes(policy: InferencePolicy, seed: int, expert_steps: int, args) -> np.ndarray:
    """d target / d state for x and y at one scene after `expert_steps` expert actions: [2]."""
    env = make_env(DATASET, image_size=args.image_size)
    try:
        observation = env.reset(seed)
        expert = make_expert(DATASET)
        expert.start(env, seed)
        for _ in range(expert_steps):
            observation, *_ = env.step(expert.act(observation))
        out = np.zeros(2)
        for axis in (0, 1):
            moved = []
            for sign in (-1.0, 1.0):
                state = observation.state.copy()
                state[axis] += sign * args.shift
                moved.append(mean_targets(policy, observation, state, args)[axis])
            out[axis] = (moved[1] - moved[0]) / (2 * args.shift)
        return out
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files of Fetch-trained runs")
    parser.add_argument("--scenes", type=int, default=20, help="held-out scenes")
    parser.add_argument("--expert-steps", default="6", help="expert actions before measuring")
    parser.add_argument("--shift", type=float, default=0.03, help="metres added to the grip")
    parser.add_argument("--horizon", type=int, default=8, help="chunk steps averaged")
    parser.add_argument("--draws", type=int, default=4, help="noise draws averaged")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--backbone", default="small-real")
    args = parser.parse_args()
    backbone = build_backbone(args.backbone)
    steps = [int(k) for k in args.expert_steps.split(",")]
    print(f"{DATASET}: d target / d state over {args.scenes} held-out scenes")  # noqa: T201
    print("checkpoint | expert steps | x mean (median) | y mean (median)")  # noqa: T201
    for path in args.checkpoints:
        policy = InferencePolicy.from_checkpoint(
            load_run_checkpoint(path), backbone, image_size=args.image_size
        )
        for k in steps:
            per_scene = np.stack([slopes(policy, s, k, args) for s in eval_seeds(0, args.scenes)])
            mean, median = per_scene.mean(0), np.median(per_scene, axis=0)
            print(  # noqa: T201
                f"{path} | {k} | {mean[0]:.2f} ({median[0]:.2f}) | {mean[1]:.2f} ({median[1]:.2f})"
            )


if __name__ == "__main__":
    main()
