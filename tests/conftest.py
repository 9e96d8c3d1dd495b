"""Test-wide environment: offline hub, headless MuJoCo, one torch thread per process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402

torch.set_num_threads(1)
