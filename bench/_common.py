"""Shared plumbing of HYPR's benchmarks: scratch directories, the CLI, statistics, cleanup.

Every benchmark runs against its own temporary data directory and a short runtime
directory (/tmp/hb-XXXXXXXX: Unix socket paths are limited to 108 bytes), removes
every VM it started with `hypr rm -f` (also on failure or Ctrl-C), kills every raw
QEMU it started, and finally kills any process still naming one of its directories
(a leak it then reports). Nothing here touches the user's own HYPR data.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import platform
import resource
import shutil
import signal

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypr_engine.proc import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
_VENV_HYPR = ROOT / ".venv" / "bin" / "hypr"
# The CLI exactly as a user starts it (its shebang is the venv's interpreter).
HYPR_CMD = [str(_VENV_HYPR)] if _VENV_HYPR.exists() else [PY, "-m", "hypr_tui.cli"]
# The same, as arguments of an explicit interpreter (for `python -X importtime ...`).
HYPR_PY_ARGS = [str(_VENV_HYPR)] if _VENV_HYPR.exists() else ["-m", "hypr_tui.cli"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hypr"
BUSYBOX_TAR = CACHE / "images" / "busybox.tar"
IMAGE = "hypr/busybox"
PR_SET_PDEATHSIG = 1


# --- statistics -----------------------------------------------------------------------

def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def p90(xs: list[float]) -> float:
    """Nearest-rank 90th percentile (with 10 samples: the 9th smallest)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, -(-9 * len(s) // 10) - 1))
    return s[k]


def fmt_s(x: float) -> str:
    if x != x:  # nan
        return "-"
    if x < 0:
        return "-" + fmt_s(-x)
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 0.001:
        return f"{x * 1000:.1f} ms"
    return f"{x * 1e6:.0f} us"


def stats_row(name: str, xs: list[float]) -> str:
    return (f"  {name:<44} n={len(xs):<4} median {fmt_s(median(xs)):>10}   p90 {fmt_s(p90(xs)):>10}"
            f"   min {fmt_s(min(xs) if xs else float('nan')):>10}")


def ratio_row(name: str, num: list[float], den: list[float]) -> str:
    m_num, m_den = median(num), median(den)
    ratio = m_num / m_den if m_den else float("nan")
    diff = m_num - m_den
    return f"  {name:<44} {ratio:6.2f}x   ({'+' if diff >= 0 else ''}{fmt_s(diff)} median)"


# --- the machine ------------------------------------------------------------------------

def machine_lines() -> list[str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
                break
    except OSError:
        pass
    qemu = "?"
    try:
        from hypr_engine.vmm import probe

        accel = probe.probe_accelerator()
        qbin = probe.find_qemu()
        out = subprocess.run([qbin, "--version"], capture_output=True, text=True, timeout=10).stdout
        qemu = out.splitlines()[0] if out else qbin
        accel_s = f"{accel.value} ({accel.reason})"
    except Exception as exc:  # informational only
        accel_s = f"? ({exc})"
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"host: {os.cpu_count()} CPUs ({cpu}), {mem} RAM, Linux {platform.release()}",
        f"qemu: {qemu}; accelerator: {accel_s}",
        f"python: {platform.python_version()} ({PY})",
    ]


def header(title: str, sb: "Sandbox | None" = None) -> None:
    print(f"== {title}")
    for line in machine_lines():
        print(f"   {line}")
    if sb is not None:
        if sb.pyc_cache:
            print("   bytecode: HYPR's processes use a bytecode cache (PYTHONPYCACHEPREFIX in the sandbox)")
        else:
            print(f"   bytecode: environment as is (PYTHONDONTWRITEBYTECODE="
                  f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    print()


def add_common_args(ap) -> None:
    ap.add_argument("--no-pyc-cache", action="store_true",
                    help="run HYPR's processes with the environment as is (no private bytecode cache)")


# --- process helpers ------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this benchmark dies (as the supervisor does for QEMU)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Sandbox:
    """A private HYPR data directory + short runtime directory, torn down completely on exit."""

    def __init__(self, name: str, *, pyc_cache: bool = True) -> None:
        self.name = name
        self.data = Path(tempfile.mkdtemp(prefix=f"hypr-bench-{name}-"))
        self.runtime = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
        self.scratch = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))  # raw QEMU's files and sockets
        self.env = dict(os.environ)
        self.env.update(HYPR_DATA_DIR=str(self.data), HYPR_RUNTIME_DIR=str(self.runtime))
        self.env["PYTHONPATH"] = str(ROOT) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        # Bytecode: a user's install has .pyc files; an environment with PYTHONDONTWRITEBYTECODE=1
        # (this project's sessions set it) makes every `hypr` process (and every supervisor, which
        # inherits the environment) compile all HYPR modules from source. By default the children
        # get a private bytecode cache in the scratch directory (the source tree is not written);
        # `--no-pyc-cache` keeps the environment as it is.
        self.env_as_is = dict(self.env)
        self.pyc_cache = pyc_cache
        if pyc_cache:
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(self.scratch / "pycache")
        self.raw: list[subprocess.Popen] = []
        self.last_cpu = 0.0
        self.leaks: list[str] = []
        self._old_term = None

    # context manager: SIGTERM becomes SystemExit so `finally` blocks and cleanup run
    def __enter__(self) -> "Sandbox":
        os.environ["HYPR_DATA_DIR"] = str(self.data)          # for in-process engine use
        os.environ["HYPR_RUNTIME_DIR"] = str(self.runtime)
        self._old_term = signal.signal(signal.SIGTERM, _sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short (VMs outlive us).
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.cleanup()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, self._old_term or signal.SIG_DFL)

    # --- the CLI --------------------------------------------------------------------------

    def hypr(self, *args: str, timeout: float = 120, check: bool = True,
             input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([*HYPR_CMD, *args], env=self.env, capture_output=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"hypr {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
        return proc

    def timed(self, argv: list[str], *, timeout: float = 120,
              env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
        """Wall time of one fresh process, from spawn to exit (output captured).

        `self.last_cpu` gets the CPU time (user + system) of that process and of the children
        it waited for (not of a daemonised supervisor, which is no longer its child)."""
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env or self.env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return elapsed, proc

    def load_busybox(self) -> None:
        if not BUSYBOX_TAR.exists():
            raise SystemExit(f"{BUSYBOX_TAR} is missing: run ./dev setup first")
        self.hypr("load", "-q", "-i", str(BUSYBOX_TAR))

    def vm_ids(self) -> list[str]:
        try:
            out = self.hypr("ps", "-aq", timeout=60, check=False)  # short ids: unique prefixes
            return out.stdout.decode().split()
        except Exception:
            return []

    # --- raw QEMU -----------------------------------------------------------------------

    def spawn_raw(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, **kwargs)
        self.raw.append(proc)
        return proc

    # --- teardown -------------------------------------------------------------------------

    def cleanup(self) -> None:
        if self.data.exists() and (self.data / "hypr.db").exists():
            ids = self.vm_ids()
            if ids:
                self.hypr("rm", "-f", *ids, timeout=120, check=False)
        for proc in self.raw:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        needles = (str(self.data), str(self.runtime), str(self.scratch))
        deadline = time.monotonic() + 10
        left = processes_mentioning(*needles)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = processes_mentioning(*needles)
        for pid, cmd in left:
            self.leaks.append(f"{pid}: {cmd}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in (self.runtime, self.scratch, self.data):
            shutil.rmtree(d, ignore_errors=True)
        if self.leaks:
            print(f"\nWARNING: {len(self.leaks)} process(es) were left behind and killed:", file=sys.stderr)
            for line in self.leaks:
                print(f"  {line}", file=sys.stderr)


class RawVm:
    """A VM prepared for QEMU alone, exactly as the engine would boot it with `--rm`.

    The boot configuration is composed by the engine's own functions from the image
    in the sandbox (argv, env, workdir, user, stop signal, /etc/hosts), encoded by
    `hypr_engine.vmm.bootcfg` and appended to kestrel's initramfs; the rootfs is the
    squashfs the engine cached; the argv is `hypr_engine.vmm.qemu.build_argv`'s.
    Files live in the sandbox's scratch directory (`<name>/`, sockets in `<name>-r/`).
    """

    def __init__(self, sb: Sandbox, workload: list[str], name: str) -> None:
        from hypr_engine.vmm import probe
        from hypr_engine.vmm.bootcfg import BootConfig, write_initrd
        from hypr_engine.vmm.qemu import VmLaunch, build_argv

        self.sb = sb
        image_config, rootfs, argv, env, hosts_file = _engine_view(sb, workload)
        artifacts = probe.find_guest_artifacts()
        accel = probe.probe_accelerator()
        vm_id = os.urandom(32).hex()
        hostname = vm_id[:12]
        config = image_config.get("config") or {}
        self.boot = BootConfig(
            vm_id=vm_id,
            argv=argv,
            env=env,
            hostname=hostname,
            upper_device=None,                       # --rm: tmpfs upper layer, no disk
            workdir=config.get("WorkingDir") or None,
            user=config.get("User") or None,
            stop_signal=_stop_signal(config),
            hosts=hosts_file(hostname),
        )
        self.dir = sb.scratch / name
        self.dir.mkdir()
        self.run_dir = sb.scratch / f"{name}-r"     # stands in for the VM's runtime dir
        self.run_dir.mkdir()
        write_initrd(artifacts.initramfs, self.boot, self.dir / "initrd")
        self.launch = VmLaunch(
            qemu=probe.find_qemu(),
            accel=accel.value,
            kernel=artifacts.kernel,
            initrd=self.dir / "initrd",
            rootfs=rootfs,
            upper=None,
            console_log=self.dir / "console.log",
            workload_log=self.dir / "log",
            agent_socket=self.run_dir / "agent.sock",
            memory_mb=256,
            cpus=1,
            tsc_khz=probe.host_tsc_khz(),
        )
        self.argv = build_argv(self.launch)


def _engine_view(sb: Sandbox, workload: list[str]):
    """What the engine itself would put in a `--rm` VM's boot config, asked of the engine
    (in-process, read-only): image config, cached rootfs path, composed argv and env."""
    import asyncio

    from hypr_engine import vms as vmsmod
    from hypr_engine.engine import Engine
    from hypr_engine.models import VmSpec
    from hypr_engine.paths import Layout

    async def ask():
        engine = await Engine.open(Layout(sb.data, sb.runtime))
        try:
            image, _ = await engine.images.resolve(IMAGE)
            rootfs = await engine.images.rootfs_for(image)   # the squashfs HYPR boots (cache hit)
            spec = VmSpec(image=IMAGE, command=list(workload), auto_remove=True)
            config = image.config.get("config") or {}
            return image.config, Path(rootfs), vmsmod.compose_argv(spec, image), vmsmod.compose_env(spec, config)
        finally:
            await engine.close()

    image_config, rootfs, argv, env = asyncio.run(ask())
    hosts = getattr(vmsmod, "_hosts_file", lambda h: f"127.0.0.1\tlocalhost\n127.0.1.1\t{h}\n")
    return image_config, rootfs, argv, env, hosts


def _stop_signal(config: dict) -> int:
    from hypr_engine import vms as vmsmod

    try:
        return vmsmod.parse_signal(config.get("StopSignal") or "SIGTERM")
    except Exception:
        return 15


def tail_lines(path: Path, n: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


TRACER = Path(__file__).resolve().parent / "_traced_cli.py"


def traced_cli(sb: Sandbox, args: list[str], *, timeout: float) -> tuple[dict, subprocess.CompletedProcess]:
    """One run of the CLI under bench/_traced_cli.py: its marks (time.time() values), plus
    `spawn`/`end` seen from here and `_total` (spawn to exit minus the tracer's own wait)."""
    out = sb.scratch / f"trace-{os.urandom(4).hex()}.json"
    t_spawn = time.time()
    proc = subprocess.run([PY, str(TRACER), str(out), *args], env=sb.env, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    t_end = time.time()
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {"marks": {}}
    marks = dict(data["marks"])
    for k, v in (data.get("supervisor_stages") or {}).items():
        marks.setdefault(k, v)
    marks["spawn"], marks["end"] = t_spawn, t_end
    marks["_total"] = t_end - t_spawn - (marks.get("watcher_joined", t_end) - marks.get("atexit", t_end))
    marks["_skipped"] = data.get("skipped_wrappers") or []
    return marks, proc


def print_breakdown(runs: list[dict], steps: list[tuple[str, str, str]]) -> None:
    for label, a, b in steps:
        xs = [r[b] - r[a] for r in runs if a in r and b in r]
        print(f"  {label:<46} {fmt_s(median(xs)) if xs else 'n/a':>10}")
    print(f"  {'total (instrumented)':<46} {fmt_s(median([r['_total'] for r in runs])):>10}")
    skipped = sorted({s for r in runs for s in r.get("_skipped", [])})
    if skipped:
        print(f"  (wrappers skipped, their targets are gone: {', '.join(skipped)})")


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def _sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
