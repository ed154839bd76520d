#!/usr/bin/env bash
# Build the hashing kernels: wasm/sha256d.c -> wasm/sha256d.wasm, wasm/scrypt.c -> wasm/scrypt.wasm.
#
#   wasm/build.sh           rebuild the committed .wasm files in place
#   wasm/build.sh --check   rebuild into a temporary folder and fail if the committed files differ
#
# Needs clang and wasm-ld (Debian packages clang and lld; the committed files were built with
# Debian clang 14.0.6). The output is byte-for-byte reproducible: fixed flags, sources named
# by relative path, no debug information, and --strip-all drops the name and producers
# sections, so nothing about the build machine or the checkout path ends up in the file.
set -euo pipefail
cd "$(dirname "$0")"

KERNELS=(sha256d scrypt)
EXPECTED_CLANG_MAJOR=14
CFLAGS=(--target=wasm32 -msimd128 -O3 -nostdlib -ffreestanding -Wall -Wextra)
LDFLAGS=(-Wl,--no-entry -Wl,--strip-all -Wl,--stack-first -Wl,-z,stack-size=65536)

mode=build
case "${1:-}" in
  '') ;;
  --check) mode=check ;;
  *)
    echo "usage: wasm/build.sh [--check]" >&2
    exit 2
    ;;
esac

clang_bin="${CLANG:-}"
if [ -z "$clang_bin" ]; then
  for candidate in "clang-$EXPECTED_CLANG_MAJOR" clang; do
    if command -v "$candidate" >/dev/null 2>&1; then
      clang_bin="$candidate"
      break
    fi
  done
fi
if [ -z "$clang_bin" ]; then
  echo "wasm/build.sh: clang not found (install the Debian packages clang and lld)" >&2
  exit 2
fi
if ! command -v wasm-ld >/dev/null 2>&1; then
  echo "wasm/build.sh: wasm-ld not found (install the Debian package lld)" >&2
  exit 2
fi
version="$("$clang_bin" --version | head -n 1)"
major="$("$clang_bin" -dumpversion | cut -d. -f1)"
if [ "$major" != "$EXPECTED_CLANG_MAJOR" ]; then
  echo "wasm/build.sh: warning: $version; the committed .wasm files come from clang" \
    "$EXPECTED_CLANG_MAJOR and another version may produce different bytes" >&2
fi

out_dir=.
if [ "$mode" = check ]; then
  out_dir="$(mktemp -d)"
  trap 'rm -rf "$out_dir"' EXIT
fi

for kernel in "${KERNELS[@]}"; do
  "$clang_bin" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$out_dir/$kernel.wasm" "$kernel.c"
  chmod 644 "$out_dir/$kernel.wasm" # wasm-ld marks its output executable; it is data
done

if [ "$mode" = build ]; then
  for kernel in "${KERNELS[@]}"; do
    sha256sum "$kernel.wasm"
  done
  exit 0
fi

status=0
for kernel in "${KERNELS[@]}"; do
  if [ ! -f "$kernel.wasm" ]; then
    echo "wasm/build.sh --check: wasm/$kernel.wasm is missing" >&2
    status=1
  elif cmp -s "$kernel.wasm" "$out_dir/$kernel.wasm"; then
    echo "wasm/$kernel.wasm: matches its source ($(sha256sum <"$kernel.wasm" | cut -c1-16))"
  else
    echo "wasm/build.sh --check: wasm/$kernel.wasm differs from a fresh build of wasm/$kernel.c" \
      "(committed $(sha256sum <"$kernel.wasm" | cut -c1-16)," \
      "rebuilt $(sha256sum <"$out_dir/$kernel.wasm" | cut -c1-16), $version);" \
      "run wasm/build.sh and commit the result" >&2
    status=1
  fi
done
exit "$status"
