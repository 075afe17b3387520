#!/usr/bin/env bash
# Run every test group and say how long each took. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
status=0
timings=()
run_group() {
  local name=$1; shift
  local start=$(date +%s)
  echo "=== test group: $name"
  "$@"
  local rc=$?
  # pytest exits 5 when a group selects no test; that is not a failure of the run.
  [ $rc -eq 5 ] && rc=0
  [ $rc -ne 0 ] && status=1
  timings+=("$(printf '%-12s %5ss  exit %s' "$name" "$(( $(date +%s) - start ))" "$rc")")
}
run_group guest-fuzz make -s -C guest_agent fuzz-smoke
run_group unit .venv/bin/pytest -q -m "not vm" "$@"
run_group vm .venv/bin/pytest -q -m vm "$@"
echo "=== timings"
printf '%s\n' "${timings[@]}"
exit $status
