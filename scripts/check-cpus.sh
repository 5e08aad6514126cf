#!/usr/bin/env bash
# INT8 against FP32 on every CPU kind the agent supports, three of them emulated with qemu (README, "Checking other
# CPUs"). Builds what it needs: the project (scripts/setup.sh) and, for the arm64 kinds, .cache/arm64 (scripts/arm64.sh).
# Usage: bash scripts/check-cpus.sh [--quick] [--cpus a,b] [--models-dir DIR] [--json] … [image…]   (--help for all)
set -euo pipefail
cd "$(dirname "$0")/.."
for a in "$@"; do
  if [[ $a == -h || $a == --help ]]; then
    [[ -f dist/scripts/check-cpus.js ]] || npx tsc -p tsconfig.json
    exec node dist/scripts/check-cpus.js --help
  fi
done
bash scripts/setup.sh runtime >&2
exec node dist/scripts/check-cpus.js "$@"
