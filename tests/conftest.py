"""Fixtures shared by every test group.

`hypr_home` gives each test its own data and runtime directories and, when the
test ends, removes every VM it left and fails the test if any process, socket
or mount of it remains (Firecracker's framework does the same after each test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hypr_engine.proc import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent
HYPR = [sys.executable, "-m", "hypr_tui.cli"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hypr"
BUSYBOX_IMAGE = CACHE / "images" / "busybox.tar"


@dataclass
class HyprHome:
    data: Path
    runtime: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120, check: bool = False, input: bytes | None = None,
            **kwargs) -> subprocess.CompletedProcess:
        """Run the `hypr` CLI as a user would, in this test's data directory."""
        proc = subprocess.run(
            [*HYPR, *args], env=self.env, capture_output=True, timeout=timeout, input=input, **kwargs
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"hypr {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')}"
                f"\nstderr: {proc.stderr.decode(errors='replace')}"
            )
        return proc

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*HYPR, *args], env=self.env, **kwargs)

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout, check=True).stdout.decode()


@pytest.fixture
def hypr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    runtime = Path(f"/tmp/hyprt-{uuid.uuid4().hex[:8]}")
    env = dict(os.environ)
    env.update(HYPR_DATA_DIR=str(data), HYPR_RUNTIME_DIR=str(runtime), PYTHONPATH=str(ROOT))
    # The default network's gvproxy leaves 1 s after its last VM (not 30 s), so the leak
    # check below sees it go rather than waiting it out.
    env["HYPR_GVPROXY_IDLE_S"] = "1"
    monkeypatch.setenv("HYPR_GVPROXY_IDLE_S", "1")   # for engines embedded in the test process too
    env.pop("HYPR_ACCEL", None)
    home = HyprHome(data, runtime, env)
    yield home
    # Teardown: remove what the test left, then insist nothing of it remains.
    if data.exists():
        ids = home.run("ps", "-aq", timeout=60).stdout.decode().split()
        if ids:
            home.run("rm", "-f", *ids, timeout=60)
    # Every helper of the data dir counts: supervisors and QEMU name the data dir, gvproxy and
    # its supervisor the runtime dir (their sockets); the sockets themselves are checked too.
    if _has_user_networks(data):
        home.run("network", "prune", timeout=60)
    deadline = time.monotonic() + 10
    leaked = processes_mentioning(str(data), str(runtime))
    while leaked and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked = processes_mentioning(str(data), str(runtime))
    sockets = [str(p) for p in runtime.rglob("*") if p.is_socket()] if runtime.exists() else []
    with open("/proc/mounts") as f:
        mounts = [line for line in f if str(data) in line or str(runtime) in line]
    for pid, _ in leaked:  # do not let one test's leak poison the next
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    shutil.rmtree(runtime, ignore_errors=True)
    assert not leaked, f"processes left behind: {leaked}"
    assert not (data / "net" / "gvproxy.json").exists(), "the gvproxy supervisor did not clean up its state"
    assert not sockets, f"sockets left behind: {sockets}"
    assert not mounts, f"mounts left behind: {mounts}"
    host_objects = _network_objects_of(data, remove=True)
    assert not host_objects, f"bridges, TAPs or nftables tables left behind: {host_objects}"


def _has_user_networks(data: Path) -> bool:
    import sqlite3

    if not (data / "hypr.db").exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{data / 'hypr.db'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT 1 FROM networks WHERE driver='bridge' LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False   # an older schema: no networks table


def _network_objects_of(data: Path, *, remove: bool = False) -> list[str]:
    """The host-global objects of user networks named after this data directory (tag-prefixed,
    so tests running in parallel never see each other's); `remove` deletes them after
    listing them, so one test's leak does not clutter the host."""
    from hypr_engine.net import bridge, nft

    tag = bridge.dir_tag(data)
    found = bridge.links_with_prefix(bridge.BRIDGE_PREFIX + tag) + bridge.links_with_prefix(bridge.TAP_PREFIX + tag)
    if os.geteuid() == 0 and nft.table_exists(nft.table_name(data)):
        found.append(f"nft table inet {nft.table_name(data)}")
    if remove:
        for name in found:
            if not name.startswith("nft "):
                bridge.delete_link(name)
        nft.remove(data)
    return found


@pytest.fixture
def busybox(hypr_home: HyprHome) -> str:
    """The bundled busybox image, loaded into this test's data directory."""
    if not BUSYBOX_IMAGE.exists():
        pytest.fail(f"{BUSYBOX_IMAGE} is missing: run ./dev setup")
    hypr_home.run("load", "-i", str(BUSYBOX_IMAGE), check=True)
    return "hypr/busybox"
