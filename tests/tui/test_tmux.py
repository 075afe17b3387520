"""`hypr-tui` in a real terminal: tmux runs it, keys go in with send-keys, the screen comes
back with capture-pane. Covers what the in-process pilot cannot: the real driver, the
terminal's own key encoding, `vi` in the exec terminal, and a window resize."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]

LOOP = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"hypr-tui-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=20)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "hypr", check=False)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "hypr", *keys)

    def text(self, text: str) -> None:
        self("send-keys", "-t", "hypr", "-l", text)

    def wait_for(self, predicate, timeout: float = 60, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.2)

    def lines(self, screen: str) -> list[str]:
        return [line.strip() for line in screen.splitlines()]


@pytest.fixture
def tmux(hypr_home):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run ./dev setup")
    env = dict(hypr_home.env)
    env.pop("TMUX", None)
    t = Tmux(env)
    yield t
    t("kill-server", check=False)


def _command(hypr_home) -> str:
    script = Path(sys.executable).parent / "hypr-tui"
    program = str(script) if script.exists() else f"{sys.executable} -m hypr_tui.dashboard"
    return (f"env HYPR_DATA_DIR={hypr_home.data} HYPR_RUNTIME_DIR={hypr_home.runtime} "
            f"TERM=screen-256color {program}")


def test_dashboard_in_tmux_vi_and_resize(hypr_home, busybox, tmux):
    hypr_home.run("run", "-d", "--name", "tmux1", busybox, "sh", "-c", LOOP, check=True)
    tmux("new-session", "-d", "-s", "hypr", "-x", "100", "-y", "30", _command(hypr_home))

    screen = tmux.wait_for(lambda s: "tmux1" in s and "running" in s, 60, "the VM in the table")
    assert "NAME" in screen and "embedded" in screen

    # The logs, following.
    tmux.keys("l")
    tmux.wait_for(lambda s: "tick-2" in s and "following" in s, 60, "the log")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "NAME" in s and "IMAGE" in s, 20, "the main screen again")

    # A shell in the VM: the exec terminal.
    tmux.keys("e")
    tmux.wait_for(lambda s: "Run in a terminal" in s, 20, "the command prompt")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "ctrl+] leaves" in s and "/ #" in s, 60, "the shell's prompt")
    tmux.text("stty size")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "29 100" in tmux.lines(s), 30, "the guest terminal at 29x100")

    # vi, full screen in the guest: insert, escape, write, quit.
    tmux.text("vi /tmp/note.txt")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: sum(line == "~" for line in tmux.lines(s)) >= 5, 30, "vi's empty buffer")
    tmux.keys("i")
    tmux.text("hello from vi")
    tmux.keys("Escape")
    # As a person types: an Escape followed at once by ":" reads as alt+: to Textual's input parser.
    time.sleep(0.5)
    tmux.text(":wq")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: sum(line == "~" for line in tmux.lines(s)) < 2, 30, "vi to end")
    tmux.text("tr a-z A-Z < /tmp/note.txt")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "HELLO FROM VI" in tmux.lines(s), 30, "what vi wrote")

    # ctrl+c goes to the guest (it interrupts sleep), not to the dashboard.
    tmux.text("sleep 100")
    tmux.keys("Enter")
    time.sleep(0.5)
    tmux.keys("C-c")
    tmux.text("echo still-here")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "still-here" in tmux.lines(s), 30, "the shell after ctrl+c")

    # A resize reaches the guest.
    tmux("resize-window", "-t", "hypr", "-x", "120", "-y", "40")
    time.sleep(0.5)
    tmux.keys("C-l")
    tmux.text("stty size")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "39 120" in tmux.lines(s), 30, "the guest terminal at 39x120")

    # ctrl+] leaves; q quits and the dashboard exits cleanly.
    tmux.keys("C-]")
    tmux.wait_for(lambda s: "NAME" in s and "tmux1" in s, 20, "the main screen after leaving")
    tmux.keys("q")
    deadline = time.monotonic() + 20
    while "hypr" in tmux("list-sessions", "-F", "#{session_name}", check=False).split():
        if time.monotonic() > deadline:
            raise AssertionError(f"hypr-tui did not exit; the screen:\n{tmux.screen()}")
        time.sleep(0.2)


def test_a_small_terminal_gets_a_message(hypr_home, tmux):
    tmux("new-session", "-d", "-s", "hypr", "-x", "60", "-y", "20", _command(hypr_home))
    tmux.wait_for(lambda s: "needs at least 80x24" in s and "60x20" in s, 60, "the too-small message")
    tmux("resize-window", "-t", "hypr", "-x", "100", "-y", "30")
    tmux.wait_for(lambda s: "No VMs." in s, 30, "the empty state once big enough")
    tmux.keys("q")
