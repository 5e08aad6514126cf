#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: Debian packages, npm ci, build, the default model, the sample clip.
# Usage: scripts/setup.sh [runtime|test]   (test also installs what the test suite needs: GStreamer's RTSP server)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-runtime}

say() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

pkgs=(ffmpeg mosquitto mosquitto-clients openssl ca-certificates)
if [[ $profile == test ]]; then
  pkgs+=(iproute2 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
         gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a system-wide mosquitto on :1883 when it installs it; the demo and the tests run their own.
# The frame sources resize with zimg's zscale filter (src/ingest/ffmpeg.ts), part of Debian's ffmpeg on amd64 and arm64.
# (Read whole first: `grep -q` in a pipe would stop ffmpeg with SIGPIPE, which pipefail counts as a failure.)
filters=$(ffmpeg -hide_banner -filters 2>/dev/null || true)
if [[ $filters != *" zscale "* ]]; then
  say "this ffmpeg has no zscale filter (libzimg), which the cameras' frame sources need: install Debian's ffmpeg (apt-get install ffmpeg)"
  exit 1
fi

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  export ONNXRUNTIME_NODE_INSTALL=skip
  npm ci --no-audit --no-fund --loglevel=error
fi

stale=0
for addon in malloc_tune vision sched; do
  if [[ ! -f build/Release/$addon.node || native/$addon.c -nt build/Release/$addon.node || binding.gyp -nt build/Release/$addon.node ]]; then stale=1; fi
done
if (( stale )); then
  say "building the native addons (malloc thresholds, preprocessing and decoding loops, CPU affinity; docs/decisions.md)"
  npm run --silent build:native >/dev/null
fi

say "building TypeScript"
npm run --silent build

mkdir -p assets .cache
if [[ ! -f assets/vtest.avi ]]; then
  say "fetching the sample clip vtest.avi from Debian's opencv-doc package"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download opencv-doc >/dev/null && dpkg-deb -x opencv-doc_*.deb x)
  cp "$tmp/x/usr/share/doc/opencv-doc/examples/data/vtest.avi" assets/vtest.avi.part
  mv assets/vtest.avi.part assets/vtest.avi
  rm -rf "$tmp"
fi

node dist/scripts/build-model.js --if-missing
# The tests evaluate against hand-labelled photos (docs/images.md); the runtime needs none of them.
if [[ $profile == test ]]; then bash scripts/fetch-images.sh; fi
say "ready"
