#!/usr/bin/env bash
# Regenerate the Python code of the HYPR API from proto/hypr/v1/*.proto.
#
#   proto/generate.sh            writes hypr_engine/api/_pb (commit the result)
#   proto/generate.sh OUT_DIR    writes OUT_DIR instead (tests/daemon/test_generated.py
#                                uses this to check that the committed code matches)
#
# Needs the `dev` extra of pyproject.toml in the virtual environment (VENV, default
# .venv): grpcio-tools (only for its bundled protoc), betterproto2-compiler and ruff,
# at the pinned versions, since each of them shapes the output. The compiler runs
# `ruff` by name, so the venv's bin goes first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
venv=$(cd "$venv" && pwd)
out=${1:-hypr_engine/api/_pb}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protos=$(cd proto && ls hypr/v1/*.proto | LC_ALL=C sort)
(cd proto && PATH="$venv/bin:$PATH" "$venv/bin/python" -m grpc_tools.protoc -I . \
    --python_betterproto2_out="$tmp" \
    --python_betterproto2_opt=client_generation=async,server_generation=async \
    $protos) >/dev/null
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$tmp" "$out"
