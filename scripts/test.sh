#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is missing, builds, type-checks, lints, runs tap.
# Tests start their own Mosquitto and RTSP servers on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "[test] type-checking tests" >&2
npx tsc -p test/tsconfig.json --noEmit
echo "[test] lint and format check (biome.json)" >&2
npm run --silent lint
echo "[test] tap" >&2
mkdir -p .cache
set +e
npx tap "$@" 2>&1 | tee .cache/tap-output.txt
rc=${PIPESTATUS[0]}
set -e
# tap's closing line is "# { total: N, pass: P[, fail: F][, skip: S]... }"; repeat it in the plain form CI reads.
node -e '
  const line = require("node:fs").readFileSync(".cache/tap-output.txt", "utf8").split("\n").filter((l) => l.startsWith("# { total:")).pop();
  if (!line) { console.log("0 passed, 1 failed"); process.exit(0); }
  const n = (k) => Number((line.match(new RegExp(k + ": (\\d+)")) || [0, 0])[1]);
  console.log(`${n("pass")} passed, ${n("fail")} failed, ${n("skip") + n("todo")} skipped`);
'
exit "$rc"
