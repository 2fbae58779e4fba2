#!/usr/bin/env bash
# Prepares this machine to build meal's `cuda` feature without network access from cargo.
#
# burn-cuda -> cubecl-cuda -> cubecl-llvm links LLVM 23.1 through `tracel-llvm-bundler`, whose
# build script downloads LLVM from GitHub releases unless the folder it expects already holds an
# install marked by a sentinel file. PyPI (the one index our machines reach) carries a relocatable
# static LLVM 23.1 SDK as two wheels; this script puts them where the bundler looks, so that
# `cargo build --release --features cuda` then builds offline.
#
# Idempotent: a complete install is detected and left alone. Usage: scripts/setup-gpu-build.sh
set -euo pipefail

# The bundler's pinned LLVM release (tracel-llvm-bundler 23.1.0-4, src/config.rs): folder
# `<data dir>/tracel/tracel-llvm-<version>-<release>` and the sentinel inside it.
BUNDLE_NAME="tracel-llvm-23.1.0-4"
SENTINEL=".tracel-llvm-installed"
DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}"
PREFIX="$DATA_DIR/tracel/$BUNDLE_NAME"

# Pinned wheels: exact versions and their SHA-256, so a changed upload cannot slip in.
LLVM_VERSION="23.1.1.post0"
BASE_WHEEL="mlc_llvm_static-${LLVM_VERSION}-py3-none-manylinux_2_28_x86_64.whl"
BASE_SHA256="dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5"
EXTRA_WHEEL="mlc_llvm_static_extra_targets-${LLVM_VERSION}-py3-none-manylinux_2_28_x86_64.whl"
EXTRA_SHA256="c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929"
CACHE="${MEAL_GPU_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meal-gpu-build}"

say() { echo "setup-gpu-build: $*"; }
die() {
  echo "setup-gpu-build: error: $*" >&2
  exit 1
}

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] ||
  die "only Linux x86_64 is supported (the pinned wheels are manylinux_2_28_x86_64); this is $(uname -s) $(uname -m)"

# llvm-config in these wheels is a Python script (#!/usr/bin/env python3).
PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || die "python3 is needed: the SDK's bin/llvm-config is a Python script (install python3 and rerun)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
  die "$PYTHON is older than 3.10; the SDK (bin/llvm-config) requires Python >= 3.10"

# The static LLVM archives reference zlib and zstd (`llvm-config --system-libs`): the final link
# needs -lz and -lzstd, which Debian ships in zlib1g-dev and libzstd-dev.
linkable() { # library name, e.g. zstd
  local dir
  for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -e "$dir/lib$1.so" ] || [ -e "$dir/lib$1.a" ]; then return 0; fi
  done
  return 1
}
need_dev_package() { # library package
  if linkable "$1"; then
    say "lib$1 (link library) already present"
    return
  fi
  command -v apt-get >/dev/null || die "lib$1's development library is missing and apt-get is not available: install $2 (or your system's equivalent) and rerun"
  [ "$(id -u)" = 0 ] || die "$2 is missing; rerun as root or run: sudo apt-get install -y $2"
  say "installing $2 (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
  } || die "apt-get could not install $2"
  linkable "$1" || die "$2 was installed but lib$1.so is still not found"
  say "installed $2"
}
need_dev_package zstd libzstd-dev
need_dev_package z zlib1g-dev

llvm_config_ok() {
  [ -f "$PREFIX/$SENTINEL" ] || return 1
  local version targets
  version="$("$PREFIX/bin/llvm-config" --version 2>/dev/null)" || return 1
  targets="$("$PREFIX/bin/llvm-config" --targets-built 2>/dev/null)" || return 1
  [[ "$version" == 23.1.* ]] && [[ " $targets " == *" NVPTX "* ]]
}

if llvm_config_ok; then
  say "LLVM $("$PREFIX/bin/llvm-config" --version) already installed at $PREFIX (NVPTX built); nothing to do"
  exit 0
fi

verify() { # file expected-sha256
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  [ "$got" = "$2" ]
}

fetch_wheel() { # wheel-file sha256 package
  local file="$CACHE/$1"
  if [ -f "$file" ] && verify "$file" "$2"; then
    say "using cached $1"
    return
  fi
  rm -f "$file"
  say "downloading $3==$LLVM_VERSION from PyPI"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.12 --implementation py \
    --dest "$CACHE" "$3==$LLVM_VERSION" ||
    die "pip could not download $3==$LLVM_VERSION (is PyPI reachable? is pip installed for $PYTHON?)"
  [ -f "$file" ] || die "pip downloaded $3 but $file is not there (the wheel's name changed?)"
  verify "$file" "$2" || die "$file: SHA-256 mismatch (expected $2); refusing to install it"
  say "verified SHA-256 of $1"
}

mkdir -p "$CACHE"
fetch_wheel "$BASE_WHEEL" "$BASE_SHA256" mlc-llvm-static
fetch_wheel "$EXTRA_WHEEL" "$EXTRA_SHA256" mlc-llvm-static-extra-targets

# Unpack into a scratch folder and move it into place at the end, so an interrupted run never
# leaves a half-filled folder that the bundler would mistake for an install.
mkdir -p "$(dirname "$PREFIX")"
STAGE="$(mktemp -d "$(dirname "$PREFIX")/.${BUNDLE_NAME}.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
say "unpacking both wheels into $PREFIX"
"$PYTHON" - "$STAGE" "$CACHE/$BASE_WHEEL" "$CACHE/$EXTRA_WHEEL" <<'EOF'
# Both wheels keep the SDK under mlc_llvm_static/static/ (bin, include, lib, share); that
# subtree becomes the bundle folder's root. Wheel zips do not restore Unix modes reliably,
# so the modes recorded in the archive are applied by hand (llvm-config must be executable).
import os, sys, zipfile
stage, wheels = sys.argv[1], sys.argv[2:]
root = "mlc_llvm_static/static/"
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(root) or info.is_dir():
                continue
            relative = info.filename[len(root):]
            if relative.startswith("/") or ".." in relative.split("/"):
                sys.exit(f"{wheel}: unsafe path {info.filename}")
            target = os.path.join(stage, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode if mode else 0o644)
EOF
chmod +x "$STAGE/bin/llvm-config" "$STAGE/bin/llvm-config.py"

targets="$("$STAGE/bin/llvm-config" --targets-built)" || die "the unpacked bin/llvm-config does not run"
[[ " $targets " == *" NVPTX "* ]] || die "llvm-config --targets-built lacks NVPTX (got: $targets)"
"$STAGE/bin/llvm-config" --link-static --libs >/dev/null || die "llvm-config --libs failed: an archive is missing"

chmod 755 "$STAGE"
rm -rf "$PREFIX"
mv "$STAGE" "$PREFIX"
trap - EXIT
touch "$PREFIX/$SENTINEL"
say "installed LLVM $("$PREFIX/bin/llvm-config" --version) at $PREFIX (targets: $targets)"
say "wrote $PREFIX/$SENTINEL; now: cargo build --release --features cuda"
