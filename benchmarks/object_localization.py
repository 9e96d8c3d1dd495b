"""How precisely a backbone's image tokens locate Fetch's block and goal, by image size and scenes.

Run: python benchmarks/object_localization.py [--scenes 400,1200] [--image-sizes 96,160]
     [--image-strides 32,16]

Before a two-hour training run, this answers whether the features can place the block finely
enough for a grasp (the gripper's fingers close ~2 cm around it). For each image size, the first
frame of every scene is rendered in both views and encoded; a ridge readout from the flattened
image tokens (spatial layout kept) is fitted on the first n demonstration scenes (even seeds,
lambda by 5-fold cross-validation on them) and scored on held-out evaluation scenes (odd seeds,
the ones the closed loop uses). The RMSE in cm is a floor on what a policy reading the same
features can do without more scenes or pixels. `small-real` is measured at each of its image
strides (its last 3x3 map at 96 px, or the 6x6 map of block 13), on the same renders.
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
    backbones: list[torch.nn.Module], dataset: str, seeds: list[int], image_size: int
) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """Per backbone, the flattened image tokens [N, F] of each scene's first frame and the image
    tokens per view; block + goal xyz [N, 6]."""
    env = make_env(dataset, image_size=image_size)
    features: list[list[np.ndarray]] = [[] for _ in backbones]
    cells, targets = [0] * len(backbones), []
    try:
        for seed in seeds:
            observation = env.reset(seed)
            pixels = observation_pixels(observation.images, image_size)  # [1, V, 3, S, S]
            for i, backbone in enumerate(backbones):
                with torch.no_grad():
                    encoded = backbone.encode(pixels, [observation.instruction])
                image_tokens = encoded.tokens[0][encoded.token_camera[0] >= 0]  # [V * cells, H]
                features[i].append(image_tokens.flatten().numpy())
                cells[i] = len(image_tokens) // pixels.shape[1]
            targets.append(np.concatenate([env.object_position, env.goal]))
    finally:
        env.close()
    return [np.stack(f) for f in features], np.stack(targets), cells


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
    parser.add_argument("--image-strides", default="32,16", help="small-real's image_stride")
    args = parser.parse_args()
    scene_counts = sorted(int(n) for n in args.scenes.split(","))
    options = (
        [{"image_stride": int(s)} for s in args.image_strides.split(",")]
        if args.backbone == "small-real"
        else [{}]
    )
    backbones = [build_backbone(args.backbone, **o).eval() for o in options]
    print(f"{args.dataset}, backbone {args.backbone}, {args.held_out} held-out scenes")  # noqa: T201
    print(  # noqa: T201
        "image size | options | scenes | tokens/view | lambda | RMSE cm block x y | goal x y z"
    )
    for image_size in (int(s) for s in args.image_sizes.split(",")):
        start = time.perf_counter()
        train_features, y_train, cells = scene_features(
            backbones, args.dataset, demo_seeds(0, scene_counts[-1]), image_size
        )
        test_features, y_test, _ = scene_features(
            backbones, args.dataset, eval_seeds(0, args.held_out), image_size
        )
        seconds = time.perf_counter() - start
        for option, x_train, x_test, tokens in zip(
            options, train_features, test_features, cells, strict=True
        ):
            for n in scene_counts:
                xs, xt = standardize(x_train[:n], x_test)
                lam = choose_lambda(xs, y_train[:n])
                weights, mean = fit_ridge(xs, y_train[:n], lam)
                rmse = np.sqrt(((xt @ weights + mean - y_test) ** 2).mean(0)) * 100
                print(  # noqa: T201
                    f"{image_size:10d} | {option} | {n:6d} | {tokens:11d} | {lam:6g} | "
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
