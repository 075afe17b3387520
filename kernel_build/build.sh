#!/usr/bin/env bash
# Build the HYPR guest kernel from Debian's linux-source package.
#
#   kernel_build/build.sh [OUTPUT_DIR]
#
# The result is OUTPUT_DIR/vmlinux (uncompressed, PVH entry) plus OUTPUT_DIR/config.
# OUTPUT_DIR defaults to the cache directory the engine looks in:
#   ${XDG_CACHE_HOME:-~/.cache}/hypr/kernel/<source version>-<fragment hash>/
# A finished build there is reused: nothing is rebuilt unless the source package
# or the fragment changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/hypr.config"
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$tarball" ]; then
  echo "kernel_build: no /usr/src/linux-source-*.tar.xz; install the linux-source package" >&2
  exit 1
fi
srcver=$(basename "$tarball" .tar.xz)              # linux-source-6.1
pkgver=$(dpkg-query -W -f='${Version}' "$srcver" 2>/dev/null || echo unknown)
# Content only (not paths): a clone elsewhere reuses the same build.
fraghash=$(cat "$fragment" "$0" | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hypr"
out="${1:-$cache/kernel/${srcver#linux-source-}-${pkgver}-${fraghash}}"

if [ -s "$out/vmlinux" ]; then
  echo "kernel_build: up to date: $out/vmlinux"
  exit 0
fi

work="$cache/kernel-build/$srcver-$pkgver"
if [ ! -f "$work/.extracted" ]; then
  echo "kernel_build: extracting $tarball"
  rm -rf "$work"; mkdir -p "$work"
  tar -xf "$tarball" -C "$work" --strip-components=1
  touch "$work/.extracted"
fi

obj="$work/obj-$fraghash"
mkdir -p "$obj"
echo "kernel_build: configuring (allnoconfig + $fragment)"
make -s -C "$work" O="$obj" KCONFIG_ALLCONFIG="$fragment" allnoconfig >/dev/null

# Kconfig silently drops a request whose dependencies are unmet: refuse that.
missing=0
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  key=${line%%=*}; want=${line#*=}
  if [ "$want" = n ]; then
    grep -qx "$key=y" "$obj/.config" && { echo "kernel_build: $key should be off" >&2; missing=1; }
  else
    grep -qx "$key=$want" "$obj/.config" || { echo "kernel_build: $key=$want did not take effect" >&2; missing=1; }
  fi
done < "$fragment"
[ "$missing" = 0 ] || exit 1

echo "kernel_build: building vmlinux with $(nproc) jobs (about 5 minutes on 2 cores)"
make -s -C "$work" O="$obj" -j"$(nproc)" vmlinux
mkdir -p "$out.tmp"
cp "$obj/vmlinux" "$out.tmp/vmlinux"
cp "$obj/.config" "$out.tmp/config"
echo "$pkgver" > "$out.tmp/source-version"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "kernel_build: built $out/vmlinux"
