"""Expert success rates, generation speed and render cost of the simulated datasets.

Run: python benchmarks/sim_generation.py [--seeds 20] [--image-size 96]
Episodes are rolled out (rendered at image_size) on demo seeds, exactly as `record_dataset` does,
without the video encoding; render costs are measured side by side in the same process.
"""

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from drifting_kedro.sim import SIM_TASKS, demo_seeds, make_env, make_expert  # noqa: E402
from drifting_kedro.sim.record import rollout  # noqa: E402

torch.set_num_threads(1)


def render_costs(repeats: int = 20) -> None:
    """Per-step render cost: gym-aloha's own observation renders vs our single small camera."""
    env = make_env("aloha_sim_transfer_cube", image_size=96)
    env.reset(0)
    physics = env.physics
    # gym-aloha renders top, angle and front_close at 480x640 in every observation; a fresh
    # Physics keeps the XML's 4096 shadow map and 4x MSAA (ours were switched off on its model).
    from dm_control import mujoco as dm_mujoco
    from gym_aloha.constants import ASSETS_DIR

    stock = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / "bimanual_viperx_transfer_cube.xml"))
    stock.data.qpos[:] = physics.data.qpos
    stock.forward()
    for camera in ("top", "angle", "front_close"):
        stock.render(height=480, width=640, camera_id=camera)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for camera in ("top", "angle", "front_close"):
            stock.render(height=480, width=640, camera_id=camera)
    before = (time.perf_counter() - start) / repeats
    renderer = env._renderer
    renderer.render(physics.data.ptr)
    start = time.perf_counter()
    for _ in range(repeats * 5):
        renderer.render(physics.data.ptr)
    after = (time.perf_counter() - start) / (repeats * 5)
    start = time.perf_counter()
    for _ in range(repeats * 5):
        physics.step(10)  # one 50 Hz control step = 10 physics substeps
    physics_step = (time.perf_counter() - start) / (repeats * 5)
    print(  # noqa: T201
        f"render per ALOHA step: gym-aloha 3x480x640 shadows+MSAA {before * 1e3:.1f} ms | "
        f"ours 1x96x96 plain {after * 1e3:.2f} ms ({before / after:.0f}x less) | "
        f"physics {physics_step * 1e3:.2f} ms"
    )
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--tasks", nargs="*", default=sorted(SIM_TASKS))
    args = parser.parse_args()
    render_costs()
    for name in args.tasks:
        env, expert = make_env(name, image_size=args.image_size), make_expert(name)
        seeds = demo_seeds(0, args.seeds)
        start = time.perf_counter()
        outcomes = [rollout(env, expert, seed).success for seed in seeds]
        seconds = time.perf_counter() - start
        env.close()
        failed = [seed for seed, ok in zip(seeds, outcomes, strict=True) if not ok]
        print(  # noqa: T201
            f"{name:26s} expert success {sum(outcomes):2d}/{len(seeds)} "
            f"({np.mean(outcomes):.0%}) | {seconds / len(seeds):.2f} s/episode | "
            f"{60 * sum(outcomes) / seconds:.1f} successful episodes/min at "
            f"{args.image_size}x{args.image_size} | failed seeds {failed}"
        )


if __name__ == "__main__":
    main()
