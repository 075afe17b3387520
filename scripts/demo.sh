#!/usr/bin/env bash
# Boot the bundled busybox image as a microVM: no internet needed.
set -euo pipefail
cd "$(dirname "$0")/.."
hypr=.venv/bin/hypr
image="${XDG_CACHE_HOME:-$HOME/.cache}/hypr/images/busybox.tar"
$hypr system info
$hypr images -q >/dev/null
$hypr load -i "$image"
echo
echo "\$ hypr run --rm hypr/busybox sh -c 'echo Hello from a HYPR microVM; uname -sr; cat /etc/hostname'"
exec $hypr run --rm hypr/busybox sh -c 'echo Hello from a HYPR microVM; uname -sr; cat /etc/hostname'
