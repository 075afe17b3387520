"""VM service: create, start, stop, remove, list, logs, exec.

The engine prepares a VM's directory (launch description, per-VM initrd with
its boot configuration, writable-layer disk) and hands it to a supervisor,
which owns the VM from then on. This service never holds a VM's resources
itself: it can die at any moment and a new engine picks up from the database,
the VM directory and /proc (`_reconcile`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import posixpath
import tempfile
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from hypr_engine import filecopy, health
from hypr_engine.agent import codec
from hypr_engine.agent.client import AgentClient, ExecSession
from hypr_engine.errors import (
    AlreadyExists,
    Conflict,
    HyprError,
    InvalidArgument,
    NotFound,
    Timeout,
    Unavailable,
)
from hypr_engine.crash import crash_point
from hypr_engine.images import ImageService
from hypr_engine.logfile import LogRecord, parse_line, read_plan, read_records, rotated
from hypr_engine.models import ExecOptions, ImageInfo, VmInfo, VmSpec
from hypr_engine.net import guestfiles
from hypr_engine.net import ports as netports
from hypr_engine.net.gvproxy_driver import paths_of
from hypr_engine.net.service import NetService, attachments_of
from hypr_engine.paths import Layout
from hypr_engine.proc import ProcessRef
from hypr_engine.state.db import Database
from hypr_engine.state.machine import ACTIVE_STATES, VmState, guarded_update_sql
from hypr_engine.vmm import probe
from hypr_engine.vmm.bootcfg import BootConfig, write_initrd
from hypr_engine.vmm.devices import MICROVM_ACPI_SLOTS, MICROVM_SLOTS, Device
from hypr_engine.vmm.qemu import VmLaunch, build_argv, device_plan
from hypr_engine import mounts as mount_rules
from hypr_engine.volumes import VolumeService, check_device_budget

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
SUPERVISOR_READY_TIMEOUT = 15.0
BOOT_TIMEOUT = 120.0                # from QEMU's start to the guest agent's hello
OP_LOCK_TIMEOUT = 120.0
UPPER_DISK_BYTES = 8 << 30          # sparse: only what the workload writes takes space
DEFAULT_STOP_TIMEOUT = 10
ADJECTIVES = "brave calm eager fancy gentle happy jolly keen lively merry nimble proud quick silly sunny witty".split()
NOUNS = "albatross badger condor dingo egret falcon gecko heron ibis jackal kestrel lemur marten newt osprey puffin".split()


class VmService:
    def __init__(self, db: Database, layout: Layout, images: ImageService) -> None:
        self._db = db
        self._layout = layout
        self._images = images
        self._volumes = VolumeService(db, layout)
        self._net = NetService(layout)

    # --- lookup -------------------------------------------------------------------

    async def list(self, *, all: bool = True) -> list[VmInfo]:
        rows = await self._db.fetchall("SELECT * FROM vms ORDER BY created_at DESC")
        out = []
        for row in rows:
            info = await self._reconcile(self._info(row))
            if info and (all or info.state in (s.value for s in ACTIVE_STATES)):
                out.append(info)
        settings = await asyncio.to_thread(self._net.network_settings_of, [info.id for info in out])
        for info in out:
            info.network_settings = settings[info.id]
        return out

    async def get(self, ref: str) -> VmInfo:
        """A VM by exact name, exact id, or unique id prefix."""
        ref = ref.strip()
        if not ref:
            raise InvalidArgument("VM name or id is empty")
        row = await self._db.fetchone("SELECT * FROM vms WHERE name=? OR id=?", (ref, ref))
        if row is None and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = await self._db.fetchall("SELECT * FROM vms WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"VM id prefix {ref!r} is ambiguous ({len(rows)} VMs match)")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no such VM: {ref}")
        info = await self._reconcile(self._info(row))
        if info is None:
            raise NotFound(f"no such VM: {ref}")
        info.network_settings = await asyncio.to_thread(self._net.network_settings, info.id)
        return info

    def _info(self, row) -> VmInfo:
        raw = json.loads(row["spec_json"])
        spec = VmSpec.from_json(raw)
        stages = json.loads(row["stages_json"])
        sup = self._supervisor_file(row["id"])
        stages.update(sup.get("stages", {}))
        return VmInfo(
            id=row["id"], name=row["name"], image=row["image_ref"], image_id=row["image_id"],
            command=raw.get("_argv", []),
            state=row["state"], exit_code=row["exit_code"], error=row["error"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            auto_remove=bool(row["auto_remove"]), spec=spec, stages=stages,
            restart_count=row["restart_count"],
            health=self._health_state(row["id"], bool(raw.get("_health")), row["state"]),
            health_config=raw.get("_health"),
        )

    def _health_state(self, vm_id: str, configured: bool, state: str) -> dict | None:
        if not configured:
            return None
        try:
            return json.loads((self._layout.vm_dir(vm_id) / "health.json").read_text())
        except (OSError, ValueError):
            return {"Status": "starting" if state == VmState.RUNNING.value else "none", "FailingStreak": 0, "Log": []}

    def _supervisor_file(self, vm_id: str) -> dict:
        try:
            return json.loads((self._layout.vm_dir(vm_id) / "supervisor.json").read_text())
        except (OSError, ValueError):
            return {}

    def _supervisor_alive(self, vm_id: str) -> bool:
        ref = ProcessRef.from_json(self._supervisor_file(vm_id).get("supervisor"))
        return bool(ref and ref.alive())

    async def _reconcile(self, info: VmInfo) -> VmInfo | None:
        """Make the row agree with /proc when its supervisor is gone (crash, kill, reboot)."""
        if VmState(info.state) not in ACTIVE_STATES or self._supervisor_alive(info.id):
            return info
        if not self._try_op_lock(info.id):
            return info  # someone is starting or stopping it right now
        try:
            row = await self._db.fetchone("SELECT * FROM vms WHERE id=?", (info.id,))
            if row is None:
                return None
            info = self._info(row)
            if VmState(info.state) not in ACTIVE_STATES or self._supervisor_alive(info.id):
                return info
            try:
                exit_info = json.loads((self._layout.vm_dir(info.id) / "exit.json").read_text())
            except (OSError, ValueError):
                exit_info = {"exit_code": 255, "error": "the VM's supervisor died without recording an exit",
                             "finished_at": time.time()}
            if info.auto_remove and exit_info.get("exit_code") is not None and exit_info.get("error") is None:
                await self._delete(info.id)
                await self._volumes.discard(await self._volumes.anonymous_among(info.spec.mounts))
                return None
            await asyncio.to_thread(self._net.release, info.id)  # its supervisor could not close them
            guard, params = guarded_update_sql(VmState.EXITED)
            await self._db.execute(
                f"UPDATE vms SET state='exited', exit_code=?, error=?, finished_at=? WHERE id=? AND {guard}",
                (exit_info.get("exit_code"), exit_info.get("error"), exit_info.get("finished_at"), info.id, *params),
            )
            row = await self._db.fetchone("SELECT * FROM vms WHERE id=?", (info.id,))
            return self._info(row) if row else None
        finally:
            self._release_op_lock(info.id)

    # --- per-VM operation lock (across processes) ------------------------------------

    _held: dict[str, int] = {}

    def _lock_path(self, vm_id: str) -> Path:
        d = self._layout.data / "locks"
        d.mkdir(exist_ok=True)
        return d / f"{vm_id}.lock"

    def _try_op_lock(self, vm_id: str) -> bool:
        fd = os.open(self._lock_path(vm_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[vm_id] = fd
        return True

    def _release_op_lock(self, vm_id: str) -> None:
        fd = self._held.pop(vm_id, None)
        if fd is not None:
            os.close(fd)

    @asynccontextmanager
    async def _op(self, vm_id: str) -> AsyncIterator[None]:
        """One operation at a time per VM, also across HYPR processes."""
        deadline = time.monotonic() + OP_LOCK_TIMEOUT
        while not self._try_op_lock(vm_id):
            if time.monotonic() > deadline:
                raise Timeout(f"VM {vm_id[:12]} is busy with another operation")
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            self._release_op_lock(vm_id)

    # --- create / start ------------------------------------------------------------------

    async def create(self, spec: VmSpec) -> VmInfo:
        stages = {"requested": time.time()}
        policy, _ = parse_restart(spec.restart)
        if spec.stop_signal is not None:
            spec.stop_signal = parse_signal(spec.stop_signal)
        spec.log_opts = parse_log_opts(spec.log_opts)
        if spec.auto_remove and policy != "no":
            raise InvalidArgument("conflicting options: --restart and --rm")
        image, ref = await self._images.resolve(spec.image)
        stages["image_resolved"] = time.time()
        argv = compose_argv(spec, image)
        healthcheck = health.merge(
            health.from_image((image.config.get("config") or {}).get("Healthcheck")),
            cmd=spec.health_cmd, interval=spec.health_interval, timeout=spec.health_timeout,
            retries=spec.health_retries, start_period=spec.health_start_period, disabled=spec.no_healthcheck,
        )
        name = spec.name or await self._free_name()
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f"invalid VM name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
            )
        # Networks and ports: everything that can be refused is refused before the VM exists.
        attachments = attachments_of(spec.networks)
        exposed = list(((image.config.get("config") or {}).get("ExposedPorts") or {}).keys())
        requests = netports.parse_all(spec.publish, exposed, spec.publish_all)
        resolved = await asyncio.to_thread(self._net.check_create, attachments, requests)
        _check_nic_budget(len(resolved), spec)
        # Mounts: checked, within the device plan (with the NICs), volumes created, before the
        # VM exists; the volumes made here go again if the VM cannot be recorded.
        spec.mounts = mount_rules.check_mounts(spec.mounts)
        check_device_budget(spec.mounts, upper=not spec.auto_remove, nics=len(resolved))
        spec.mounts, new_volumes = await self._volumes.prepare(spec.mounts)
        vm_id = os.urandom(32).hex()
        spec_json = spec.to_json() | {"_argv": argv, "_health": dataclasses.asdict(healthcheck) if healthcheck else None}
        try:
            # the row and its endpoints (addresses) in one transaction
            await asyncio.to_thread(
                self._net.insert_vm,
                "INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at, auto_remove, stages_json) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (vm_id, name, image.id, _familiar(ref), json.dumps(spec_json), VmState.CREATED.value,
                 time.time(), int(spec.auto_remove), json.dumps(stages)),
                vm_id, resolved,
            )
        except HyprError:
            await self._volumes.discard(new_volumes)
            raise
        except Exception as exc:  # sqlite3.IntegrityError
            await self._volumes.discard(new_volumes)
            if "UNIQUE" in str(exc):
                raise AlreadyExists(f"the name {name!r} is already in use by another VM") from None
            raise
        crash_point("create.after_insert")
        return await self.get(vm_id)

    async def ports(self, ref: str) -> list[netports.PortBinding]:
        """The VM's forwards in place (none unless it runs: they close when it ends)."""
        info = await self.get(ref)
        return await asyncio.to_thread(self._net.bindings, info.id)

    async def _free_name(self) -> str:
        for _ in range(100):
            name = f"{random.choice(ADJECTIVES)}_{random.choice(NOUNS)}"
            if await self._db.fetchone("SELECT 1 FROM vms WHERE name=?", (name,)) is None:
                return name
        return f"vm_{os.urandom(4).hex()}"

    async def start(self, ref: str) -> VmInfo:
        info = await self.get(ref)
        async with self._op(info.id):
            info = await self.get(info.id)
            if info.state in (VmState.RUNNING.value, VmState.STARTING.value):
                return info  # Docker: starting a running container is a no-op
            guard, params = guarded_update_sql(VmState.STARTING)
            moved = await self._db.execute(
                f"UPDATE vms SET state='starting', exit_code=NULL, error=NULL, finished_at=NULL WHERE id=? AND {guard}",
                (info.id, *params),
            )
            if not moved:
                raise Conflict(f"VM {info.name} cannot start from state {info.state}")
            crash_point("start.after_starting")
            try:
                await self._boot(info)
            except BaseException as exc:
                message = exc.message if isinstance(exc, HyprError) else f"{type(exc).__name__}: {exc}"
                await self._db.execute(
                    "UPDATE vms SET state='exited', exit_code=125, error=?, finished_at=? WHERE id=?",
                    (message, time.time(), info.id),
                )
                if info.auto_remove:
                    await self._delete(info.id)
                    await self._volumes.discard(await self._volumes.anonymous_among(info.spec.mounts))
                raise
        crash_point("start.after_spawn")
        return await self._wait_started(info)

    async def _wait_started(self, info: VmInfo) -> VmInfo:
        """Return once the guest agent answered (the workload runs) or the VM already ended,
        so `run -d` followed by `exec` just works, as with Docker."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            try:
                current = await self.get(info.id)
            except NotFound:
                return info  # a --rm VM that already finished
            if current.state != VmState.STARTING.value:
                return current
            if time.monotonic() > deadline:
                console = _tail(self._layout.vm_dir(info.id) / "console.log", 5)
                raise Timeout(f"VM {info.name} did not finish booting within {BOOT_TIMEOUT:g} s "
                              f"(it is left running; `hypr rm -f {info.name}` removes it)", detail=console)
            await asyncio.sleep(0.02)

    async def _boot(self, info: VmInfo) -> None:
        spec = info.spec
        stages = dict(info.stages)
        image = await self._images.get(info.image_id)
        rootfs = await self._images.rootfs_for(image)
        stages["rootfs_ready"] = time.time()
        artifacts = probe.find_guest_artifacts()
        accel = probe.probe_accelerator()
        vm_dir = self._layout.vm_dir(info.id)
        run_dir = self._layout.vm_runtime_dir(info.id)
        vm_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("exit.json", "supervisor.json"):
            (vm_dir / stale).unlink(missing_ok=True)
        upper = None if spec.auto_remove else vm_dir / "upper.ext4"
        if upper is not None and not upper.exists():
            await _make_ext4(upper, UPPER_DISK_BYTES)
        config = image.config.get("config") or {}
        if any(m["type"] == "volume" for m in spec.mounts or []):
            await self.list()   # settle VMs whose supervisor died unobserved: they no longer hold volumes
        mount_devices, mount_entries = await self._volumes.boot_devices(info.id, spec.mounts)
        endpoints = await asyncio.to_thread(self._net.endpoints, info.id)
        nics = self._net.nics(endpoints)
        await asyncio.to_thread(self._net.prepare, endpoints)      # e.g. this data dir's gvproxy is up
        hostname = spec.hostname or info.id[:12]
        boot = BootConfig(
            vm_id=info.id,
            argv=info.command,
            env=compose_env(spec, config, hostname=spec.hostname or info.id[:12]),
            hostname=spec.hostname or info.id[:12],
            upper_device="/dev/vdb" if upper is not None else None,
            workdir=spec.workdir or config.get("WorkingDir") or None,
            user=spec.user if spec.user is not None else (config.get("User") or None),
            stop_signal=spec.stop_signal or parse_signal(config.get("StopSignal") or "SIGTERM"),
            hosts=guestfiles.hosts_file(hostname, info.name, endpoints),
            resolv=guestfiles.resolv_conf(endpoints, nics),
            nics=[nic.guest.encode() for nic in nics],
            attach_wait_ms=30000 if (spec.interactive or spec.tty) else None,
            health=health.HealthConfig(**info.health_config) if info.health_config else None,
            mounts=mount_entries,
        )
        write_initrd(artifacts.initramfs, boot, vm_dir / "initrd")
        launch = VmLaunch(
            qemu=probe.find_qemu(),
            accel=accel.value,
            kernel=artifacts.kernel,
            initrd=vm_dir / "initrd",
            rootfs=rootfs,
            upper=upper,
            console_log=vm_dir / "console.log",
            workload_log=vm_dir / "log",
            agent_socket=run_dir / "agent.sock",
            memory_mb=spec.memory_mb,
            cpus=spec.cpus,
            tsc_khz=probe.host_tsc_khz(),
            mount_devices=mount_devices,
            **artifacts.launch_options(),
        )
        plan = device_plan(launch)
        for nic in nics:  # one slot each, in interface order; too many is an error before boot
            plan.add(Device("net", nic.purpose, nic.qemu_args))
        requests = netports.parse_all(spec.publish, list((config.get("ExposedPorts") or {}).keys()), spec.publish_all)
        bindings = await asyncio.to_thread(self._net.publish, info.id, requests, endpoints)
        (vm_dir / "console.log").write_bytes(b"")
        (vm_dir / "health.json").unlink(missing_ok=True)
        (vm_dir / "launch.json").write_text(json.dumps({
            "vm_id": info.id,
            "argv": build_argv(launch, plan),
            "agent_socket": str(launch.agent_socket),
            "control_socket": str(run_dir / "control.sock"),
            "runtime_dir": str(run_dir),
            "workload_log": str(launch.workload_log),
            "console_log": str(launch.console_log),
            "db": str(self._layout.db),
            "auto_remove": spec.auto_remove,
            "restart": dict(zip(("policy", "max"), parse_restart(spec.restart))),
            "stop_signal": boot.stop_signal,
            "log": spec.log_opts,
            "accel": accel.value,
            "devices": [d.purpose for d in plan.devices],
            # --rm removes these with the VM, as Docker does (the supervisor may be the one to do it)
            "anonymous_volumes": await self._volumes.anonymous_among(spec.mounts) if spec.auto_remove else [],
            # descriptors the supervisor obtains before each QEMU spawn ({fd:ID} in argv)
            "nics": [{"netdev": n.netdev_id, "fd_source": n.fd_source} for n in nics if n.fd_source],
            # forwards the supervisor closes when the VM ends for good
            "ports": [b.to_json() for b in bindings],
            "gvproxy": paths_of(self._layout).to_json(),
            # no default network: the supervisor proxies the ports itself (net/userproxy.py)
            "userproxy": self._net.proxy_target(endpoints),
        }, indent=1))
        await self._db.execute("UPDATE vms SET stages_json=? WHERE id=?", (json.dumps(stages), info.id))
        try:
            await self._spawn_supervisor(vm_dir)
        except BaseException:
            await asyncio.to_thread(self._net.release, info.id)
            raise

    async def _spawn_supervisor(self, vm_dir: Path) -> None:
        read_fd, write_fd = os.pipe()
        try:
            with open(vm_dir / "supervisor.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hypr_engine.supervisor", str(vm_dir), str(write_fd)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(write_fd,), start_new_session=True,
                    cwd="/", env=_supervisor_env(),
                )
            os.close(write_fd)
            write_fd = -1
            await asyncio.to_thread(proc.wait, 10)  # the first fork exits at once
            line = await asyncio.wait_for(asyncio.to_thread(_read_line, read_fd), SUPERVISOR_READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise Timeout("the VM's supervisor did not report within "
                          f"{SUPERVISOR_READY_TIMEOUT:g} s; see {vm_dir / 'supervisor.log'}") from None
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        if not line.startswith("ok"):
            detail = _tail(vm_dir / "supervisor.log", 5)
            raise Unavailable(line.removeprefix("error ").strip() or "the VM's supervisor failed to start",
                              detail=detail)

    # --- stop / remove ----------------------------------------------------------------------

    async def stop(self, ref: str, *, timeout: int | None = None, sig: int | None = None) -> VmInfo:
        info = await self.get(ref)
        if timeout is not None and timeout < 0:
            raise InvalidArgument("stop timeout must not be negative")
        async with self._op(info.id):
            info = await self.get(info.id)
            if VmState(info.state) not in ACTIVE_STATES:
                return info  # Docker: stopping a stopped container succeeds
            grace = timeout if timeout is not None else (info.spec.stop_timeout or DEFAULT_STOP_TIMEOUT)
            guard, params = guarded_update_sql(VmState.STOPPING)
            await self._db.execute(f"UPDATE vms SET state='stopping' WHERE id=? AND {guard}", (info.id, *params))
            crash_point("stop.after_stopping")
            await self._stop_supervised(info, grace, sig)
        try:
            return await self.get(info.id)
        except NotFound:
            return info  # --rm removed it

    async def _stop_supervised(self, info: VmInfo, grace: int, sig: int | None) -> None:
        control = self._layout.vm_runtime_dir(info.id) / "control.sock"
        try:
            client = await AgentClient.connect(control, timeout=2)
        except HyprError:
            client = None
        if client is not None:
            try:
                await client.stop(sig, grace * 1000)
                waiter = asyncio.ensure_future(client.wait_exit())
                await asyncio.wait_for(waiter, grace + 30)
            except (HyprError, asyncio.TimeoutError):
                pass
            finally:
                await client.close()
        else:
            # The supervisor is up but the guest is not answering (or it is already going):
            # SIGTERM makes the supervisor end the VM.
            ref = ProcessRef.from_json(self._supervisor_file(info.id).get("supervisor"))
            if ref and ref.alive():
                os.kill(ref.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 30
        while self._supervisor_alive(info.id):
            if time.monotonic() > deadline:
                raise Timeout(f"VM {info.name} did not stop within {grace + 30} s")
            await asyncio.sleep(0.05)

    async def remove(self, ref: str, *, force: bool = False) -> str:
        info = await self.get(ref)
        async with self._op(info.id):
            try:
                info = await self.get(info.id)
            except NotFound:
                return info.id
            if VmState(info.state) in ACTIVE_STATES:
                if not force:
                    raise Conflict(f"VM {info.name} is {info.state}: stop it first or use rm -f")
                await self._db.execute("UPDATE vms SET state='removing' WHERE id=?", (info.id,))
                crash_point("rm.after_removing")
                if any(m["type"] == "volume" and not m.get("readonly") for m in info.spec.mounts or []):
                    # As `docker rm -f`: the workload gets SIGKILL but what it wrote to its volumes
                    # stays; kestrel syncs them on the way down (the guest's page cache would die
                    # with QEMU). Bounded: a guest that does not answer is killed below.
                    try:
                        await asyncio.wait_for(self._stop_supervised(info, 0, signal.SIGKILL), 10)
                    except (HyprError, asyncio.TimeoutError):
                        pass
                await self._kill(info.id)
            else:
                await self._db.execute("UPDATE vms SET state='removing' WHERE id=?", (info.id,))
            crash_point("rm.after_kill")
            await self._delete(info.id)
        return info.id

    async def restart(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        info = await self.stop(ref, timeout=timeout)
        return await self.start(info.id)

    async def kill(self, ref: str, sig: int | str = signal.SIGKILL) -> VmInfo:
        """Send a signal to the workload (Docker's `kill`); SIGKILL by default."""
        sig = parse_signal(sig)
        info = await self.get(ref)
        if info.state not in (VmState.RUNNING.value, VmState.STARTING.value):
            raise Conflict(f"VM {info.name} is not running")
        _, client = await self.agent(info.id, timeout=30)
        try:
            await client.kill(sig)
        finally:
            await client.close()
        return await self.get(info.id)

    async def signal_process(self, ref: str, pid: int, sig: int | str = signal.SIGKILL) -> VmInfo:
        """Send a signal to one process of the guest by pid; the VM goes on unless it was the workload."""
        sig = parse_signal(sig)
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 2 or pid > 0x7FFFFFFF:
            raise InvalidArgument(f"invalid pid {pid!r}: a process of the guest other than 1 (kestrel)")
        info = await self.get(ref)
        if info.state not in (VmState.RUNNING.value, VmState.STARTING.value):
            raise Conflict(f"VM {info.name} is not running")
        _, client = await self.agent(info.id, timeout=30)
        try:
            await client.kill(sig, pid)
        except NotFound:
            raise NotFound(f"no process {pid} in VM {info.name}") from None
        finally:
            await client.close()
        return await self.get(info.id)

    async def rename(self, ref: str, new_name: str) -> VmInfo:
        info = await self.get(ref)
        if not NAME_RE.match(new_name):
            raise InvalidArgument(f"invalid VM name {new_name!r}")
        try:
            await self._db.execute("UPDATE vms SET name=? WHERE id=?", (new_name, info.id))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(f"the name {new_name!r} is already in use by another VM") from None
            raise
        return await self.get(info.id)

    async def purge(self, vm_id: str, *, kill: bool) -> None:
        """Everything of a VM gone, its processes first when `kill`: how reconcile finishes a
        removal that was interrupted, or an `--rm` VM that exited while nobody watched."""
        if kill:
            await self._kill(vm_id)
        await self._delete(vm_id)

    async def _kill(self, vm_id: str) -> None:
        """SIGKILL the supervisor; QEMU dies with it (PR_SET_PDEATHSIG). Waits until both are gone."""
        sup = self._supervisor_file(vm_id)
        procs = [ProcessRef.from_json(sup.get(k)) for k in ("supervisor", "qemu")]
        for ref in procs:
            if ref and ref.alive():
                try:
                    os.kill(ref.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while any(r and r.alive() for r in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _delete(self, vm_id: str) -> None:
        """Remove everything of a VM; safe to repeat and safe on half-created VMs."""
        await asyncio.to_thread(self._net.release, vm_id)   # its forwards (rm -f kills the supervisor)
        shutil.rmtree(self._layout.vm_runtime_dir(vm_id), ignore_errors=True)
        shutil.rmtree(self._layout.vm_dir(vm_id), ignore_errors=True)
        await self._db.execute("DELETE FROM vms WHERE id=?", (vm_id,))
        self._lock_path(vm_id).unlink(missing_ok=True)
        # user networks: the VM's TAPs go with it (its endpoints went with the row)
        from hypr_engine.net.bridge import sweep_data_dir

        await asyncio.to_thread(sweep_data_dir, self._layout.db, self._layout.data)

    # --- observe -------------------------------------------------------------------------------

    def log_path(self, vm_id: str) -> Path:
        return self._layout.vm_dir(vm_id) / "log"

    async def logs(self, ref: str, *, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogRecord]:
        """The workload's log records, rotated files first; with follow, until the VM has
        exited and everything is read."""
        info = await self.get(ref)
        path = self.log_path(info.id)
        plan = read_plan(path, tail)
        for older, offset in plan[:-1]:
            for record in _records_in(older, offset):
                yield record
        try:
            f = open(path, "rb")  # kept open: a --rm VM's file may be unlinked while we read
        except FileNotFoundError:
            if not follow:
                return
            f = await self._wait_for_file(path, info.id)
            if f is None:
                return
        with f:
            f.seek(plan[-1][1])
            pending = b""
            while True:
                chunk = f.read(1 << 16)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        record = parse_line(line)
                        if record:
                            yield record
                    continue
                if follow and os.fstat(f.fileno()).st_size < f.tell():
                    # Rotated under us: the rest of what we were reading is in `.1`, at the same offsets.
                    for record in _records_in(rotated(path, 1), f.tell() - len(pending)):
                        yield record
                    pending = b""
                    f.seek(0)
                    continue
                if not follow or not await self._still_active(info.id):
                    # One last read: the VM may have written its final records as it ended.
                    rest = pending + f.read()
                    for line in rest.split(b"\n"):
                        record = parse_line(line) if line else None
                        if record:
                            yield record
                    return
                await asyncio.sleep(0.05)

    async def _wait_for_file(self, path: Path, vm_id: str):
        while True:
            try:
                return open(path, "rb")
            except FileNotFoundError:
                if not await self._still_active(vm_id):
                    return None
                await asyncio.sleep(0.05)

    async def _still_active(self, vm_id: str) -> bool:
        try:
            info = await self.get(vm_id)
        except NotFound:
            return False
        return VmState(info.state) in ACTIVE_STATES

    async def wait(self, ref: str) -> int:
        """Block until the VM exits; its exit code."""
        info = await self.get(ref)
        while VmState(info.state) in ACTIVE_STATES:
            await asyncio.sleep(0.1)
            try:
                info = await self.get(info.id)
            except NotFound:
                raise NotFound(f"VM {info.name} was removed before it reported an exit code") from None
        return info.exit_code if info.exit_code is not None else 255

    async def stats(self, refs: list[str]) -> list[dict]:
        """One sample per VM: the guest's view (memory, CPU, disk, network, processes) and the
        VMM process's (RSS). CPU % is measured over 0.5 s from the guest's own tick counters."""
        vms = [await self.get(r) for r in refs]

        async def sample(info: VmInfo) -> dict:
            base = {"id": info.id, "name": info.name}
            if info.state != VmState.RUNNING.value:
                return base | {"error": info.state}
            try:
                _, client = await self.agent(info.id, timeout=10)
            except HyprError as exc:
                return base | {"error": exc.message}
            try:
                first = await client.stats()
                await asyncio.sleep(0.5)
                second = await client.stats()
            finally:
                await client.close()
            busy = lambda s: s.get("cpu_user", 0) + s.get("cpu_system", 0)  # noqa: E731
            total = lambda s: busy(s) + s.get("cpu_idle", 0)  # noqa: E731
            span = total(second) - total(first)
            cpu = 100.0 * (busy(second) - busy(first)) / span * info.spec.cpus if span > 0 else 0.0
            qemu = ProcessRef.from_json(self._supervisor_file(info.id).get("qemu"))
            return base | {
                "cpu_percent": cpu,
                "mem_used": (second.get("mem_total_kb", 0) - second.get("mem_available_kb", 0)) * 1024,
                "mem_limit": second.get("mem_total_kb", 0) * 1024,
                "net_rx": second.get("net_rx_bytes", 0), "net_tx": second.get("net_tx_bytes", 0),
                "block_read": second.get("disk_read_bytes", 0), "block_write": second.get("disk_write_bytes", 0),
                "pids": second.get("procs", 0),
                "vmm_rss": _rss_bytes(qemu.pid) if qemu and qemu.alive() else 0,
            }

        return list(await asyncio.gather(*(sample(v) for v in vms)))

    async def copy_to(self, ref: str, src: Path, dest: str, *, archive: bool = False) -> None:
        """`hypr cp HOSTPATH VM:DEST` with Docker's rules (filecopy.plan_copy_in)."""
        if not src.exists() and not src.is_symlink():
            raise NotFound(f"no such file or directory on the host: {src}")
        _, client = await self.agent(ref, timeout=30)
        try:
            dest_stat = await _stat_or_none(client, dest)
            parent_stat = None
            if dest_stat is None and not dest.endswith("/"):
                parent_stat = await _stat_or_none(client, posixpath.dirname(dest.rstrip("/")) or "/")
            directory, name = filecopy.plan_copy_in(src, dest, dest_stat, parent_stat)
            self._layout.tmp.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._layout.tmp) as tar:
                await asyncio.to_thread(filecopy.pack, src, name, tar, preserve_owner=archive)
                tar.seek(0)
                session = await client.copy_in(directory)
                waiter = asyncio.ensure_future(session.wait())  # returns input credit meanwhile
                try:
                    while chunk := tar.read(1 << 16):
                        await session.write(chunk)
                    session.close_stdin()
                    code = await asyncio.wait_for(waiter, 600)
                finally:
                    waiter.cancel()
            if code != 0:
                raise HyprError(f"copy into the VM failed (status {code})")
        finally:
            await client.close()

    async def copy_from(self, ref: str, src: str, dest: Path) -> None:
        """`hypr cp VM:SRC HOSTPATH` with Docker's rules: into DEST if it is a directory,
        else as DEST (its parent must exist)."""
        if not src.startswith("/"):
            raise InvalidArgument(f"the path in the VM must be absolute: {src!r}")
        if dest.is_dir():
            target_dir, rename = dest, None
        else:
            if not dest.parent.is_dir():
                raise NotFound(f"no such directory on the host: {dest.parent}")
            top = posixpath.basename(src.rstrip("/")) or "/"
            target_dir, rename = dest.parent, (top, dest.name)
        _, client = await self.agent(ref, timeout=30)
        try:
            session = await client.copy_out(src)
            self._layout.tmp.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._layout.tmp) as tar:
                async for _, chunk in session.output():
                    tar.write(chunk)
                if session.exit_code != 0:
                    raise HyprError(f"copy out of the VM failed (status {session.exit_code})")
                tar.seek(0)
                await asyncio.to_thread(filecopy.extract, tar, target_dir, rename_top=rename)
        finally:
            await client.close()

    async def agent(self, ref: str, *, timeout: float = 60.0) -> tuple[VmInfo, AgentClient]:
        info = await self.get(ref)
        if VmState(info.state) not in (VmState.RUNNING, VmState.STARTING):
            raise Conflict(f"VM {info.name} is not running")
        control = self._layout.vm_runtime_dir(info.id) / "control.sock"
        return info, await AgentClient.connect(control, timeout=timeout)

    async def exec(self, ref: str, options: ExecOptions) -> tuple[AgentClient, ExecSession]:
        """Start a process in a running VM; the caller closes the returned client."""
        if not options.argv:
            raise InvalidArgument("exec needs a command")
        info, client = await self.agent(ref)
        try:
            image = await self._images.get(info.image_id)
            config = image.config.get("config") or {}
            # As `docker exec`: the workload's environment, directory and user unless overridden.
            session = await client.exec(codec.ExecRequest(
                argv=options.argv,
                env=compose_env(info.spec, config, extra=options.env, hostname=info.spec.hostname or info.id[:12]),
                workdir=options.workdir or info.spec.workdir or config.get("WorkingDir") or None,
                user=options.user or info.spec.user or config.get("User") or None,
                tty=options.tty, rows=options.rows, cols=options.cols, stdin=options.interactive,
            ))
        except BaseException:
            await client.close()
            raise
        return client, session

    async def attach_main(self, ref: str, rows: int, cols: int) -> tuple[AgentClient, ExecSession]:
        """Start an attached (-i/-t) VM's workload as the main session."""
        info, client = await self.agent(ref)
        try:
            image = await self._images.get(info.image_id)
            config = image.config.get("config") or {}
            session = await client.exec(codec.ExecRequest(
                argv=info.command, env=compose_env(info.spec, config, hostname=info.spec.hostname or info.id[:12]),
                workdir=info.spec.workdir or config.get("WorkingDir") or None,
                user=info.spec.user if info.spec.user is not None else (config.get("User") or None),
                tty=info.spec.tty, rows=rows, cols=cols, stdin=info.spec.interactive, main=True,
            ))
        except BaseException:
            await client.close()
            raise
        return client, session


# --- composition rules (Docker's) ----------------------------------------------------------

def compose_argv(spec: VmSpec, image: ImageInfo) -> list[str]:
    """ENTRYPOINT + CMD as Docker composes them: --entrypoint drops the image's CMD."""
    config = image.config.get("config") or {}
    if spec.entrypoint is not None:
        entrypoint = spec.entrypoint
        cmd = spec.command or []
    else:
        entrypoint = config.get("Entrypoint") or []
        cmd = spec.command if spec.command else (config.get("Cmd") or [])
    argv = list(entrypoint) + list(cmd)
    if not argv:
        raise InvalidArgument("no command specified: the image has no ENTRYPOINT or CMD; give one after the image")
    return argv


def compose_env(spec: VmSpec, image_config: dict, extra: list[str] = (), hostname: str = "") -> list[str]:
    """Image ENV, then `run -e`, then (for exec) `exec -e`; later wins."""
    env: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for item in [*spec.env, *extra]:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("HOSTNAME", hostname)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in env.items()]


def parse_log_opts(opts: dict) -> dict:
    """Docker's json-file options: max-size (e.g. 10m) and max-file (count, at least 1)."""
    out: dict = {}
    for key, value in opts.items():
        if key == "max-size":
            out[key] = parse_size(str(value), "max-size")
            if out[key] < 4096:
                raise InvalidArgument(f"invalid log option max-size={value}: at least 4k")
        elif key == "max-file":
            if not str(value).isdigit() or int(value) < 1:
                raise InvalidArgument(f"invalid log option max-file={value}: a whole number, at least 1")
            out[key] = int(value)
        else:
            raise InvalidArgument(f"unknown log option {key!r}: HYPR knows max-size and max-file")
    if "max-file" in out and "max-size" not in out:
        raise InvalidArgument("log option max-file needs max-size")
    return out


def parse_size(value: str, what: str) -> int:
    """`10m`, `1g`, `512k`, `4096` (bytes) -> bytes."""
    text = value.strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    unit = units.get(text[-1:], 1)
    if text[-1:] in units:
        text = text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {value!r}: use a number with k, m or g") from None
    if number < 0:
        raise InvalidArgument(f"invalid {what} {value!r}: must not be negative")
    return int(number * unit)


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart(value: str) -> tuple[str, int]:
    """`no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N` -> (policy, max retries)."""
    name, _, count = (value or "no").partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {value!r}: use no, on-failure[:N], always or unless-stopped")
    if count:
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {value!r}: only on-failure takes a retry count")
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy {value!r}: the retry count must be a whole number")
    return name, int(count or 0)


def parse_signal(value: str | int) -> int:
    if isinstance(value, int) or str(value).isdigit():
        number = int(value)
        if not 1 <= number < signal.NSIG:
            raise InvalidArgument(f"invalid signal number {number}")
        return number
    name = str(value).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


async def _make_ext4(path: Path, size: int) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
    proc = await asyncio.create_subprocess_exec(
        "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-m", "0", str(tmp),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise Unavailable(f"mkfs.ext4 failed: {out.decode(errors='replace').strip()}")
    tmp.replace(path)


def _check_nic_budget(nic_count: int, spec: VmSpec) -> None:
    """More interfaces than the device plan allows is refused at create, not at boot."""
    try:
        acpi = probe.find_guest_artifacts().launch_options().get("acpi", False)
    except HyprError:
        return  # no kernel yet: the boot's device plan says it then
    slots = MICROVM_ACPI_SLOTS if acpi else MICROVM_SLOTS
    base = 3 + (0 if spec.auto_remove else 1)   # root, serial, rng, writable layer
    if base + nic_count > slots:
        raise InvalidArgument(f"too many networks: {nic_count} interfaces and {base} other devices exceed the "
                              f"{slots} device slots of a microVM")


def _familiar(ref: str) -> str:
    if ref.startswith("sha256:"):
        return ref
    from hypr_engine.oci.reference import parse_reference

    return parse_reference(ref).familiar()


async def _stat_or_none(client: AgentClient, path: str) -> dict | None:
    try:
        return await client.stat(path)
    except NotFound:
        return None


def _records_in(path: Path, offset: int) -> list[LogRecord]:
    records, _ = read_records(path, offset)
    return records


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _supervisor_env() -> dict[str, str]:
    env = dict(os.environ)
    # The supervisor imports hypr_engine from wherever this engine did.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
