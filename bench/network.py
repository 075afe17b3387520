"""network: what a NIC on the default network costs a boot.

    .venv/bin/python bench/network.py [-n PAIRS]

`hypr run --rm hypr/busybox true` on the default network (one virtio NIC attached to
this data dir's gvproxy, configured by kestrel before the workload) against the same
with `--network none` (no NIC, only lo: the floor), interleaved after a warm-up. The
default network's gvproxy stays up between runs (it leaves 30 s after its last VM);
a third series measures runs that must start it first (`HYPR_GVPROXY_IDLE_S=0.2`, and
each run waits until the previous one's gvproxy has left).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (HYPR_CMD, IMAGE, Sandbox, add_common_args, fmt_s, header, loadavg, ratio_row,  # noqa: E402
                     stats_row, wait_until)


def run(sb: Sandbox, *flags: str, env: dict[str, str] | None = None) -> float:
    elapsed, proc = sb.timed([*HYPR_CMD, "run", "--rm", *flags, IMAGE, "true"], timeout=300, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"hypr run {' '.join(flags)} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed


def stop_gvproxy(state: Path) -> None:
    """SIGTERM the data dir's gvproxy supervisor (it takes gvproxy along) and wait for it."""
    try:
        pid = json.loads(state.read_text())["supervisor"]["pid"]
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError, TypeError):
        return
    wait_until(lambda: not state.exists(), 30, what="gvproxy to leave")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="timed pairs (default, none), interleaved (default 10)")
    ap.add_argument("--cold", type=int, default=4, help="runs that start gvproxy first (default 4; 0: skip)")
    add_common_args(ap)
    opts = ap.parse_args()
    with Sandbox("network", pyc_cache=not opts.no_pyc_cache) as sb:
        header("network: `hypr run --rm hypr/busybox true`, default network vs --network none", sb)
        sb.load_busybox()
        run(sb)                      # builds the rootfs squashfs, starts gvproxy
        run(sb, "--network", "none")
        default_t: list[float] = []
        none_t: list[float] = []
        print(f"load average before: {loadavg()}")
        for i in range(opts.n):
            default_t.append(run(sb))
            none_t.append(run(sb, "--network", "none"))
            print(f"  pair {i + 1}/{opts.n}: default {fmt_s(default_t[-1])}   none {fmt_s(none_t[-1])}", flush=True)
        cold_t: list[float] = []
        state = sb.data / "net" / "gvproxy.json"
        if opts.cold:
            stop_gvproxy(state)
            env = dict(sb.env, HYPR_GVPROXY_IDLE_S="0.2")
            for _ in range(opts.cold):
                wait_until(lambda: not state.exists(), 30, what="the previous run's gvproxy to leave")
                cold_t.append(run(sb, env=env))
        stop_gvproxy(state)
        print(f"load average after:  {loadavg()}")
        print()
        print(stats_row("default network (gvproxy up)", default_t))
        print(stats_row("--network none (floor)", none_t))
        print(ratio_row("ratio default / none", default_t, none_t))
        if cold_t:
            print(stats_row("default network, gvproxy started by the run", cold_t))
            print(ratio_row("ratio cold default / none", cold_t, none_t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
