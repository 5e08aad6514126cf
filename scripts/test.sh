#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is missing, builds, type-checks, runs tap.
# Tests start their own Mosquitto and RTSP servers on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "[test] type-checking tests" >&2
npx tsc -p test/tsconfig.json --noEmit
echo "[test] tap" >&2
exec npx tap "$@"
