"""Boot benchmark: `hypr run --rm hypr/busybox echo hi` against raw QEMU doing the same boot.

    .venv/bin/python bench/boot.py [-n 10] [--traced 3] [--detached 2] [--no-pyc-cache]

HYPR: wall time of the CLI process, from spawn to exit, its output checked ("hi").
Floor: QEMU alone, started with exactly the argv `hypr_engine.vmm.qemu.build_argv`
produces for that VM (same kernel, same rootfs squashfs from this run's HYPR
cache, an initrd made of kestrel's initramfs + a config cpio built by
`hypr_engine.vmm.bootcfg` for `echo hi`), timed from spawn until QEMU exits after
kestrel's `x exit 0`; its log port's file is checked for `o hi` and `x exit 0`.
No supervisor, no Python engine. The two are interleaved (hypr, raw, hypr, raw...)
after one untimed warm-up of each.

Then:
- a breakdown of HYPR's overhead from runs of the CLI with timestamps in-process
  (bench/_traced_cli.py; these runs are not the timed ones);
- the boot stages `hypr inspect` reports for detached runs (`run -d --rm` takes
  the same boot path as the timed runs; `run -d` adds the writable-layer disk).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    HYPR_CMD,
    IMAGE,
    PY,
    add_common_args,
    fmt_s,
    header,
    loadavg,
    median,
    print_breakdown,
    ratio_row,
    RawVm,
    Sandbox,
    stats_row,
    tail_lines,
    traced_cli,
    wait_until,
)

WORKLOAD = ["echo", "hi"]
RAW_TIMEOUT = 30.0     # a normal boot takes 1.3-3 s here; past this it is a hang
HYPR_TIMEOUT = 60.0
RETRIES = 3            # per timed slot, after a hang


class Hang(Exception):
    """A boot that never finished: killed, counted, retried."""


# --- the floor: the same boot under raw QEMU --------------------------------------------

class RawBoot(RawVm):
    """The floor's VM: prepared once (initrd included); log files truncated before each run."""

    def __init__(self, sb: Sandbox) -> None:
        super().__init__(sb, WORKLOAD, "raw")

    def run(self) -> float:
        for name in ("console.log", "log"):
            (self.dir / name).write_bytes(b"")
        qlog = open(self.dir / "qemu.log", "wb")
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = self.sb.spawn_raw(self.argv, stdout=qlog, stderr=qlog)
        try:
            proc.wait(RAW_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Hang(f"raw QEMU still running after {RAW_TIMEOUT:g} s; console: "
                       + tail_lines(self.dir / "console.log", 3)) from None
        finally:
            qlog.close()
            self.sb.raw.remove(proc)
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        log = (self.dir / "log").read_bytes()
        records = [line.split(b" ", 2)[1:] for line in log.splitlines()]
        if [b"o", b"hi"] not in records or [b"x", b"exit 0"] not in records:
            raise RuntimeError(f"raw QEMU (status {proc.returncode}) did not print hi / exit 0; log: {log[-300:]!r}; "
                               f"console: {tail_lines(self.dir / 'console.log')}")
        return elapsed


# --- HYPR -----------------------------------------------------------------------------------

CPU: dict[str, list[float]] = {"hypr": [], "raw": []}
# The floor has no NIC, so neither do these VMs (a NIC's cost is bench/network.py's).
NO_NIC = ["--network", "none"]


def hypr_run(sb: Sandbox) -> float:
    try:
        elapsed, proc = sb.timed([*HYPR_CMD, "run", "--rm", *NO_NIC, IMAGE, *WORKLOAD], timeout=HYPR_TIMEOUT)
    except subprocess.TimeoutExpired:
        # The CLI was killed; its VM (own supervisor, own session) lives on: note where it
        # stood, then remove it.
        consoles = sorted(sb.data.glob("vms/*/console.log"), key=lambda p: p.stat().st_mtime)
        tail = tail_lines(consoles[-1], 3) if consoles else "(no console log)"
        ids = sb.vm_ids()
        if ids:
            sb.hypr("rm", "-f", *ids, check=False)
        raise Hang(f"hypr run did not end within {HYPR_TIMEOUT:g} s; console: {tail}") from None
    CPU["hypr"].append(sb.last_cpu)
    if proc.returncode != 0 or proc.stdout != b"hi\n":
        raise RuntimeError(f"hypr run exited {proc.returncode}, stdout {proc.stdout!r}, "
                           f"stderr {proc.stderr.decode(errors='replace')[-1000:]}")
    return elapsed


def measure(fn, hangs: list[str]) -> float:
    """One timed run; a hang is recorded and the run retried (at most RETRIES times)."""
    for _ in range(RETRIES + 1):
        try:
            return fn()
        except Hang as exc:
            hangs.append(str(exc))
            print(f"  hang: {exc}", flush=True)
    raise RuntimeError(f"{RETRIES + 1} hangs in a row")


def compare_argv(sb: Sandbox, raw: RawBoot, vm_id: str) -> str:
    """Is the raw argv the engine's (launch.json of a `run -d --rm` VM), paths aside?"""
    try:
        launch = json.loads((sb.data / "vms" / vm_id / "launch.json").read_text())
    except (OSError, ValueError) as exc:
        return f"could not read the engine's launch.json ({exc})"
    vm_dir, run_dir = str(sb.data / "vms" / vm_id), launch.get("runtime_dir", "")

    def norm(argv, pairs):
        pairs = sorted(pairs, key=lambda p: -len(p[0]))  # longer paths first: <dir>-r before <dir>
        out = []
        for a in argv:
            for old, new in pairs:
                if old:
                    a = a.replace(old, new)
            out.append(a)
        return out

    engine = norm(launch["argv"], [(vm_dir, "<VM>"), (run_dir, "<RUN>")])
    mine = norm(raw.argv, [(str(raw.dir), "<VM>"), (str(raw.run_dir), "<RUN>")])
    if engine == mine:
        return "identical to the engine's launch.json for a `run -d --rm` VM (paths aside)"
    diff = [f"engine {e!r} / raw {m!r}" for e, m in zip(engine, mine) if e != m]
    if len(engine) != len(mine):
        diff.append(f"length {len(engine)} vs {len(mine)}")
    return "DIFFERS from the engine's launch.json: " + "; ".join(diff[:6])


# --- detached runs: the stages `hypr inspect` shows ------------------------------------------

def detached_stages(sb: Sandbox, extra: list[str], raw: RawBoot | None = None) -> tuple[dict[str, float], str | None]:
    vm_id = sb.hypr("run", "-d", *NO_NIC, *extra, IMAGE, "sleep", "60").stdout.decode().strip().splitlines()[-1]
    try:
        def hello():
            out = json.loads(sb.hypr("inspect", vm_id).stdout)
            stages = out[0].get("BootStages") or {}
            return stages if "agent_hello" in stages else None

        stages = wait_until(hello, 60, 0.1, "the guest's hello")
        argv_note = compare_argv(sb, raw, vm_id) if raw is not None else None
        return stages, argv_note
    finally:
        sb.hypr("rm", "-f", vm_id, check=False)


# --- the traced runs: where HYPR's overhead goes --------------------------------------------

STEPS = [
    # (label, from mark, to mark)
    ("interpreter start (python + site)", "spawn", "interpreter_ready"),
    ("import hypr_tui.cli", "interpreter_ready", "cli_imported"),
    ("import engine modules", "cli_imported", "engine_imported"),
    ("argparse, event loop, engine open (DB, lock)", "engine_imported", "engine_open_end"),
    ("create (resolve image, insert row)", "engine_open_end", "create_end"),
    ("start: lookups + rootfs cache hit", "create_end", "rootfs_ready"),
    ("start: probe, initrd, launch.json", "rootfs_ready", "supervisor_spawn_start"),
    ("supervisor: spawn until QEMU spawned", "supervisor_spawn_start", "vmm_spawned"),
    ("supervisor: QEMU spawned until 'ok' read", "vmm_spawned", "supervisor_ready"),
    ("QEMU: spawned until exit (the boot itself)", "vmm_spawned", "qemu_exit"),
    ("  of it: QEMU spawned until agent hello", "vmm_spawned", "agent_hello"),
    ("  of it: 'hi' printed by the CLI", "vmm_spawned", "first_output"),
    ("QEMU exit until the CLI sees the VM gone", "qemu_exit", "command_done"),
    ("  of it: QEMU exit until the supervisor exits", "qemu_exit", "supervisor_exit"),
    ("engine close", "command_done", "engine_closed"),
    ("asyncio.run teardown until atexit", "engine_closed", "atexit"),
    ("interpreter exit (and the tracer's dump)", "watcher_joined", "end"),
]


def traced_run(sb: Sandbox, i: int) -> dict:
    try:
        marks, proc = traced_cli(sb, ["run", "--rm", *NO_NIC, IMAGE, *WORKLOAD], timeout=HYPR_TIMEOUT)
    except subprocess.TimeoutExpired:
        ids = sb.vm_ids()
        if ids:
            sb.hypr("rm", "-f", *ids, check=False)
        raise Hang(f"traced hypr run did not end within {HYPR_TIMEOUT:g} s") from None
    if proc.returncode != 0 or proc.stdout != b"hi\n":
        raise RuntimeError(f"traced hypr run exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-1000:]}")
    return marks


def supervisor_start_cost(sb: Sandbox, n: int) -> None:
    """The supervisor is a fresh interpreter that imports its modules before it spawns QEMU:
    both are on the boot's critical path. Priced against a bare interpreter."""
    r: dict[str, list[float]] = {"pass": [], "sup": []}
    for _ in range(n):
        r["pass"].append(sb.timed([PY, "-c", "pass"])[0])
        r["sup"].append(sb.timed([PY, "-c", "import hypr_engine.supervisor"])[0])
    print("supervisor start cost (fresh processes, spawn to exit):")
    print(stats_row("python -c pass", r["pass"]))
    print(stats_row('python -c "import hypr_engine.supervisor"', r["sup"]))
    print(ratio_row("supervisor imports / bare interpreter", r["sup"], r["pass"]))
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="timed pairs (hypr, raw), interleaved (default 10)")
    ap.add_argument("--traced", type=int, default=3, help="instrumented runs for the breakdown (default 3; 0: skip)")
    ap.add_argument("--detached", type=int, default=2,
                    help="detached runs per kind for `hypr inspect` stages (default 2; 0: skip)")
    add_common_args(ap)
    opts = ap.parse_args()

    with Sandbox("boot", pyc_cache=not opts.no_pyc_cache) as sb:
        header("boot: `hypr run --rm hypr/busybox echo hi` vs raw QEMU, same kernel/initrd/rootfs", sb)
        t = time.perf_counter()
        sb.load_busybox()
        print(f"setup: image loaded in {fmt_s(time.perf_counter() - t)}")
        t = time.perf_counter()
        hangs: dict[str, list[str]] = {"hypr": [], "raw": []}
        measure(lambda: hypr_run(sb), hangs["hypr"])  # the first run also builds the rootfs squashfs
        print(f"setup: first `hypr run` (includes the one-off squashfs build) {fmt_s(time.perf_counter() - t)}")
        raw = RawBoot(sb)
        measure(raw.run, hangs["raw"])     # warm-up
        print(f"floor argv: {' '.join(raw.argv)}\n")

        hypr_t: list[float] = []
        raw_t: list[float] = []
        print(f"load average before: {loadavg()}")
        for i in range(opts.n):
            hypr_t.append(measure(lambda: hypr_run(sb), hangs["hypr"]))
            raw_t.append(measure(raw.run, hangs["raw"]))
            CPU["raw"].append(raw.last_cpu)
            print(f"  pair {i + 1}/{opts.n}: hypr {fmt_s(hypr_t[-1])}   raw {fmt_s(raw_t[-1])}", flush=True)
        print(f"load average after:  {loadavg()}")
        print()
        print("results (wall time, process spawn to exit):")
        print(stats_row("hypr run --rm hypr/busybox echo hi", hypr_t))
        print(stats_row("raw QEMU, same argv (floor)", raw_t))
        print(ratio_row("ratio hypr / floor", hypr_t, raw_t))
        print("CPU time (user + system) of the process timed and the children it waited for:")
        print(stats_row("hypr run CLI (not its supervisor or QEMU)", CPU["hypr"][-len(hypr_t):]))
        print(stats_row("raw QEMU", CPU["raw"][-len(raw_t):]))
        print()

        if opts.traced:
            runs = [measure(lambda: traced_run(sb, i), hangs["hypr"]) for i in range(opts.traced)]
            print(f"breakdown of `hypr run --rm` (median of {len(runs)} instrumented runs, "
                  "bench/_traced_cli.py; not the timed runs):")
            print_breakdown(runs, STEPS)
            totals = [r["_total"] for r in runs]
            qemu = [r["qemu_exit"] - r["vmm_spawned"] for r in runs if "qemu_exit" in r and "vmm_spawned" in r]
            if qemu:
                print(f"  {'total minus QEMU (HYPR around the VM)':<46} {fmt_s(median(totals) - median(qemu)):>10}")
                print(f"  {'QEMU under HYPR minus the raw floor':<46} {fmt_s(median(qemu) - median(raw_t)):>10}"
                      "   (the floor also counts its own spawn)")
            print()

        supervisor_start_cost(sb, 10)

        if opts.detached:
            for label, extra in (("run -d --rm (tmpfs upper: the timed path)", ["--rm"]),
                                 ("run -d (8 GiB sparse ext4 upper, mkfs per VM)", [])):
                collected: list[dict[str, float]] = []
                note = None
                for i in range(opts.detached):
                    stages, n = detached_stages(sb, extra, raw if (extra and i == 0) else None)
                    collected.append(stages)
                    note = note or n
                keys = sorted({k for s in collected for k in s}, key=lambda k: median([s[k] for s in collected if k in s]))
                print(f"`hypr inspect` BootStages, {label}, seconds from `requested` "
                      f"(median of {len(collected)}):")
                prev = 0.0
                for k in keys:
                    v = median([s[k] for s in collected if k in s])
                    print(f"  {k:<16} {v:8.4f}   (+{v - prev:.4f})")
                    prev = v
                if note:
                    print(f"  floor argv check: {note}")
                print()
        for who, lines in hangs.items():
            print(f"hung boots ({who}; killed, retried, not in the numbers): {len(lines)}")
            for line in lines:
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
