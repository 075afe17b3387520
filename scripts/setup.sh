#!/usr/bin/env bash
# Idempotent set-up of everything HYPR needs, on Debian 12 or 13.
# Each step checks first and does nothing when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hypr"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- 1. Debian packages ---------------------------------------------------------
packages=(
  qemu-system-x86        # the VMM
  squashfs-tools-ng      # tar2sqfs: image layers -> squashfs without root
  squashfs-tools         # unsquashfs, for checks
  e2fsprogs              # mkfs.ext4 for the per-VM writable layer
  busybox-static         # the bundled default image
  musl-tools             # kestrel is static C against musl
  make gcc libc6-dev     # building kestrel
  linux-source           # the guest kernel's source (6.1 on Debian 12, 6.12 on 13)
  bc bison flex libelf-dev libssl-dev cpio xz-utils   # the kernel build
  python3 python3-venv python3-dev
  skopeo umoci           # independent OCI tools the tests compare against
  docker-registry apache2-utils openssl   # registry tests: a real registry, htpasswd -B, keys and JWTs
  tmux                   # terminal tests
  mmdebstrap uidmap      # the real Debian test image (uidmap: its unshare mode, when not root)
  iproute2 nftables util-linux   # user networks: bridges and TAPs (ip), their rules (nft); setpriv in tests
)
missing=()
for p in "${packages[@]}"; do
  case "$p" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 1b. gvproxy (the default network's user-mode stack) ------------------------------
# Packaged in Debian 13 only; its package needs just libc6 >= 2.34, so on Debian 12 it
# comes from trixie through an apt source pinned to priority 1: apt never picks anything
# else from trixie. `gvproxy/trixie` takes just that package from it (`-t trixie` would
# prefer trixie for every dependency the transaction touches).
if ! dpkg-query -W -f='${Status}' gvproxy 2>/dev/null | grep -q "install ok installed"; then
  step "installing gvproxy"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      $sudo tee /etc/apt/sources.list.d/hypr-trixie.sources >/dev/null
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 1\n' |
      $sudo tee /etc/apt/preferences.d/hypr-trixie >/dev/null
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends gvproxy/trixie
  else
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends gvproxy
  fi
fi

# --- 2. Python environment --------------------------------------------------------
stamp=".venv/.hypr-installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating the Python environment in .venv"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# --- 3. guest kernel (cached outside the repo; about 5 minutes on 2 cores) ---------
step "guest kernel"
kernel_build/build.sh

# --- 3b. the fallback guest kernel: Debian's generic one, fetched, never installed ---
step "fallback guest kernel"
kernel_build/fallback.sh

# --- 4. kestrel and its initramfs ----------------------------------------------------
step "kestrel initramfs"
make -s -C guest_agent OUT="$cache/guest" all

# --- 5. the bundled default image ------------------------------------------------------
image="$cache/images/busybox.tar"
if [ ! -s "$image" ] || [ /bin/busybox -nt "$image" ]; then
  step "bundled busybox image"
  mkdir -p "$(dirname "$image")"
  .venv/bin/python -m hypr_engine.oci.busybox_image "$image"
fi

# --- 6. the real test images (Debian with nginx, and one without a shell) ----------------
# Needs Debian's mirror once; without it everything else still works (the demo is offline),
# and only tests/vm/test_real_images.py fails, saying the images are missing.
step "test images"
.venv/bin/python scripts/build_test_images.py ||
  printf '\033[1;33mwarning: the test images were not built (see above); the real-image tests will fail\033[0m\n' >&2
# Bytecode once, here: the environment may forbid writing it at run time (PYTHONDONTWRITEBYTECODE)
# and every `hypr` call and supervisor would compile HYPR from source (bench/README.md).
.venv/bin/python -m compileall -q hypr_engine hypr_tui >/dev/null
step "ready"
