"""The default network's gvproxy: where it lives, starting it, attaching VMs, forwarding ports.

One gvproxy per data directory, under its own small supervisor
(`gvproxy_supervisor.py`), detached like the VMs so it outlives every HYPR process.
VMs attach through its API socket: `POST /connect` hijacks the HTTP connection into a
QEMU stream netdev, whose descriptor QEMU gets as `-netdev stream,addr.type=fd`
(DESIGN.md, Networking). Published ports are gvproxy's
`/services/forwarder/expose` and `/unexpose`.

Standard library only: the per-VM supervisor imports this to obtain its NIC's
descriptor before each QEMU spawn.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hypr_engine.errors import Conflict, HyprError, Timeout, Unavailable

START_TIMEOUT = 15.0
API_TIMEOUT = 5.0


@dataclass(frozen=True)
class GvproxyPaths:
    """Everything of one data directory's gvproxy, derived from the two directories."""

    data_dir: Path
    runtime_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "net"

    @property
    def api_socket(self) -> Path:
        # In the data dir's own runtime dir: two data dirs never share a socket.
        return self.runtime_dir / "gvproxy.sock"

    @property
    def qemu_socket(self) -> Path:
        """Passed as -listen-qemu only for its framing (see gvproxy_supervisor); never connected."""
        return self.runtime_dir / "gvproxy-qemu.sock"

    @property
    def run_lock(self) -> Path:
        """Held by the gvproxy supervisor for its whole life: one per data dir."""
        return self.state_dir / "gvproxy.lock"

    @property
    def attach_lock(self) -> Path:
        """Shared while a user checks that gvproxy answers; exclusive while its supervisor decides
        to leave (so nobody is told "it answers" by a gvproxy that is about to go)."""
        return self.state_dir / "gvproxy.attach.lock"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "gvproxy.json"

    @property
    def log(self) -> Path:
        return self.state_dir / "gvproxy.log"

    @property
    def db(self) -> Path:
        return self.data_dir / "hypr.db"

    def to_json(self) -> dict:
        return {"data_dir": str(self.data_dir), "runtime_dir": str(self.runtime_dir)}

    @classmethod
    def from_json(cls, data: dict) -> GvproxyPaths:
        return cls(Path(data["data_dir"]), Path(data["runtime_dir"]))


def find_gvproxy() -> str:
    for candidate in (shutil.which("gvproxy"), "/usr/libexec/podman/gvproxy", "/usr/lib/podman/gvproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable("gvproxy is not installed (the default network needs it): run ./dev setup")


# --- the process --------------------------------------------------------------------------

def supervisor_running(paths: GvproxyPaths) -> bool:
    """Whether a gvproxy supervisor holds this data dir's run lock."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.run_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def api_answers(paths: GvproxyPaths) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(str(paths.api_socket))
        return True
    except OSError:
        return False
    finally:
        s.close()


def ensure_running(paths: GvproxyPaths, timeout: float = START_TIMEOUT) -> None:
    """Return once this data dir's gvproxy answers on its API socket, starting its
    supervisor if none runs. Safe to call from several processes at once: the
    supervisor's run lock lets one of them win; the others wait for its socket."""
    deadline = time.monotonic() + timeout
    last_spawn = float("-inf")
    while True:
        with locked(paths.attach_lock, fcntl.LOCK_SH):
            # ready: its supervisor wrote the state file after putting the recorded ports back
            if paths.state_file.exists() and api_answers(paths):
                return
        # A supervisor that lost the race for the run lock exits quietly; one that is
        # starting holds the lock before its gvproxy answers, so it is not spawned twice.
        if not supervisor_running(paths) and time.monotonic() - last_spawn > 2.0:
            _spawn_supervisor(paths)
            last_spawn = time.monotonic()
        if time.monotonic() > deadline:
            raise Timeout(f"gvproxy did not answer on {paths.api_socket} within {timeout:g} s",
                          detail=_tail(paths.log, 5))
        time.sleep(0.005)


@contextmanager
def locked(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _spawn_supervisor(paths: GvproxyPaths) -> None:
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    paths.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypr_engine.net.gvproxy_supervisor", str(paths.data_dir), str(paths.runtime_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/", env=env,
        )
    proc.wait(10)  # it forks at once and its first process exits: no zombie is left


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def state(paths: GvproxyPaths) -> dict:
    """What the supervisor wrote: its ProcessRef, gvproxy's, the generation (restarts)."""
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}


# --- attaching a VM --------------------------------------------------------------------------

def connect_vm(paths: GvproxyPaths, timeout: float = START_TIMEOUT) -> socket.socket:
    """A connected socket that gvproxy treats as one VM's link (QEMU's stream protocol):
    the caller hands its descriptor to QEMU. Starts gvproxy if needed."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(paths.api_socket))
            # gvproxy hijacks the connection without answering: from here on it is the link.
            s.sendall(b"POST /connect HTTP/1.1\r\nHost: gvproxy\r\nContent-Length: 0\r\n\r\n")
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise Unavailable(f"cannot attach to gvproxy at {paths.api_socket}",
                                  detail=_tail(paths.log, 5)) from None
            ensure_running(paths, max(0.5, deadline - time.monotonic()))


def open_link(source: dict) -> socket.socket:
    """NicPlan.fd_source's opener (the VM supervisor calls it before each QEMU spawn)."""
    return connect_vm(GvproxyPaths.from_json(source))


# --- the forwarder API ---------------------------------------------------------------------

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("gvproxy", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def api_call(paths: GvproxyPaths, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    conn = _UnixHTTPConnection(paths.api_socket, API_TIMEOUT)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as exc:
        raise Unavailable(f"gvproxy's API at {paths.api_socket} did not answer: {exc}") from None
    finally:
        conn.close()


def local_address(host_ip: str, host_port: int) -> str:
    return f"[{host_ip}]:{host_port}" if ":" in host_ip else f"{host_ip}:{host_port}"


def expose(paths: GvproxyPaths, host_ip: str, host_port: int, guest_ip: str, guest_port: int, protocol: str) -> None:
    mapping = {"local": local_address(host_ip, host_port), "remote": f"{guest_ip}:{guest_port}", "protocol": protocol}
    status, body = api_call(paths, "POST", "/services/forwarder/expose", mapping)
    if status != 200:
        text = body.decode(errors="replace").strip()
        if "address already in use" in text and mapping in forwards(paths):
            return  # already there, the same (the supervisor restored it meanwhile)
        if "address already in use" in text:
            raise Conflict(f"host port {host_ip}:{host_port}/{protocol} is already in use")
        raise HyprError(f"gvproxy refused to publish {host_ip}:{host_port}/{protocol}: {text}")


def unexpose(paths: GvproxyPaths, host_ip: str, host_port: int, protocol: str) -> bool:
    """Best effort; False when gvproxy had no such forward (or is not running)."""
    if not paths.api_socket.exists():
        return False
    try:
        status, _ = api_call(paths, "POST", "/services/forwarder/unexpose",
                             {"local": local_address(host_ip, host_port), "protocol": protocol})
    except HyprError:
        return False
    return status == 200


def forwards(paths: GvproxyPaths) -> list[dict]:
    status, body = api_call(paths, "GET", "/services/forwarder/all")
    return json.loads(body) if status == 200 and body.strip() else []
