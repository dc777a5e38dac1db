#!/usr/bin/env bash
# What `make bench` needs beyond `make install`: wrk (Debian's package) and the `bench` extra (matplotlib).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
.venv/bin/pip install --quiet -e '.[bench]'
