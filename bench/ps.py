"""`hypr ps` cold start: a fresh CLI process each time, against bare interpreter floors.

    .venv/bin/python bench/ps.py [-n 15] [--vms 5] [--traced 3] [--importtime 5] [--no-pyc-cache]

Data directory states: 0 VMs (one image loaded); 5 VMs created (`hypr create`, never
started); the same 5 VMs running. In each state, interleaved round by round:
`python -c pass`, `python -c "import asyncio"` (floors, same interpreter as the CLI:
the venv's) and `hypr ps -a` (spawn to exit, its row count checked). Then a breakdown
of one `ps` (bench/_traced_cli.py) and the top offenders of `python -X importtime`
for `hypr ps -a` (median over runs, per module).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    HYPR_CMD,
    HYPR_PY_ARGS,
    IMAGE,
    PY,
    ROOT,
    add_common_args,
    fmt_s,
    header,
    loadavg,
    median,
    print_breakdown,
    ratio_row,
    Sandbox,
    stats_row,
    traced_cli,
    wait_until,
)

STEPS = [
    ("interpreter start (python + site)", "spawn", "interpreter_ready"),
    ("import hypr_tui.cli", "interpreter_ready", "cli_imported"),
    ("import engine modules", "cli_imported", "engine_imported"),
    ("argparse, event loop, engine open (DB, lock)", "engine_imported", "engine_open_end"),
    ("list + reconcile + print", "engine_open_end", "command_done"),
    ("engine close", "command_done", "engine_closed"),
    ("asyncio.run teardown until atexit", "engine_closed", "atexit"),
    ("interpreter exit (and the tracer's dump)", "watcher_joined", "end"),
]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def floors_and_ps(sb: Sandbox, n: int, expect_rows: int) -> dict[str, list[float]]:
    r: dict[str, list[float]] = {"pass": [], "asyncio": [], "ps": [], "ps_nopyc": [], "ps_cpu": []}
    for _ in range(n):
        t, p = sb.timed([PY, "-c", "pass"])
        r["pass"].append(t)
        t, p = sb.timed([PY, "-c", "import asyncio"])
        r["asyncio"].append(t)
        for key, env in (("ps", sb.env), ("ps_nopyc", no_pyc_env(sb) if sb.pyc_cache else None)):
            if env is None:
                continue
            t, p = sb.timed([*HYPR_CMD, "ps", "-a"], env=env)
            rows = len(p.stdout.decode().splitlines()) - 1
            if p.returncode != 0 or rows != expect_rows:
                raise RuntimeError(f"hypr ps -a exited {p.returncode} with {rows} rows, expected {expect_rows}: "
                                   f"{p.stderr.decode(errors='replace')[-500:]}")
            r[key].append(t)
            if key == "ps":
                r["ps_cpu"].append(sb.last_cpu)
    return r


def no_pyc_env(sb: Sandbox) -> dict[str, str]:
    """This environment's own setting: PYTHONDONTWRITEBYTECODE=1 and no private cache."""
    env = dict(sb.env_as_is)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def report(label: str, r: dict[str, list[float]]) -> None:
    print(f"{label}:")
    print(stats_row("python -c pass (floor)", r["pass"]))
    print(stats_row('python -c "import asyncio" (floor)', r["asyncio"]))
    print(stats_row("hypr ps -a", r["ps"]))
    print(stats_row("  its CPU time (user + system)", r["ps_cpu"]))
    if r["ps_nopyc"]:
        print(stats_row("hypr ps -a, PYTHONDONTWRITEBYTECODE=1", r["ps_nopyc"]))
    print(ratio_row("hypr ps -a / python -c pass", r["ps"], r["pass"]))
    print(ratio_row('hypr ps -a / python -c "import asyncio"', r["ps"], r["asyncio"]))
    if r["ps_nopyc"]:
        print(ratio_row("PYTHONDONTWRITEBYTECODE=1 / cached bytecode", r["ps_nopyc"], r["ps"]))
    print()


def importtime(sb: Sandbox, runs: int, top: int = 15) -> None:
    per_self: dict[str, list[int]] = {}
    per_cum: dict[str, list[int]] = {}
    depth: dict[str, int] = {}
    totals = []
    for _ in range(runs):
        p = subprocess.run([PY, "-X", "importtime", *HYPR_PY_ARGS, "ps", "-a"],
                           env=sb.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        total = 0
        for line in p.stderr.decode(errors="replace").splitlines():
            m = LINE.match(line)
            if not m:
                continue
            self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
            per_self.setdefault(name, []).append(self_us)
            per_cum.setdefault(name, []).append(cum_us)
            depth[name] = indent // 2
            total += self_us
        totals.append(total)
    med_self = {k: median(v) for k, v in per_self.items()}
    med_cum = {k: median(v) for k, v in per_cum.items()}
    print(f"`python -X importtime hypr ps -a` (median of {runs} runs, per module; microseconds):")
    print(f"  all imports together (sum of self times): {fmt_s(median(totals) / 1e6)} in {len(med_self)} modules")
    print(f"  top {top} by self time:")
    for name, v in sorted(med_self.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {v:>8.0f} self {med_cum[name]:>8.0f} cumulative   {name}")
    print("  top-level imports by cumulative time (what each import statement of the entry point costs):")
    for name, v in sorted(((k, v) for k, v in med_cum.items() if depth.get(k) == 0), key=lambda kv: -kv[1])[:top]:
        print(f"    {v:>8.0f} cumulative   {name}")
    hypr = sorted(((k, v) for k, v in med_cum.items() if k.startswith(("hypr_engine", "hypr_tui"))), key=lambda kv: -kv[1])
    print("  HYPR modules imported by `ps`, by cumulative time:")
    for name, v in hypr[:top]:
        print(f"    {v:>8.0f} cumulative {med_self[name]:>8.0f} self   {name}")
    print()


EXIT_CASES = [
    ("python -c pass", "pass"),
    ("CLI + engine modules imported", "from hypr_tui import cli; import hypr_engine.client, hypr_engine.engine"),
    ("  the same, gc.freeze() before exit", "from hypr_tui import cli; import hypr_engine.client, hypr_engine.engine; "
                                            "import gc; gc.freeze()"),
    ("  the same, os._exit(0) after flushing", "from hypr_tui import cli; import hypr_engine.client, "
                                               "hypr_engine.engine; import os, sys, time; print(time.time()); "
                                               "sys.stdout.flush(); os._exit(0)"),
]


def exit_cost(sb: Sandbox, n: int) -> None:
    """How long a process takes to end after its last statement (interpreter teardown)."""
    r: dict[str, list[float]] = {label: [] for label, _ in EXIT_CASES}
    for _ in range(n):
        for label, code in EXIT_CASES:
            p = subprocess.run([PY, "-c", code + "\nimport time; print(time.time())"], env=sb.env,
                               capture_output=True, timeout=60)
            t_end = time.time()
            r[label].append(t_end - float(p.stdout.split()[-1]))
    print("interpreter teardown: last statement until the process has exited (the parent's clock):")
    for label, _ in EXIT_CASES:
        print(stats_row(label, r[label]))
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=15, help="rounds per data-directory state (default 15)")
    ap.add_argument("--vms", type=int, default=5, help="VMs in the populated states (default 5)")
    ap.add_argument("--importtime", type=int, default=5, help="importtime runs (default 5; 0: skip)")
    ap.add_argument("--traced", type=int, default=3, help="instrumented `ps` runs (default 3; 0: skip)")
    add_common_args(ap)
    opts = ap.parse_args()
    with Sandbox("ps", pyc_cache=not opts.no_pyc_cache) as sb:
        header("ps: `hypr ps -a` cold start vs `python -c pass` and `python -c \"import asyncio\"`", sb)
        sb.load_busybox()
        sb.hypr("ps", "-a")                    # warm-up: the page cache, the database file, bytecode
        if sb.pyc_cache:
            cached = any((ROOT / d / "__pycache__").is_dir() for d in ("hypr_engine", "hypr_tui"))
            print("`PYTHONDONTWRITEBYTECODE=1` rows: HYPR's modules compiled from source on every run"
                  + (" (NOTE: the source tree has __pycache__ directories, which such runs still read)"
                     if cached else "") + "\n")
        print(f"load average before: {loadavg()}\n")
        report("0 VMs (one image loaded)", floors_and_ps(sb, opts.n, 0))

        ids = [sb.hypr("create", "--name", f"hb-ps-{i}", IMAGE, "sleep", "3600").stdout.decode().split()[-1]
               for i in range(opts.vms)]
        report(f"{opts.vms} VMs created (not started)", floors_and_ps(sb, opts.n, opts.vms))

        t = time.perf_counter()
        sb.hypr("start", *ids, timeout=300)
        wait_until(lambda: len(sb.hypr("ps", "-q").stdout.split()) == opts.vms, 120, 0.2, "the VMs to run")
        print(f"({opts.vms} VMs started and running after {fmt_s(time.perf_counter() - t)})")
        time.sleep(1.0)                        # let the last boot settle
        report(f"{opts.vms} VMs running", floors_and_ps(sb, opts.n, opts.vms))

        if opts.traced:
            runs = []
            for _ in range(opts.traced):
                marks, proc = traced_cli(sb, ["ps", "-a"], timeout=60)
                if proc.returncode != 0:
                    raise RuntimeError(f"traced hypr ps exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
                runs.append(marks)
            print(f"breakdown of `hypr ps -a` with {opts.vms} VMs running (median of {len(runs)} instrumented "
                  "runs, bench/_traced_cli.py; not the timed runs):")
            print_breakdown(runs, STEPS)
            print()
        if opts.importtime:
            importtime(sb, opts.importtime)
            exit_cost(sb, opts.n // 2 or 1)
        print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
