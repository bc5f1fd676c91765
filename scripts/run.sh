#!/usr/bin/env bash
# Installs Lifeguard into ./.venv and runs the agent in the foreground with the shipped
# config.yaml (state in ./state/lifeguard.db, API on http://127.0.0.1:9810). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "run.sh: python3-venv is missing: sudo apt-get install python3-venv" >&2; exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check .
exec .venv/bin/lifeguard run -c config.yaml "$@"
