"""hyprd fixtures: real daemons on temporary sockets.

`hyprd` starts one daemon in the test's `hypr_home` (so the CLI of that home talks to
it) and stops it when the test ends, before hypr_home's own teardown removes the
test's VMs and checks that nothing is left. A test may kill and restart it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0


@dataclass
class Hyprd:
    home: object
    log: Path
    proc: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.home.runtime / "hyprd.sock"

    def start(self, *, env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
        assert self.proc is None or self.proc.poll() is not None, "hyprd already running"
        full_env = dict(self.home.env)
        full_env.update(self.extra_env)
        full_env.update(env or {})
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hypr_engine.daemon", "--foreground"],
                                     env=full_env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        if wait:
            self.wait_ready()
        return self.proc

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            text = self.output()[self._log_start:]
            if " ready: pid " in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"hyprd exited {self.proc.returncode} before it was ready:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"hyprd not ready within {READY_TIMEOUT} s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: the socket stays behind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@pytest.fixture
def hyprd_factory(hypr_home, tmp_path):
    """An unstarted Hyprd; whatever the test does, it is stopped at the end."""
    daemon = Hyprd(hypr_home, tmp_path / "hyprd.log")
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        try:
            daemon.stop(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)
    # A test that killed hyprd may leave its socket; hypr_home's teardown uses the CLI,
    # which would (rightly) refuse a socket nobody answers on.
    if daemon.socket.exists() or daemon.socket.is_symlink():
        daemon.socket.unlink()


@pytest.fixture
def hyprd(hyprd_factory):
    hyprd_factory.start()
    return hyprd_factory


def hypr_text(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 125) -> str:
    """Exit code as expected, one `hypr: error:` line that says why, no traceback."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and "Traceback" not in proc.stdout.decode(errors="replace"), err
    assert err.startswith("hypr: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
