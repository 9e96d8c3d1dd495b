"""How precisely a backbone's image tokens locate Fetch's block and goal, by image size and scenes.

Run: python benchmarks/object_localization.py [--scenes 400,1200] [--image-sizes 96,160]

Before a two-hour training run, this answers whether the features can place the block finely
enough for a grasp (the gripper's fingers close ~2 cm around it). For each image size, the first
frame of every scene is rendered in both views and encoded; a ridge readout from the flattened
image tokens (spatial layout kept) is fitted on the first n demonstration scenes (even seeds,
lambda by 5-fold cross-validation on them) and scored on held-out evaluation scenes (odd seeds,
the ones the closed loop uses). The RMSE in cm is a floor on what a policy reading the same
features can do without more scenes or pixels.
"""

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from drifting_kedro.evaluation.policy import observation_pixels  # noqa: E402
from drifting_kedro.features.backbone import build_backbone  # noqa: E402
from drifting_kedro.sim import demo_seeds, make_env  # noqa: E402
from drifting_kedro.sim.record import eval_seeds  # noqa: E402

torch.set_num_threads(1)
RIDGE_LAMBDAS = (1e1, 1e2, 1e3, 1e4, 1e5)


def scene_features(
    backbone: torch.nn.Module, dataset: str, seeds: list[int], image_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Flattened image tokens [N, F] of each scene's first frame, block + goal xyz [N, 6], and
    the image tokens per view."""
    env = make_env(dataset, image_size=image_size)
    features, targets = [], []
    try:
        for seed in seeds:
            observation = env.reset(seed)
            pixels = observation_pixels(observation.images, image_size)  # [1, V, 3, S, S]
            with torch.no_grad():
                encoded = backbone.encode(pixels, [observation.instruction])
            image_tokens = encoded.tokens[0][encoded.token_camera[0] >= 0]  # [V * cells, H]
            features.append(image_tokens.flatten().numpy())
            targets.append(np.concatenate([env.object_position, env.goal]))
    finally:
        env.close()
    return np.stack(features), np.stack(targets), len(image_tokens) // pixels.shape[1]


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score both by the training scenes' statistics, dropping features constant in them
    (a ReLU channel never active in training would otherwise scale test values by 1e6)."""
    std = train.std(0)
    varying = std > 1e-4
    center, scale = train.mean(0)[varying], std[varying]
    return (train[:, varying] - center) / scale, (test[:, varying] - center) / scale


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-form ridge (features outnumber scenes): weights [F, 6] and the target mean."""
    mean = y.mean(0)
    alpha = np.linalg.solve(x @ x.T + lam * np.eye(len(x)), y - mean)
    return x.T @ alpha, mean


def choose_lambda(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """The ridge lambda with the lowest 5-fold cross-validated squared error on (x, y)."""
    fold = np.arange(len(x)) % folds

    def cv_error(lam: float) -> float:
        errors = []
        for k in range(folds):
            weights, mean = fit_ridge(x[fold != k], y[fold != k], lam)
            errors.append(((x[fold == k] @ weights + mean - y[fold == k]) ** 2).sum())
        return float(np.sum(errors))

    return min(RIDGE_LAMBDAS, key=cv_error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fetch_pick_and_place_abs")
    parser.add_argument("--backbone", default="small-real")
    parser.add_argument("--scenes", default="400,1200", help="training scene counts")
    parser.add_argument("--image-sizes", default="96,160")
    parser.add_argument("--held-out", type=int, default=200, help="evaluation scenes")
    args = parser.parse_args()
    scene_counts = sorted(int(n) for n in args.scenes.split(","))
    backbone = build_backbone(args.backbone).eval()
    print(f"{args.dataset}, backbone {args.backbone}, {args.held_out} held-out scenes")  # noqa: T201
    print("image size | train scenes | tokens/view | lambda | RMSE cm block x y | goal x y z")  # noqa: T201
    for image_size in (int(s) for s in args.image_sizes.split(",")):
        start = time.perf_counter()
        x_train, y_train, cells = scene_features(
            backbone, args.dataset, demo_seeds(0, scene_counts[-1]), image_size
        )
        x_test, y_test, _ = scene_features(
            backbone, args.dataset, eval_seeds(0, args.held_out), image_size
        )
        seconds = time.perf_counter() - start
        for n in scene_counts:
            xs, xt = standardize(x_train[:n], x_test)
            lam = choose_lambda(xs, y_train[:n])
            weights, mean = fit_ridge(xs, y_train[:n], lam)
            rmse = np.sqrt(((xt @ weights + mean - y_test) ** 2).mean(0)) * 100
            print(  # noqa: T201
                f"{image_size:10d} | {n:12d} | {cells:11d} | {lam:6g} | "
                f"{rmse[0]:5.2f} {rmse[1]:5.2f} | {rmse[3]:5.2f} {rmse[4]:5.2f} {rmse[5]:5.2f}"
            )
        print(f"  ({seconds:.0f} s to render and encode {scene_counts[-1] + args.held_out} scenes)")  # noqa: T201
    spread = y_test.std(0) * 100
    print(  # noqa: T201
        f"spread of the held-out scenes, cm: block {spread[0]:.1f} {spread[1]:.1f}, "
        f"goal {spread[3]:.1f} {spread[4]:.1f} {spread[5]:.1f}"
    )


if __name__ == "__main__":
    main()
