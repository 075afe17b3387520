"""The gvproxy supervisor: gvproxy's parent for one data directory.

    python -m hypr_engine.net.gvproxy_supervisor DATA_DIR RUNTIME_DIR

Started detached by `gvproxy.ensure_running` (an engine, or a VM's supervisor that
needs its NIC), it forks once more so it is no HYPR process's child, and holds the
data dir's run lock for its whole life, so there is one per data dir. It:

- runs gvproxy with PR_SET_PDEATHSIG (never orphaned: PID 1 here does not reap) and
  `-ssh-port -1` (its default SSH forward would collide between data dirs);
- puts back the published ports of every active VM from hypr.db whenever it
  (re)starts gvproxy: forwards live in gvproxy's memory only;
- restarts gvproxy when it dies (backoff 0.1 s doubling to 5 s). The VMs attached to
  the dead one notice on their own (their supervisors watch the link) and are handled
  by their restart policies: a QEMU stream netdev cannot be re-attached;
- exits, taking gvproxy with it, once no active VM has been on a gvproxy network for
  HYPR_GVPROXY_IDLE_S seconds (default 30), so an idle data dir keeps no process.

Standard library only, like the VM supervisor.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from hypr_engine.net.gvproxy import GvproxyPaths, api_answers, expose, find_gvproxy, locked, unexpose
from hypr_engine.proc import ProcessRef

PR_SET_PDEATHSIG = 1
ACTIVE = ("starting", "running", "stopping", "restarting")
READY_TIMEOUT = 10.0
DEFAULT_IDLE_S = 30.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gvproxy-supervisor[{os.getpid()}]: {message}", file=sys.stderr,
          flush=True)


class GvproxySupervisor:
    def __init__(self, paths: GvproxyPaths) -> None:
        self.paths = paths
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.stopping = False
        self.idle_s = float(os.environ.get("HYPR_GVPROXY_IDLE_S") or DEFAULT_IDLE_S)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.paths.db, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def active_vms(self) -> int:
        try:
            conn = self.db()
            try:
                return conn.execute(
                    "SELECT COUNT(DISTINCT e.vm_id) FROM endpoints e JOIN networks n ON n.id = e.network_id "
                    f"JOIN vms v ON v.id = e.vm_id WHERE n.driver='gvproxy' AND v.state IN ({','.join('?' * len(ACTIVE))})",
                    ACTIVE).fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            log(f"database: {exc}")
            return 1  # unsure: stay

    def spawn(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.paths.state_file.unlink(missing_ok=True)   # not ready until this gvproxy is
        self.paths.api_socket.unlink(missing_ok=True)
        self.paths.qemu_socket.unlink(missing_ok=True)
        log_file = open(self.paths.log, "ab")
        self.proc = subprocess.Popen(
            # -listen-qemu only selects QEMU's framing for /connect (its default is vpnkit's);
            # nothing connects to that socket, so gvproxy does not end with "its" VM.
            [find_gvproxy(), "-listen", f"unix://{self.paths.api_socket}",
             "-listen-qemu", f"unix://{self.paths.qemu_socket}", "-ssh-port", "-1", "-mtu", "1500"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, close_fds=True,
            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL),
        )
        log_file.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while not api_answers(self.paths):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log(f"gvproxy did not come up (status {self.proc.poll()})")
                return
            time.sleep(0.002)
        self.generation += 1
        self.restore_forwards()
        self.write_state()   # last: users wait for it, so they find the recorded ports in place
        log(f"gvproxy {self.proc.pid} up (generation {self.generation})")

    def write_state(self) -> None:
        me = ProcessRef.of(os.getpid())
        gv = ProcessRef.of(self.proc.pid) if self.proc else None
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor": me.to_json() if me else None, "gvproxy": gv.to_json() if gv else None,
                                   "generation": self.generation, "api_socket": str(self.paths.api_socket)}))
        os.replace(tmp, self.paths.state_file)

    def published(self) -> list[sqlite3.Row]:
        """The forwards of every active VM on a gvproxy network, as hypr.db records them."""
        conn = self.db()
        try:
            return conn.execute(
                "SELECT p.host_ip, p.host_port, p.guest_port, p.protocol, e.ip FROM ports p "
                "JOIN endpoints e ON e.vm_id = p.vm_id JOIN networks n ON n.id = e.network_id AND n.driver='gvproxy' "
                f"JOIN vms v ON v.id = p.vm_id WHERE v.state IN ({','.join('?' * len(ACTIVE))})", ACTIVE).fetchall()
        finally:
            conn.close()

    def restore_forwards(self) -> None:
        """Every active VM's published ports, from hypr.db (after a gvproxy restart too)."""
        try:
            rows = self.published()
        except sqlite3.Error as exc:
            log(f"cannot read the published ports: {exc}")
            return
        for r in rows:
            try:
                expose(self.paths, r["host_ip"], r["host_port"], r["ip"], r["guest_port"], r["protocol"])
            except Exception as exc:  # one port that cannot come back must not keep the others out
                log(f"cannot restore {r['host_ip']}:{r['host_port']}/{r['protocol']}: {exc}")
        # A VM that ended meanwhile (its supervisor closed its forwards before these were
        # put back) must not keep one: what is no longer recorded goes again.
        try:
            still = {(r["host_ip"], r["host_port"], r["protocol"]) for r in self.published()}
        except sqlite3.Error:
            return
        for r in rows:
            if (r["host_ip"], r["host_port"], r["protocol"]) not in still:
                unexpose(self.paths, r["host_ip"], r["host_port"], r["protocol"])

    def wait_gvproxy(self, timeout: float) -> bool:
        """True when gvproxy exited within `timeout` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        try:
            fd = os.pidfd_open(self.proc.pid)
        except ProcessLookupError:
            return True
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        return bool(ready) and self.proc.poll() is not None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        backoff = 0.1
        idle_since: float | None = None
        self.spawn()
        while not self.stopping:
            if self.wait_gvproxy(0.5):
                status = self.proc.wait() if self.proc else None
                log(f"gvproxy exited (status {status}); restarting in {backoff:g} s")
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self.spawn()
                continue
            backoff = 0.1
            if not self.paths.db.exists():   # the data dir was removed under us: nothing can need us
                log(f"{self.paths.db} is gone: exiting")
                break
            if self.active_vms() == 0:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= self.idle_s and self.leave_if_idle():
                    log(f"no VM on the default network for {self.idle_s:g} s: exiting")
                    break
            else:
                idle_since = None
        self.shutdown()

    def leave_if_idle(self) -> bool:
        """Check once more with users held off (a VM is `starting` before anyone attaches),
        and if still idle take the sockets away before letting them in again."""
        with locked(self.paths.attach_lock, fcntl.LOCK_EX):
            if self.active_vms() != 0:
                return False
            self.paths.state_file.unlink(missing_ok=True)
            self.paths.api_socket.unlink(missing_ok=True)
            self.paths.qemu_socket.unlink(missing_ok=True)
            return True

    def shutdown(self) -> None:
        # The socket goes first: from here on nobody attaches to a gvproxy that is leaving.
        self.paths.api_socket.unlink(missing_ok=True)
        self.paths.qemu_socket.unlink(missing_ok=True)
        self.paths.state_file.unlink(missing_ok=True)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


LOG_KEEP_BYTES = 1 << 20


def main() -> None:
    paths = GvproxyPaths(Path(sys.argv[1]), Path(sys.argv[2]))
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(paths.run_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another one runs for this data dir
    try:
        if paths.log.stat().st_size > LOG_KEEP_BYTES:  # a new life starts a new log
            os.truncate(paths.log, 0)
    except OSError:
        pass
    GvproxySupervisor(paths).run()


if __name__ == "__main__":
    main()
