"""Reconcile at hyprd's start: make the database, the files and /proc agree.

hyprd may start after a crash, a SIGKILL, a reboot, or hours in which only
supervisors ran. It holds the data directory's lock exclusively, so no other engine
works meanwhile, and it passes over everything once before it serves:

- every active VM (starting, running, stopping, restarting) is re-adopted when its
  supervisor is alive, identified by pid + start time + command line (a pid alone may
  have been recycled; start time alone could, in theory, match a stranger);
  a VM left `stopping` by a daemon that died mid-stop is stopped again;
- a VM whose supervisor is gone is settled as exited with the code the supervisor
  recorded in exit.json (or 255 and a reason when it recorded none): the exit that
  happened while no daemon ran becomes visible, with its event;
- a VM left `removing` (a removal cut short) is removed for good;
- files of VMs whose rows no longer exist (VM directories, runtime directories and
  their sockets, operation locks) are deleted, unless a live supervisor still owns
  them (a `--rm` VM finishing its own removal);
- blobs and root filesystems no image refers to (an image load cut short) and stale
  temporary files of the content store are swept.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.proc import ProcessRef, cmdline
from hypr_engine.state.machine import ACTIVE_STATES, VmState, guarded_update_sql

log = logging.getLogger("hyprd.reconcile")
RUNTIME_DIR_RE = re.compile(r"^[0-9a-f]{12}$")
VM_ID_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Report:
    adopted: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)      # exited while no daemon watched
    removed: list[str] = field(default_factory=list)      # removals finished
    to_stop: list[str] = field(default_factory=list)      # stops finished in the background
    cleaned: list[str] = field(default_factory=list)      # paths deleted

    def summary(self) -> str:
        return (f"{len(self.adopted)} VMs re-adopted, {len(self.settled)} exits recorded, "
                f"{len(self.removed)} removals finished, {len(self.to_stop)} stops resumed, "
                f"{len(self.cleaned)} leftovers deleted")


def supervisor_process(vm_dir: Path) -> ProcessRef | None:
    """The VM's supervisor if it is alive and really is this VM's supervisor."""
    try:
        data = json.loads((vm_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        return None
    ref = ProcessRef.from_json(data.get("supervisor"))
    if ref is None or not ref.alive():
        return None
    argv = cmdline(ref.pid)
    if "hypr_engine.supervisor" not in argv or str(vm_dir) not in argv:
        return None
    return ref


async def reconcile_all(engine) -> Report:
    report = Report()
    layout = engine.layout
    db = engine.db
    rows = await db.fetchall("SELECT id, name, state, auto_remove FROM vms")
    ids = {row["id"] for row in rows}
    for row in rows:
        vm_id, state = row["id"], row["state"]
        vm_dir = layout.vm_dir(vm_id)
        try:
            if state == VmState.REMOVING.value:
                await engine.vms.purge(vm_id, kill=True)
                report.removed.append(vm_id)
                continue
            if VmState(state) not in ACTIVE_STATES:
                continue
            if supervisor_process(vm_dir) is not None:
                report.adopted.append(vm_id)
                if state == VmState.STOPPING.value:
                    report.to_stop.append(vm_id)
                continue
            await _settle(engine, vm_id, vm_dir, bool(row["auto_remove"]))
            report.settled.append(vm_id)
        except Exception as exc:  # one broken VM must not keep the daemon from starting
            log.warning("reconciling VM %s failed: %s", vm_id[:12], exc)
    await _clean_orphans(engine, ids, report)
    return report


async def _settle(engine, vm_id: str, vm_dir: Path, auto_remove: bool) -> None:
    """Record the exit of a VM whose supervisor is gone."""
    try:
        exit_info = json.loads((vm_dir / "exit.json").read_text())
    except (OSError, ValueError):
        exit_info = {"exit_code": 255, "finished_at": time.time(),
                     "error": "the VM's supervisor died without recording an exit (while no daemon watched)"}
    if auto_remove and exit_info.get("exit_code") is not None and exit_info.get("error") is None:
        await engine.vms.purge(vm_id, kill=False)
        return
    guard, params = guarded_update_sql(VmState.EXITED)
    await engine.db.execute(
        f"UPDATE vms SET state='exited', exit_code=?, error=?, finished_at=? WHERE id=? AND {guard}",
        (exit_info.get("exit_code"), exit_info.get("error"), exit_info.get("finished_at") or time.time(),
         vm_id, *params),
    )


async def _clean_orphans(engine, ids: set[str], report: Report) -> None:
    layout = engine.layout
    prefixes = {i[:12] for i in ids}
    vms_root = layout.data / "vms"
    owned_runtime: set[str] = set()
    if vms_root.is_dir():
        for entry in vms_root.iterdir():
            if entry.name in ids or not VM_ID_RE.match(entry.name):
                continue
            if supervisor_process(entry) is not None:
                owned_runtime.add(entry.name[:12])  # a --rm VM removing itself right now
                continue
            shutil.rmtree(entry, ignore_errors=True)
            report.cleaned.append(str(entry))
    if layout.runtime.is_dir():
        for entry in layout.runtime.iterdir():
            if (entry.is_dir() and not entry.is_symlink() and RUNTIME_DIR_RE.match(entry.name)
                    and entry.name not in prefixes and entry.name not in owned_runtime):
                shutil.rmtree(entry, ignore_errors=True)
                report.cleaned.append(str(entry))
    locks = layout.data / "locks"
    if locks.is_dir():
        for entry in locks.iterdir():
            if entry.suffix == ".lock" and VM_ID_RE.match(entry.stem) and entry.stem not in ids:
                entry.unlink(missing_ok=True)
                report.cleaned.append(str(entry))
    try:
        swept = engine.images.store.remove_stale_temp(older_than=0)
        swept += engine.images.rootfs.remove_stale_temp(older_than=0)
        if swept:
            report.cleaned.append(f"{swept} temporary blob files")
        before = set(engine.images.store.digests())
        await engine.images._collect_blobs()
        gone = before - set(engine.images.store.digests())
        report.cleaned.extend(f"blob {d}" for d in sorted(gone))
    except Exception as exc:
        log.warning("sweeping the content store failed: %s", exc)
