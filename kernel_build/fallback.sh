#!/usr/bin/env bash
# Fetch Debian's generic kernel, the fallback guest kernel, without installing it.
#
#   kernel_build/fallback.sh [PACKAGE]        (PACKAGE defaults to linux-image-amd64)
#
# The meta package names the versioned one (linux-image-6.1.0-NN-amd64); that is
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
#   ${XDG_CACHE_HOME:-~/.cache}/hypr/debian-kernel/<kernel release>/
# so the host's /boot, /lib/modules and package database are never touched.
# The result holds boot/vmlinuz-<release>, lib/modules/<release>/ and
# package-version. A finished directory is reused; nothing is fetched again.
# The generic kernel (unlike the cloud one) has 9p; everything the guest needs is
# a module there, which hypr_engine/vmm/fallback.py packs into an initramfs.
set -euo pipefail

meta="${1:-linux-image-amd64}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hypr/debian-kernel"

# The versioned package the candidate version of the meta package depends on.
# "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)": the name, and the version if pinned.
read -r pkg pkgver < <(apt-cache show --no-all-versions "$meta" 2>/dev/null | sed -n 's/^Depends: //p' \
      | tr ',|' '\n\n' | awk '$1 ~ /^linux-image-[0-9]/ { v = ($2 == "(=") ? $3 : ""; sub(/\)$/, "", v); print $1, v; exit }') || true
if [ -z "$pkg" ]; then
  if ls -d "$cache"/*/.complete >/dev/null 2>&1; then
    echo "kernel_build: $meta unknown to apt; keeping the cached fallback kernel" >&2
    exit 0
  fi
  echo "kernel_build: apt knows no $meta (run apt-get update)" >&2
  exit 1
fi
release=${pkg#linux-image-}                          # 6.1.0-56-amd64
[ -n "$pkgver" ] || pkgver=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
out="$cache/$release"

if [ -f "$out/.complete" ] && [ "$(cat "$out/package-version")" = "$pkgver" ]; then
  echo "kernel_build: up to date: $out"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "kernel_build: downloading $pkg $pkgver"
# apt-get download writes into the current directory; run as root it warns that
# the download is unsandboxed (the _apt user cannot write here), which is harmless.
if ! (cd "$work" && apt-get download -q "$pkg=$pkgver" 2>&1 | grep -v '^W: Download is performed unsandboxed'); then
  echo "kernel_build: apt-get download $pkg=$pkgver failed (run apt-get update?)" >&2
  exit 1
fi
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/root"
# No modules.dep: depmod writes it on installation; fallback.py reads the
# dependencies from the modules themselves.
if [ ! -f "$work/root/boot/vmlinuz-$release" ] || [ ! -f "$work/root/lib/modules/$release/modules.order" ]; then
  echo "kernel_build: $deb holds no boot/vmlinuz-$release or modules.order" >&2
  exit 1
fi
echo "$pkgver" > "$work/root/package-version"
touch "$work/root/.complete"
rm -rf "$out"
mv "$work/root" "$out"
echo "kernel_build: unpacked $pkg $pkgver into $out"
# Older releases (400 MB each) are of no further use: QEMU reads the kernel at start.
for old in "$cache"/*/; do
  [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
