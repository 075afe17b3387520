"""Docker-grade lifecycle: stop/start keep data, restart policies without any HYPR
process alive, kill, wait, rename, stop signals and timeouts, stats."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

pytestmark = pytest.mark.vm


def _row(home, name: str) -> tuple:
    conn = sqlite3.connect(home.data / "hypr.db")
    try:
        return conn.execute("SELECT state, exit_code, restart_count FROM vms WHERE name=?", (name,)).fetchone()
    finally:
        conn.close()


def _wait_row(home, name: str, predicate, timeout: float = 120) -> tuple:
    deadline = time.monotonic() + timeout
    row = _row(home, name)
    while not predicate(row) and time.monotonic() < deadline:
        time.sleep(0.25)
        row = _row(home, name)
    return row


def test_stop_then_start_keeps_what_the_workload_wrote(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "keeper", busybox, "sh", "-c",
                  "[ -e /data/boots ] || mkdir -p /data; echo boot >> /data/boots; sleep 600", check=True)
    hypr_home.run("exec", "keeper", "sh", "-c", "echo precious > /root/note", check=True)
    hypr_home.run("stop", "-t", "5", "keeper", check=True)
    assert json.loads(hypr_home.out("inspect", "keeper"))[0]["State"]["Status"] == "exited"
    hypr_home.run("start", "keeper", check=True)
    assert hypr_home.out("exec", "keeper", "cat", "/root/note") == "precious\n"
    assert hypr_home.out("exec", "keeper", "cat", "/data/boots") == "boot\nboot\n"
    # starting a running VM is a no-op, as in Docker
    assert hypr_home.run("start", "keeper").returncode == 0


def test_restart_on_failure_restarts_exactly_twice_without_any_hypr_process(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "flaky", "--restart", "on-failure:2", busybox,
                  "sh", "-c", "echo attempt; exit 3", check=True)
    # No CLI or daemon runs from here on: only the supervisor enforces the policy.
    row = _wait_row(hypr_home, "flaky", lambda r: r and r[0] == "exited")
    assert row == ("exited", 3, 2)
    time.sleep(2)  # and it stays exited
    assert _row(hypr_home, "flaky") == ("exited", 3, 2)
    assert hypr_home.out("logs", "flaky") == "attempt\n" * 3


def test_unless_stopped_does_not_restart_after_a_user_stop(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "steady", "--restart", "unless-stopped", busybox, "sleep", "600", check=True)
    hypr_home.run("stop", "-t", "2", "steady", check=True)
    time.sleep(2)
    state, _, restarts = _row(hypr_home, "steady")
    assert (state, restarts) == ("exited", 0)


def test_always_restarts_a_workload_that_exits_by_itself(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "phoenix", "--restart", "always", busybox, "sh", "-c", "sleep 0.5; exit 0",
                  check=True)
    row = _wait_row(hypr_home, "phoenix", lambda r: r and r[2] >= 2)
    assert row[2] >= 2 and row[0] in ("starting", "running", "restarting")
    hypr_home.run("stop", "phoenix", check=True)
    assert _row(hypr_home, "phoenix")[0] == "exited"


def test_kill_delivers_a_signal_and_wait_returns_the_code(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "target", busybox, "sh", "-c",
                  "trap 'echo got USR1; exit 42' USR1; echo armed; while :; do sleep 0.1; done", check=True)
    _wait_log(hypr_home, "target", "armed")
    hypr_home.run("kill", "-s", "USR1", "target", check=True)
    assert hypr_home.out("wait", "target").strip() == "42"
    assert "got USR1" in hypr_home.out("logs", "target")


def test_kill_defaults_to_sigkill(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "doomed", "--restart", "always", busybox, "sleep", "600", check=True)
    hypr_home.run("kill", "doomed", check=True)
    assert hypr_home.out("wait", "doomed").strip() == "137"
    time.sleep(1)
    assert _row(hypr_home, "doomed")[0] == "exited"  # a killed VM is not restarted


def _wait_log(home, name: str, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in home.out("logs", name):
        assert time.monotonic() < deadline, f"{text!r} never appeared in the logs of {name}"
        time.sleep(0.2)


def test_stop_timeout_bounds_a_workload_that_ignores_sigterm(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "stubborn", "--stop-timeout", "2", busybox, "sh", "-c",
                  "trap '' TERM; echo ready; while :; do sleep 0.1; done", check=True)
    _wait_log(hypr_home, "stubborn", "ready")
    t0 = time.monotonic()
    hypr_home.run("stop", "stubborn", check=True)
    elapsed = time.monotonic() - t0
    assert 2 <= elapsed < 15
    assert json.loads(hypr_home.out("inspect", "stubborn"))[0]["State"]["ExitCode"] == 137


def test_stop_signal_is_used(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "quitter", "--stop-signal", "SIGUSR2", busybox, "sh", "-c",
                  "trap 'echo usr2; exit 12' USR2; echo ready; while :; do sleep 0.1; done", check=True)
    _wait_log(hypr_home, "quitter", "ready")
    hypr_home.run("stop", "quitter", check=True)
    assert json.loads(hypr_home.out("inspect", "quitter"))[0]["State"]["ExitCode"] == 12


def test_rename_and_filters(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "before", "-l", "tier=web", busybox, "sleep", "600", check=True)
    hypr_home.run("create", "--name", "other", "-l", "tier=db", busybox, "true", check=True)
    hypr_home.run("rename", "before", "after", check=True)
    assert hypr_home.out("ps", "--format", "{{.Names}}") == "after\n"
    assert hypr_home.out("ps", "-a", "--filter", "label=tier=db", "--format", "{{.Names}}") == "other\n"
    assert hypr_home.out("ps", "--filter", "status=created", "--format", "{{.Names}}") == "other\n"
    assert hypr_home.out("ps", "-a", "--filter", "name=aft", "-q") != ""
    clash = hypr_home.run("rename", "after", "other")
    assert clash.returncode == 125 and b"already in use" in clash.stderr


def test_stats_no_stream_shows_memory(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "measured", busybox, "sleep", "600", check=True)
    out = hypr_home.out("stats", "--no-stream", "measured")
    header, row = out.splitlines()
    assert header.split()[:3] == ["VM", "ID", "NAME"]
    usage = row.split("   ")
    mem = next(c for c in usage if "/" in c and "B" in c)
    assert not mem.strip().startswith("0B")


@pytest.mark.parametrize("args, message", [
    (["kill", "-s", "SIGNOPE", "x"], "invalid signal"),
    (["stop", "-t", "-1", "x"], "must not be negative"),
    (["run", "--restart", "sometimes", "IMG", "true"], "invalid restart policy"),
    (["run", "--restart", "always:3", "IMG", "true"], "only on-failure"),
    (["run", "--rm", "--restart", "always", "IMG", "true"], "conflicting options"),
])
def test_bad_lifecycle_input(hypr_home, busybox, args, message):
    args = [busybox if a == "IMG" else a for a in args]
    hypr_home.run("create", "--name", "x", busybox, "sleep", "1", check=True)
    proc = hypr_home.run(*args)
    assert proc.returncode == 125
    assert message in proc.stderr.decode()
    assert hypr_home.out("ps", "-aq").count("\n") == 1


def test_logs_rotate_at_max_size(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "chatty", "--log-opt", "max-size=8k", "--log-opt", "max-file=3", busybox,
                  "sh", "-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line-$i; "
                  "[ $((i % 100)) = 0 ] && sleep 0.2; done; echo finished", check=True)
    follower = hypr_home.popen("logs", "-f", "chatty", stdout=__import__("subprocess").PIPE)
    followed, _ = follower.communicate(timeout=180)
    assert hypr_home.out("wait", "chatty").strip() == "0"
    vm_dir = next((hypr_home.data / "vms").iterdir())
    logs = sorted(p.name for p in vm_dir.glob("log*"))
    assert logs == ["log", "log.1", "log.2"]
    for name in logs:
        assert (vm_dir / name).stat().st_size < 8192 + 64 * 1024  # capped (checked twice a second)
    lines = hypr_home.out("logs", "chatty").splitlines()
    assert lines[-1] == "finished"
    assert lines[0] != "line-1"  # the oldest part was dropped
    numbers = [int(l.split("-")[1]) for l in lines[:-1]]
    assert numbers == list(range(numbers[0], 3001))  # what is kept has no gap
    # the follower read across rotations (a record can fall in the copy-truncate window; see logfile.py)
    followed_lines = followed.decode().splitlines()
    assert followed_lines[-1] == "finished" and len(followed_lines) >= 2990
    bad = hypr_home.run("run", "--rm", "--log-opt", "max-bytes=1", busybox, "true")
    assert bad.returncode == 125 and b"unknown log option" in bad.stderr


def test_cp_round_trips_a_file_with_its_mode(hypr_home, busybox, tmp_path):
    hypr_home.run("run", "-d", "--name", "box", busybox, "sleep", "600", check=True)
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o750)
    hypr_home.run("cp", str(script), "box:/usr/local/bin/tool", check=False)  # parent may not exist
    hypr_home.run("exec", "box", "mkdir", "-p", "/opt/tools", check=True)
    hypr_home.run("cp", str(script), "box:/opt/tools", check=True)            # into a directory
    assert hypr_home.out("exec", "box", "/opt/tools/tool.sh") == "tool ran\n"
    assert hypr_home.out("exec", "box", "stat", "-c", "%a %u", "/opt/tools/tool.sh") == "750 0\n"
    hypr_home.run("exec", "box", "sh", "-c", "echo from the vm > /opt/tools/out.txt; chmod 640 /opt/tools/out.txt",
                  check=True)
    back = tmp_path / "back.txt"
    hypr_home.run("cp", "box:/opt/tools/out.txt", str(back), check=True)      # as a new name
    assert back.read_text() == "from the vm\n"
    assert back.stat().st_mode & 0o777 == 0o640
    tree = tmp_path / "tree"
    tree.mkdir()
    hypr_home.run("cp", "box:/opt/tools", str(tree), check=True)              # a directory, into a directory
    assert sorted(p.name for p in (tree / "tools").iterdir()) == ["out.txt", "tool.sh"]


def test_cp_errors(hypr_home, busybox, tmp_path):
    hypr_home.run("run", "-d", "--name", "box", busybox, "sleep", "600", check=True)
    (tmp_path / "f").write_text("x")
    for args, message in [
        ([str(tmp_path / "f"), "box:/no/such/dir/f"], "no such directory in the vm"),
        (["box:/no/such/file", str(tmp_path / "out")], "no such file or directory in the vm"),
        ([str(tmp_path / "missing"), "box:/tmp"], "no such file or directory on the host"),
        (["box:/etc/hostname", str(tmp_path / "no/dir/x")], "no such directory on the host"),
        ([str(tmp_path / "f"), str(tmp_path / "g")], "exactly one of SRC and DEST"),
    ]:
        proc = hypr_home.run("cp", *args)
        assert proc.returncode == 125, args
        assert message.lower() in proc.stderr.decode().lower(), (args, proc.stderr)
    assert not (tmp_path / "out").exists()
