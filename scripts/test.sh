#!/usr/bin/env bash
# Installs everything the tests need, runs ruff and mypy, then the whole suite (extra arguments
# go to pytest). Any of the three failing fails the run.
# As root on Debian/Ubuntu it also installs what is missing: python3-venv, a Docker engine
# (docker.io), busybox-static (the tests build their container image from it), Prometheus
# Alertmanager, systemd (for systemd-analyze, which checks the shipped unit), debootstrap and
# docker-compose (the image, installer and Compose tests) and chromium (the status page test). The
# tests start their own dockerd and Alertmanager; nothing here starts one.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # verifies and rates the unit
# The image tests: a Debian base made with debootstrap (cached under ~/.cache/lifeguard-tests) and the
# Compose example run with the real compose tool.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# The status page is checked in headless Chromium (that test skips without it, and fails under CI=true).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: not root, cannot install: ${missing[*]} (Docker and Alertmanager tests will skip)" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Lint and types first: both are fast, and a failure there fails the run like a failing test.
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
