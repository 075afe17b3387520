"""`hypr run` and friends against real VMs under QEMU (TCG here).

Every test drives the `hypr` CLI as a user would, in its own data directory;
the `hypr_home` fixture fails the test if any process, socket or mount of it
is left afterwards.
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import tarfile
import time

import pytest

pytestmark = pytest.mark.vm


def test_run_rm_prints_output_and_leaves_nothing(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", busybox, "echo", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hi\n"
    assert hypr_home.out("ps", "-aq") == ""
    assert not list((hypr_home.data / "vms").iterdir())


def test_stdout_and_stderr_stay_apart(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; printf partial")
    assert proc.stdout == b"out\npartial"
    assert proc.stderr == b"err\n"


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_codes_propagate(hypr_home, busybox, code):
    proc = hypr_home.run("run", "--rm", busybox, "sh", "-c", f"exit {code}")
    assert proc.returncode == code


def test_missing_command_is_127(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", busybox, "no-such-program")
    assert proc.returncode == 127
    assert b"no-such-program" in proc.stderr


def test_missing_command_is_127_without_a_shell(hypr_home, tmp_path):
    """An image holding one static binary and nothing else: no /bin/sh to fall back on."""
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("static hello");return 0;}\n')
    binary = tmp_path / "hello"
    subprocess.run(["musl-gcc", "-static", "-Os", "-o", str(binary), str(src)], check=True)
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tar.gettarinfo(str(binary), "hello")
        info.mode, info.uid, info.gid = 0o755, 0, 0
        with open(binary, "rb") as f:
            tar.addfile(info, f)
    hypr_home.run("import", str(rootfs), "noshell:1", check=True)
    assert hypr_home.run("run", "--rm", "noshell:1", "/hello").stdout == b"static hello\n"
    proc = hypr_home.run("run", "--rm", "noshell:1", "/missing")
    assert proc.returncode == 127
    assert b"/missing" in proc.stderr


def test_not_executable_is_126(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", busybox, "/etc/passwd")
    assert proc.returncode == 126


def test_env_workdir_and_user_by_name(hypr_home, busybox):
    proc = hypr_home.run(
        "run", "--rm", "-e", "GREETING=hello there", "-w", "/home/app", "-u", "app", busybox,
        "sh", "-c", 'echo "$GREETING"; pwd; id; echo "$HOME"',
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "hello there"
    assert lines[1] == "/home/app"
    assert lines[2].startswith("uid=1000(app) gid=1000(app)")
    assert "50(staff)" in lines[2]


def test_image_config_applies_and_hostname(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "--hostname", "box1", busybox, "sh", "-c", "hostname; cat /etc/hostname; echo $PATH")
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["box1", "box1"]
    assert "/bin" in lines[2]


def test_detached_logs_follow_shows_lines_before_the_workload_ends(hypr_home, busybox):
    vm = hypr_home.out(
        "run", "-d", "--name", "waiter", busybox, "sh", "-c",
        "echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo released",
    ).strip()
    assert len(vm) == 64
    follower = hypr_home.popen("logs", "-f", "waiter", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = follower.stdout.readline()
        assert first == b"ready\n"
        # The workload is still blocked, so the VM is still running.
        status = json.loads(hypr_home.out("ps", "--format", "json"))
        assert status["Names"] == "waiter" and status["State"] == "running"
        hypr_home.run("exec", "waiter", "touch", "/tmp/go", check=True)
        rest, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.wait()
    assert rest == b"released\n"
    assert follower.returncode == 0
    assert hypr_home.out("wait", "waiter").strip() == "0"
    assert hypr_home.out("logs", "--tail", "1", "waiter") == "released\n"


def test_concurrent_execs_while_another_streams(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "busy", busybox, "sleep", "600", check=True)
    streamer = hypr_home.popen(
        "exec", "busy", "sh", "-c", "for i in $(seq 1 30); do echo tick $i; sleep 0.05; done",
        stdout=subprocess.PIPE,
    )
    first = streamer.stdout.readline()
    assert first == b"tick 1\n"
    quick = [hypr_home.popen("exec", "busy", "sh", "-c", f"echo quick {n}; exit {n}", stdout=subprocess.PIPE)
             for n in (4, 5)]
    outputs = [p.communicate(timeout=60)[0] for p in quick]
    # The quick ones finish while the streamer is still going.
    assert streamer.poll() is None
    assert outputs == [b"quick 4\n", b"quick 5\n"]
    assert [p.returncode for p in quick] == [4, 5]
    rest, _ = streamer.communicate(timeout=60)
    assert (first + rest).decode().splitlines() == [f"tick {i}" for i in range(1, 31)]
    hypr_home.run("rm", "-f", "busy", check=True)


def test_exec_it_through_a_pty(hypr_home, busybox):
    import fcntl
    import struct
    import termios

    hypr_home.run("run", "-d", "--name", "term", busybox, "sleep", "600", check=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = hypr_home.popen("exec", "-it", "term", "sh", stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    os.write(master, b"tty; stty size; echo marker-$((6*7)); exit 9\n")
    output = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            import select

            if select.select([master], [], [], 0.2)[0]:
                output += os.read(master, 4096)
        except OSError:
            break
    proc.wait(timeout=10)
    os.close(master)
    text = output.decode(errors="replace")
    assert "/dev/pts/" in text
    assert "33 101" in text
    assert "marker-42" in text
    assert proc.returncode == 9


def test_exec_stdin_is_passed_and_closed(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "cat", busybox, "sleep", "600", check=True)
    payload = os.urandom(300_000).hex().encode()  # 600 KB: several windows of flow control
    proc = hypr_home.run("exec", "-i", "cat", "sh", "-c", "cat | wc -c", input=payload)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(payload)


def test_exit_recorded_while_no_hypr_process_runs(hypr_home, busybox):
    vm = hypr_home.out("run", "-d", busybox, "sh", "-c", "sleep 2; exit 7").strip()
    # No HYPR process is alive now; only the VM's supervisor and QEMU.
    deadline = time.monotonic() + 90
    row = None
    while time.monotonic() < deadline:
        conn = sqlite3.connect(hypr_home.data / "hypr.db")
        row = conn.execute("SELECT state, exit_code FROM vms WHERE id=?", (vm,)).fetchone()
        conn.close()
        if row and row[0] == "exited":
            break
        time.sleep(0.5)
    assert row == ("exited", 7)
    assert "Exited (7)" in hypr_home.out("ps", "-a")


def test_rm_force_of_a_running_vm(hypr_home, busybox):
    vm = hypr_home.out("run", "-d", busybox, "sleep", "600").strip()
    assert hypr_home.out("ps", "-q") == vm[:12] + "\n"
    refused = hypr_home.run("rm", vm[:8])
    assert refused.returncode == 125 and b"stop it first" in refused.stderr
    hypr_home.run("rm", "-f", vm[:8], check=True)
    assert hypr_home.out("ps", "-aq") == ""
    assert not (hypr_home.data / "vms" / vm).exists()


def test_stop_then_stop_again_succeeds(hypr_home, busybox):
    hypr_home.run("run", "-d", "--name", "s1", busybox, "sleep", "600", check=True)
    t0 = time.monotonic()
    hypr_home.run("stop", "s1", check=True)
    assert time.monotonic() - t0 < 30
    vm = json.loads(hypr_home.out("inspect", "s1"))[0]
    assert vm["State"]["Status"] == "exited"
    assert vm["State"]["ExitCode"] == 143  # sleep ended by SIGTERM
    assert hypr_home.run("stop", "s1").returncode == 0
    stages = vm["BootStages"]
    for stage in ("image_resolved", "rootfs_ready", "vmm_spawned", "agent_hello"):
        assert stage in stages


def test_run_interactive_pipes_stdin(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "-i", busybox, "sh", "-c", "tr a-z A-Z; exit 4", input=b"quiet words\n")
    assert proc.stdout == b"QUIET WORDS\n"
    assert proc.returncode == 4


# --- bad input: clear one-line errors, nothing half-created ----------------------------

def _vm_count(home) -> int:
    return len(home.out("ps", "-aq").split())


def test_unknown_image(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "nosuchimage", "true")
    assert proc.returncode == 125
    assert proc.stderr.decode().count("\n") == 1 and "nosuchimage" in proc.stderr.decode()
    assert _vm_count(hypr_home) == 0


@pytest.mark.parametrize("args, message", [
    (["-e", "=oops"], "invalid environment variable"),
    (["--memory", "lots"], "--memory"),
    (["--memory", "1m"], "at least 64m"),
    (["-w", "relative"], "absolute"),
    (["--name", "bad/name"], "invalid VM name"),
])
def test_bad_run_flags(hypr_home, busybox, args, message):
    proc = hypr_home.run("run", "--rm", *args, busybox, "true")
    assert proc.returncode == 125
    assert message in proc.stderr.decode()
    assert _vm_count(hypr_home) == 0


def test_name_in_use(hypr_home, busybox):
    hypr_home.run("create", "--name", "taken", busybox, "true", check=True)
    proc = hypr_home.run("run", "--name", "taken", busybox, "true")
    assert proc.returncode == 125 and b"already in use" in proc.stderr
    assert _vm_count(hypr_home) == 1


def test_unknown_vm(hypr_home, busybox):
    for cmd in (["stop", "ghost"], ["rm", "ghost"], ["logs", "ghost"], ["exec", "ghost", "true"]):
        proc = hypr_home.run(*cmd)
        assert proc.returncode == 125
        assert b"no such VM: ghost" in proc.stderr
