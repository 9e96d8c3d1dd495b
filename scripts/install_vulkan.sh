#!/usr/bin/env bash
# ManiSkill 3 renders its cameras through Vulkan. With no GPU that is Mesa's CPU driver, lavapipe,
# and Mesa 22 (Debian 12's own) lacks the VK_KHR_external_semaphore_fd extension sapien needs, so
# on Debian 12 the driver comes from bookworm-backports (Mesa 25). A machine that already has a
# Mesa >= 23 lavapipe, or is not Debian 12, is left alone; only ManiSkill's tasks need this.
set -euo pipefail
mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [ -n "$mesa" ] && [ "${mesa%%.*}" -ge 23 ]; then
  exit 0
fi
codename=$(. "${OS_RELEASE:-/etc/os-release}" 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [ "$codename" != "bookworm" ]; then
  echo "setup: ManiSkill needs a Vulkan driver with VK_KHR_external_semaphore_fd (Mesa >= 23 lavapipe" \
    "or a GPU driver); this is not Debian 12, install it with your package manager" >&2
  exit 0
fi
packages="-t bookworm-backports mesa-vulkan-drivers libvulkan1"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
    echo "setup: ManiSkill needs Mesa 25's Vulkan driver; as root run: apt-get install $packages" >&2
    exit 0
  fi
  sudo="sudo -n"
fi
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
# A failed install leaves the rest of the setup (and every other simulator) working: ManiSkill's
# tasks then stop with the same apt command in their error.
if ! { $sudo apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null; }; then
  echo "setup: installing Mesa 25's Vulkan driver failed (see apt's message above); ManiSkill's" \
    "tasks need it: apt-get install $packages" >&2
fi
