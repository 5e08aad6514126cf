#!/usr/bin/env bash
# Installs (or removes) the edgepatrol agent as a systemd service on a Debian-based gateway (x86_64 or aarch64).
# Run from a checkout of the project, as root. `--help` for the options and exit codes.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo bash scripts/install.sh [--prefix DIR] [--skip-setup]
       sudo bash scripts/install.sh --uninstall [--purge] [--prefix DIR]

Installs the edgepatrol agent from this checkout as a systemd service (Debian 12 based, x86_64 or aarch64):
  1. checks the OS and CPU (x86_64 or aarch64) and Node.js >= 20 at /usr/bin/node (the unit runs it);
  2. runs `bash scripts/setup.sh runtime` in the checkout: Debian packages (ffmpeg, openssl, ...; plus g++,
     make and python3 to build better-sqlite3 and the native addons), `npm ci` (onnxruntime-node and sharp bring
     their prebuilt x64/arm64 binaries), the native addons, the TypeScript build and the default model;
  3. copies the runtime files (package.json, package-lock.json, bin/, dist/src/, build/Release/*.node, the
     production npm packages without devDependencies, models/, systemd/, examples/, docs/config.md) to
     /opt/edgepatrol: built next to it, then swapped in, so a re-run replaces the whole tree;
  4. creates the system user and group `edgepatrol` (no home, shell /usr/sbin/nologin) if missing;
  5. /etc/edgepatrol/ (root:edgepatrol, 0750) and /etc/edgepatrol/gateway.yaml from examples/gateway.yaml
     (edgepatrol:edgepatrol, 0600) ONLY if that file does not exist: a technician's config is never overwritten;
  6. /var/lib/edgepatrol/ (edgepatrol:edgepatrol, 0750), the config's gateway.dataDir: outbox and evidence;
  7. /etc/systemd/system/edgepatrol.service, then `systemctl daemon-reload` and `systemctl enable edgepatrol`.
     The service is not started: edit the config first (the commands to follow are printed at the end).
Re-running it refreshes /opt/edgepatrol and the unit file; the config and the data are left as they are.

Options:
  --prefix DIR   install into DIR as a scratch root (DIR/opt/edgepatrol, DIR/etc/edgepatrol, ...), e.g. for tests
                 or packaging. The installed files still name the real paths (/opt/edgepatrol, /etc/edgepatrol).
                 With --prefix no user is created, nothing is chowned and systemctl is not run.
  --skip-setup   do not run scripts/setup.sh: the checkout already has node_modules/, dist/, build/Release/ and
                 models/ (the tests use it; a machine that ran `bash scripts/setup.sh` before may too).
  --uninstall    stop and disable the service (not with --prefix), remove /opt/edgepatrol and the unit file.
                 Keeps /etc/edgepatrol (config, secrets) and /var/lib/edgepatrol (the outbox: events not yet sent).
  --purge        with --uninstall: also remove /etc/edgepatrol, /var/lib/edgepatrol and the user `edgepatrol`
                 (the user not with --prefix).
  -h, --help     this text.
Without --prefix it must run as root. Install and uninstall can both be repeated.

Exit codes:
  0  done (also: nothing to do)
  1  a step failed (its message says which)
  2  bad usage (unknown option, --purge without --uninstall, missing DIR)
  3  unsupported system: not Linux, CPU not x86_64/aarch64, no Node.js >= 20, not root without --prefix
  4  the checkout is incomplete for --skip-setup (run `bash scripts/setup.sh runtime` first)
EOF
}

say() { printf '[install] %s\n' "$*" >&2; }
die() {
  local code=$1
  shift
  printf '[install] error: %s\n' "$*" >&2
  exit "$code"
}

prefix=''
skip_setup=0
uninstall=0
purge=0
while (($#)); do
  case $1 in
    --prefix)
      (($# >= 2)) || die 2 '--prefix needs a directory'
      prefix=$2
      shift 2
      ;;
    --prefix=*)
      prefix=${1#--prefix=}
      shift
      ;;
    --skip-setup) skip_setup=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done
if ((purge && !uninstall)); then die 2 '--purge goes with --uninstall'; fi
if [[ -n $prefix ]]; then
  [[ $prefix == /* ]] || prefix=$PWD/$prefix
  prefix=${prefix%/}
  [[ -n $prefix ]] || die 2 '--prefix / is the real system: leave --prefix out instead'
fi

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
opt=$prefix/opt/edgepatrol
etc=$prefix/etc/edgepatrol
data=$prefix/var/lib/edgepatrol
unit=$prefix/etc/systemd/system/edgepatrol.service
user=edgepatrol
real=1
[[ -z $prefix ]] || real=0

have_systemctl() { ((real)) && command -v systemctl >/dev/null 2>&1; }

# 1. the system
[[ $(uname -s) == Linux ]] || die 3 "this is $(uname -s): edgepatrol installs on Linux (Debian 12 based) only"
arch=$(uname -m)
case $arch in
  x86_64 | aarch64) ;;
  *) die 3 "CPU architecture $arch is not supported: x86_64 (amd64) or aarch64 (arm64) only" ;;
esac
if ((real)) && [[ $(id -u) -ne 0 ]]; then die 3 'run as root (sudo bash scripts/install.sh), or give --prefix DIR'; fi

if ((uninstall)); then
  if have_systemctl; then
    if systemctl list-unit-files edgepatrol.service >/dev/null 2>&1; then
      say 'stopping and disabling edgepatrol.service'
      systemctl disable --now edgepatrol.service >/dev/null 2>&1 || true
    fi
  elif ((real)); then
    say 'no systemctl here: nothing to stop or disable'
  else
    say "--prefix: systemctl not run"
  fi
  rm -f -- "$unit"
  rm -rf -- "$opt"
  say "removed $opt and $unit"
  if have_systemctl && [[ -d /run/systemd/system ]]; then systemctl daemon-reload || true; fi
  if ((purge)); then
    rm -rf -- "$etc" "$data"
    say "purged $etc and $data"
    if ((real)) && getent passwd "$user" >/dev/null; then
      userdel "$user" || die 1 "could not remove the user $user"
      say "removed the user $user"
    fi
    if ((real)) && getent group "$user" >/dev/null; then groupdel "$user" >/dev/null 2>&1 || true; fi
  else
    say "kept $etc (config) and $data (outbox); --uninstall --purge removes them"
  fi
  exit 0
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
((node_major >= 20)) || die 3 'Node.js >= 20 is needed (node -v); install it first, e.g. from NodeSource or the Node.js binaries'
if ((real)) && [[ ! -x /usr/bin/node ]]; then
  die 3 "the unit runs /usr/bin/node, which does not exist (node is $(command -v node)): link it or install Node.js there"
fi

# 2. set-up in the checkout
if ((skip_setup)); then
  say '--skip-setup: using the checkout as it is'
else
  build_pkgs=(g++ make python3)
  missing=()
  for p in "${build_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing Debian packages for the native builds: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  bash "$src/scripts/setup.sh" runtime
fi
for need in package.json package-lock.json bin/edgepatrol.js dist/src/cli/main.js node_modules models/manifest.json; do
  [[ -e $src/$need ]] || die 4 "$src/$need is missing: run \`bash scripts/setup.sh runtime\` (or leave out --skip-setup)"
done
addons=("$src"/build/Release/*.node)
[[ -e ${addons[0]} ]] || die 4 "$src/build/Release/*.node are missing: run \`bash scripts/setup.sh runtime\`"

# 3. the project under /opt/edgepatrol: built in a new folder, then swapped in
mkdir -p -- "$(dirname "$opt")"
new=$(mktemp -d "$opt.new.XXXXXX")
old=''
cleanup() {
  [[ -z ${new:-} ]] || rm -rf -- "$new"
  [[ -z ${old:-} ]] || rm -rf -- "$old"
}
trap cleanup EXIT
say "copying the project to $opt"
cp -a -- "$src/package.json" "$src/package-lock.json" "$src/bin" "$src/models" "$src/systemd" "$src/examples" "$new/"
mkdir -p -- "$new/dist" "$new/build/Release" "$new/docs" "$new/node_modules"
cp -a -- "$src/dist/src" "$new/dist/"
cp -a -- "${addons[@]}" "$new/build/Release/"
cp -a -- "$src/docs/config.md" "$new/docs/"
[[ ! -f $src/docs/config.schema.json ]] || cp -a -- "$src/docs/config.schema.json" "$new/docs/"
# The production packages only (no devDependencies): the top-level folders npm lists, nested ones come with them.
pkgs=()
while IFS= read -r line; do
  rel=${line#"$src/node_modules/"}
  [[ $rel != "$line" && $rel != */node_modules/* ]] || continue
  pkgs+=("$rel")
done < <(cd "$src" && npm ls --omit=dev --all --parseable 2>/dev/null || true)
((${#pkgs[@]})) || die 1 'npm ls found no production packages in node_modules'
for p in "${pkgs[@]}"; do
  [[ -d $src/node_modules/$p ]] || die 1 "node_modules/$p is missing: run npm ci (scripts/setup.sh)"
  mkdir -p -- "$new/node_modules/$(dirname "$p")"
  cp -a -- "$src/node_modules/$p" "$new/node_modules/$p"
done
# onnxruntime-node ships every platform's binaries; keep this one's (linux/x64 or linux/arm64).
case $arch in x86_64) ort_arch=x64 ;; *) ort_arch=arm64 ;; esac
for napi in "$new"/node_modules/onnxruntime-node/bin/napi-v*; do
  [[ -d $napi/linux/$ort_arch ]] || die 1 "onnxruntime-node has no linux/$ort_arch binary in $napi"
  for d in "$napi"/*; do [[ $d == "$napi/linux" ]] || rm -rf -- "$d"; done
  for d in "$napi"/linux/*; do [[ $d == "$napi/linux/$ort_arch" ]] || rm -rf -- "$d"; done
done
chmod -R u+rwX,go+rX,go-w -- "$new"
chmod 0755 -- "$new"
if ((real)); then chown -R root:root -- "$new"; fi
if [[ -e $opt ]]; then
  old=$(mktemp -d "$opt.old.XXXXXX")
  rmdir -- "$old"
  mv -- "$opt" "$old"
fi
mv -- "$new" "$opt"
new=''

# 4. the user
if ((real)); then
  if getent passwd "$user" >/dev/null; then
    say "user $user exists"
  else
    useradd --system --user-group --no-create-home --home-dir /var/lib/edgepatrol --shell /usr/sbin/nologin "$user"
    say "created the system user $user"
  fi
else
  say "--prefix: the system user $user is not created and nothing is chowned (a real install does both)"
fi

# 5. config
install -d -m 0750 -- "$etc"
if ((real)); then chown "root:$user" -- "$etc"; fi
if [[ -e $etc/gateway.yaml ]]; then
  say "kept the existing $etc/gateway.yaml"
else
  install -m 0600 -- "$src/examples/gateway.yaml" "$etc/gateway.yaml"
  if ((real)); then chown "$user:$user" -- "$etc/gateway.yaml"; fi
  say "wrote $etc/gateway.yaml from examples/gateway.yaml: edit it before starting the service"
fi

# 6. data (the unit's StateDirectory=edgepatrol makes systemd keep it owned by the service's user too)
install -d -m 0750 -- "$data"
if ((real)); then chown "$user:$user" -- "$data"; fi

# 7. the unit
install -d -m 0755 -- "$(dirname "$unit")"
install -m 0644 -- "$src/systemd/edgepatrol.service" "$unit"
if have_systemctl; then
  # Without a running systemd (an image being built in a chroot or container) there is no manager to reload;
  # `systemctl enable` still works offline: it only creates the symlink.
  if [[ -d /run/systemd/system ]]; then systemctl daemon-reload; else say 'systemd is not running here: no daemon-reload'; fi
  systemctl enable edgepatrol.service >/dev/null 2>&1
  say 'edgepatrol.service enabled (starts at boot); not started yet'
elif ((real)); then
  say "no systemctl here: $unit installed, not enabled"
else
  say "--prefix: systemctl not run ($unit installed, not enabled)"
fi

say "installed in ${prefix:-/}. Next:"
cat >&2 <<'EOF'
  1. edit the config (cameras, MQTT broker, credentials):   sudoedit /etc/edgepatrol/gateway.yaml
  2. check it and the model as the service's user:
       sudo -u edgepatrol node /opt/edgepatrol/bin/edgepatrol.js model verify
       sudo -u edgepatrol node /opt/edgepatrol/bin/edgepatrol.js run --config /etc/edgepatrol/gateway.yaml
     (the second runs the agent in the foreground: config errors exit 2 with every problem listed; Ctrl-C stops it)
  3. start the service:     sudo systemctl start edgepatrol
  4. follow its log:        journalctl -u edgepatrol -f      status: systemctl status edgepatrol
EOF
