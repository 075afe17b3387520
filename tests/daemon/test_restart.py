"""hyprd dies (SIGKILL) with VMs running and comes back: nothing of the VMs notices."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.daemon.conftest import assert_clean_error, wait_for

pytestmark = pytest.mark.vm

COUNTER = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done"


def _ticks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^tick (\d+)$", text, re.M)]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_sigkill_of_hyprd_leaves_vms_running_and_a_new_hyprd_adopts_them(hypr_home, busybox, hyprd):
    hypr_home.run("run", "-d", "--name", "ticker", busybox, "sh", "-c", COUNTER, check=True)
    hypr_home.run("run", "-d", "--name", "short", busybox, "sh", "-c", "sleep 4; echo finished; exit 7", check=True)
    sup = _supervisor_pid(hypr_home, "ticker")
    assert _ppid(sup) == hyprd.pid  # re-parented to hyprd, the subreaper, not to PID 1

    # A follower through hyprd notices the daemon vanishing, clearly.
    follower = hypr_home.popen("logs", "-f", "ticker", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: hypr_home.run("logs", "--tail", "1", "ticker").stdout.startswith(b"tick"), 60, what="ticks")
    time.sleep(0.5)
    hyprd.kill()
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 125, err
    assert b"lost the connection to hyprd" in err and b"Traceback" not in err
    before = _ticks(out.decode())
    assert before

    # While no daemon runs, the VMs run on; `short` ends and its supervisor records it.
    time.sleep(6)
    assert_clean_error(hypr_home.run("ps"), "nothing answers on it")
    hyprd.start()
    assert "1 VMs re-adopted" in hyprd.output()  # short's supervisor recorded its exit itself

    ps = hypr_home.out("ps", "-a", "--format", "{{.Names}} {{.State}} {{.ExitCode}}").splitlines()
    assert "ticker running None" in ps
    assert "short exited 7" in ps
    assert json.loads(hypr_home.out("inspect", "short"))[0]["State"]["ExitCode"] == 7
    assert hypr_home.out("exec", "ticker", "echo", "still here") == "still here\n"

    # `logs -f` carries on: everything written while hyprd was down is there, without a hole.
    follower = hypr_home.popen("logs", "-f", "ticker", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    follower.terminate()
    out, _ = follower.communicate(timeout=30)
    after = _ticks(out.decode())
    assert after[: len(before)] == before
    assert after == list(range(len(after))) and len(after) > len(before) + 20

    # The exit that happened while no daemon ran is an event.
    events = [json.loads(line) for line in
              hypr_home.out("events", "--since", "0", "--until", str(time.time() + 1), "--format", "json").splitlines()]
    die = [e for e in events if e["Name"] == "short" and e["Action"] == "die"]
    assert die and die[0]["Attributes"]["exit_code"] == "7"
    seqs = [e["Seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    hypr_home.run("rm", "-f", "ticker", "short", check=True)
    # What hyprd started and adopted it also reaps: no zombie child stays.
    wait_for(lambda: not _zombie_children(hyprd.pid), 10, what="zombies reaped")


def test_a_vm_whose_supervisor_died_while_no_daemon_ran_is_settled(hypr_home, busybox, hyprd):
    hypr_home.run("run", "-d", "--name", "orphan", busybox, "sleep", "600", check=True)
    sup = _supervisor_pid(hypr_home, "orphan")
    hyprd.kill()
    os.kill(sup, 9)  # the supervisor goes too (and QEMU with it: PDEATHSIG)
    wait_for(lambda: not _alive(sup), 10, what="the supervisor to die")
    hyprd.start()
    vm = json.loads(hypr_home.out("inspect", "orphan"))[0]
    assert vm["State"]["Status"] == "exited" and vm["State"]["ExitCode"] == 255
    assert "supervisor died" in vm["State"]["Error"]
    hypr_home.run("rm", "orphan", check=True)
    assert not (hypr_home.data / "vms").exists() or not list((hypr_home.data / "vms").iterdir())


def test_events_follow_a_vm_through_hyprd(hypr_home, busybox, hyprd):
    follower = hypr_home.popen("events", "--format", "json", "--filter", "type=vm",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        assert hypr_home.run("run", "--rm", "--name", "brief", busybox, "sh", "-c", "exit 4").returncode == 4
        lines: list[dict] = []

        def seen() -> bool:
            return any(e["Action"] == "destroy" for e in lines)
        deadline = time.monotonic() + 30
        while not seen() and time.monotonic() < deadline:
            line = follower.stdout.readline()
            if line:
                lines.append(json.loads(line))
    finally:
        follower.terminate()
        follower.wait(10)
    actions = [e["Action"] for e in lines if e["Name"] == "brief"]
    assert actions == ["create", "start", "running", "die", "destroy"]
    assert [e for e in lines if e["Action"] == "die"][0]["Attributes"]["exit_code"] == "4"


def _supervisor_pid(home, name: str) -> int:
    vm_id = json.loads(home.out("inspect", name))[0]["Id"]
    data = json.loads((home.data / "vms" / vm_id / "supervisor.json").read_text())
    return data["supervisor"]["pid"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _zombie_children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            out.append(int(name))
    return out
