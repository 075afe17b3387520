"""The `hypr` CLI with timestamps around its steps, for bench/boot.py's overhead breakdown.

    python bench/_traced_cli.py OUT.json HYPR-ARGS...

Runs `hypr_tui.cli.main(HYPR-ARGS)` in this process after wrapping a few engine
functions *in this process only* (no engine file changes) so each step records
the wall-clock time it ended; a watcher thread learns QEMU's pid from the
supervisor's ready line and records when QEMU and the supervisor exit and the
supervisor's own stage stamps (supervisor.json; a --rm VM deletes it on exit, so
it is polled). Marks are `time.time()` values, written to OUT.json at exit.
A wrapper that no longer finds its target (the engine moved on) is skipped.
"""

from __future__ import annotations

import time

T0 = time.time()

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

OUT = Path(sys.argv[1])
ARGS = sys.argv[2:]
marks: dict[str, float] = {"interpreter_ready": T0}
extra: dict = {"supervisor_stages": {}, "skipped_wrappers": []}
_watcher: threading.Thread | None = None


def mark(name: str) -> None:
    marks.setdefault(name, time.time())


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hypr_tui import cli  # noqa: E402

mark("cli_imported")
import hypr_engine.agent.client as hagent  # noqa: E402
import hypr_engine.client as hclient  # noqa: E402
import hypr_engine.images as himages  # noqa: E402
import hypr_engine.vms as hvms  # noqa: E402
from hypr_tui import formatting  # noqa: E402

# What the CLI imports lazily on its way to an open engine, so that "engine open" is not imports.
for _name in ("hypr_engine.engine", "hypr_engine._embedded", "hypr_tui.commands", "hypr_tui.terminal"):
    try:
        __import__(_name)
    except ImportError:
        pass
mark("engine_imported")


def wrap_async(owner, name: str, before: str | None, after: str | None, *, classmethod_: bool = False) -> None:
    orig = getattr(owner, name, None)
    if orig is None:
        extra["skipped_wrappers"].append(f"{getattr(owner, '__name__', owner)}.{name}")
        return

    async def wrapper(*a, **k):
        if before:
            mark(before)
        result = await orig(*a, **k)
        if after:
            mark(after)
        return result

    setattr(owner, name, staticmethod(wrapper) if classmethod_ else wrapper)


def wrap_sync(owner, name: str, before: str | None, after: str | None, on_result=None) -> None:
    orig = getattr(owner, name, None)
    if orig is None:
        extra["skipped_wrappers"].append(f"{getattr(owner, '__name__', owner)}.{name}")
        return

    def wrapper(*a, **k):
        if before:
            mark(before)
        result = orig(*a, **k)
        if after:
            mark(after)
        if on_result:
            on_result(a, result)
        return result

    setattr(owner, name, wrapper)


wrap_async(hclient.HyprClient, "connect", "engine_open_start", "engine_open_end", classmethod_=True)
wrap_async(hvms.VmService, "create", None, "create_end")
wrap_async(hvms.VmService, "start", "start_begin", "start_end")
wrap_async(himages.ImageService, "rootfs_for", None, "rootfs_ready")
wrap_sync(hvms, "write_initrd", None, "initrd_written")
wrap_async(hvms.VmService, "_spawn_supervisor", "supervisor_spawn_start", "supervisor_ready")
wrap_async(hclient.HyprClient, "close", "command_done", "engine_closed")
wrap_async(hagent.AgentClient, "connect", "agent_connect_start", "agent_connected", classmethod_=True)
wrap_async(hagent.AgentClient, "exec", "exec_sent", "exec_started")
wrap_async(hagent.AgentClient, "close", "agent_close_start", "agent_closed")

_vm_dir: list[Path] = []
_orig_spawn = hvms.VmService._spawn_supervisor


async def _spawn_capture(self, vm_dir, *a, **k):
    _vm_dir.append(Path(vm_dir))
    return await _orig_spawn(self, vm_dir, *a, **k)


hvms.VmService._spawn_supervisor = _spawn_capture


def _on_ready_line(args, line) -> None:
    global _watcher
    if isinstance(line, str) and line.startswith("ok") and _vm_dir:
        try:
            pid = int(line.split()[1])
        except (IndexError, ValueError):
            return
        _watcher = threading.Thread(target=_watch, args=(pid, _vm_dir[-1]), daemon=True)
        _watcher.start()


wrap_sync(hvms, "_read_line", None, None, on_result=_on_ready_line)


def _watch(qemu_pid: int, vm_dir: Path) -> None:
    """Poll supervisor.json's stages until QEMU ends; then wait for the supervisor to end too."""
    try:
        qfd = os.pidfd_open(qemu_pid)
    except OSError:
        return
    sup_pid = None
    sj = vm_dir / "supervisor.json"
    while True:
        try:
            data = json.loads(sj.read_text())
            extra["supervisor_stages"].update(data.get("stages") or {})
            sup_pid = (data.get("supervisor") or {}).get("pid", sup_pid)
        except (OSError, ValueError):
            pass
        r, _, _ = select.select([qfd], [], [], 0.01)
        if r:
            mark("qemu_exit")
            break
    os.close(qfd)
    if sup_pid:
        try:
            sfd = os.pidfd_open(sup_pid)
        except OSError:
            return
        if select.select([sfd], [], [], 10)[0]:
            mark("supervisor_exit")
        os.close(sfd)


_orig_write_record = formatting.write_record


def _write_record(rec, *a, **k):
    mark("first_output")
    return _orig_write_record(rec, *a, **k)


formatting.write_record = _write_record

_orig_parse_line = hvms.parse_line


def _parse_line(line):
    rec = _orig_parse_line(line)
    if rec is not None and rec.kind == "x" and rec.payload.startswith(b"exit"):
        mark("exit_record_read")
    return rec


hvms.parse_line = _parse_line


@atexit.register
def _dump() -> None:
    mark("atexit")
    if _watcher is not None:
        _watcher.join(3)
    marks["watcher_joined"] = time.time()
    OUT.write_text(json.dumps({"marks": marks, **extra}))


# The CLI ends with os._exit (no interpreter teardown), which skips atexit: dump first.
_real_exit = os._exit


def _exit_after_dump(code: int) -> None:
    atexit.unregister(_dump)
    _dump()
    _real_exit(code)


os._exit = _exit_after_dump
cli.main(ARGS)
