"""The CLI prints the same thing, and exits with the same code, whether it embeds the
engine or talks to hyprd: the same commands against the same VMs, both ways, compared."""

from __future__ import annotations

import re
import time

import pytest

from tests.daemon.conftest import wait_for

pytestmark = pytest.mark.vm

DURATION = re.compile(rb"\b(\d+) (second|minute|hour)s?\b|Less than a second")


def _normalize(text: bytes) -> bytes:
    """Ages and uptimes move on between the two runs, and table columns widen with them."""
    return re.sub(rb" {2,}", b"   ", DURATION.sub(b"<duration>", text))


def _top(text: bytes) -> bytes:
    """RSS changes from one sample to the next: blank that column."""
    out = []
    for line in text.splitlines():
        cells = re.split(rb"\s{3,}", line)
        if len(cells) >= 5 and cells[3] != b"RSS KB":
            cells[3] = b"<rss>"
        out.append(b" | ".join(cells))
    return b"\n".join(out)


def _stats(text: bytes) -> bytes:
    out = []
    for line in text.splitlines():
        cells = re.split(rb"\s{3,}", line)
        out.append(b" | ".join(cells[:2]) + b" | " + str(len(cells)).encode())
    return b"\n".join(out)


def _system_info(text: bytes) -> bytes:
    return b"\n".join(line for line in text.splitlines()
                      if not line.startswith((b"Engine:", b"Daemon:")))


COMMANDS: list[tuple[tuple[str, ...], bytes | None, object]] = [
    (("ps",), None, _normalize),
    (("ps", "-a"), None, _normalize),
    (("ps", "-a", "--format", "json"), None, _normalize),
    (("ps", "-a", "--format", "{{.Names}} {{.State}} {{.ExitCode}} {{.Command}}"), None, None),
    (("ps", "-aq"), None, None),
    (("ps", "-a", "--filter", "status=exited"), None, _normalize),
    (("images",), None, _normalize),
    (("images", "--format", "json"), None, None),
    (("images", "-q"), None, None),
    (("inspect", "web", "done"), None, None),
    (("inspect", "web", "nosuch"), None, None),
    (("logs", "web"), None, None),
    (("logs", "-t", "web"), None, None),
    (("logs", "--tail", "1", "web"), None, None),
    (("logs", "--since", "0", "--until", str(int(time.time()) + 3600), "done"), None, None),
    (("logs", "-f", "done"), None, None),
    (("logs", "-t", "done"), None, None),
    (("exec", "web", "sh", "-c", "echo out; echo err >&2; exit 4"), None, None),
    (("exec", "web", "no-such-program"), None, None),
    (("exec", "-i", "web", "cat"), b"typed input\nand more\n", None),
    (("exec", "-e", "FOO=bar", "-w", "/tmp", "web", "sh", "-c", "echo $FOO $(pwd)"), None, None),
    (("exec", "done", "true"), None, None),
    (("top", "web"), None, _top),
    (("stats", "--no-stream", "web"), None, _stats),
    (("wait", "done"), None, None),
    (("rm", "web"), None, None),
    (("stop", "nosuch"), None, None),
    (("run", "--rm", "hypr/busybox", "sh", "-c", "echo a; echo b >&2; exit 2"), None, None),
    (("run", "--rm", "hypr/busybox", "no-such-program"), None, None),
    (("system", "info"), None, _system_info),
]


def _collect(home) -> list[tuple[int, bytes, bytes]]:
    out = []
    for args, stdin, norm in COMMANDS:
        proc = home.run(*args, input=stdin, timeout=180)
        stdout, stderr = proc.stdout, proc.stderr
        if norm is not None:
            stdout, stderr = norm(stdout), norm(stderr)
        out.append((proc.returncode, stdout, stderr))
    return out


def _copies(home, tmp_path, tag: str) -> list:
    """`hypr cp` both ways and its errors; host paths differ per run, results must not."""
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    (src / "note.txt").write_text("copied in\n")
    out_dir = tmp_path / f"out-{tag}"
    out_dir.mkdir()
    results = []
    for args in (("cp", str(src / "note.txt"), "web:/tmp/note.txt"),
                 ("exec", "web", "cat", "/tmp/note.txt"),
                 ("cp", "web:/tmp/note.txt", str(out_dir)),
                 ("cp", "web:/no/such/file", str(out_dir)),
                 ("cp", str(tmp_path / "missing"), "web:/tmp/")):
        proc = home.run(*args, timeout=120)
        results.append((proc.returncode, proc.stdout,
                        proc.stderr.replace(str(tmp_path).encode(), b"<tmp>").replace(tag.encode(), b"<tag>")))
    results.append((out_dir / "note.txt").read_text())
    return results


def test_cli_output_is_identical_embedded_and_through_hyprd(hypr_home, busybox, hyprd_factory, tmp_path):
    hypr_home.run("run", "-d", "--name", "web", "-l", "tier=front", busybox, "sh", "-c",
                  "echo hello; echo oops >&2; exec sleep 100000", check=True)
    hypr_home.run("run", "-d", "--name", "done", busybox, "sh", "-c", "echo bye; printf partial; exit 3", check=True)
    assert hypr_home.out("wait", "done").strip() == "3"
    wait_for(lambda: hypr_home.run("logs", "web").stderr == b"oops\n", 60, what="web's output")
    copies = _copies(hypr_home, tmp_path, "embedded")
    embedded = _collect(hypr_home)
    hyprd_factory.start()
    assert _copies(hypr_home, tmp_path, "daemon") == copies
    assert copies[1] == (0, b"copied in\n", b"") and copies[-1] == "copied in\n"
    assert copies[3][0] == 125 and copies[4][0] == 125
    daemon = _collect(hypr_home)
    assert "Engine:         daemon" in hypr_home.out("system", "info")
    hyprd_factory.stop()
    for (args, _, _), a, b in zip(COMMANDS, embedded, daemon):
        assert a == b, f"hypr {' '.join(args)}:\nembedded: {a}\ndaemon:   {b}"
    # and the commands did what they should (so "identical" is not "identically broken")
    results = {args: r for (args, _, _), r in zip(COMMANDS, embedded)}
    assert results[("exec", "web", "sh", "-c", "echo out; echo err >&2; exit 4")] == (4, b"out\n", b"err\n")
    assert results[("exec", "web", "no-such-program")][0] == 127
    assert results[("exec", "-i", "web", "cat")] == (0, b"typed input\nand more\n", b"")
    assert results[("logs", "web")][1:] == (b"hello\n", b"oops\n")
    assert results[("logs", "-f", "done")] == (0, b"bye\npartial", b"")
    assert results[("wait", "done")] == (0, b"3\n", b"")
    assert results[("run", "--rm", "hypr/busybox", "sh", "-c", "echo a; echo b >&2; exit 2")] == (2, b"a\n", b"b\n")
    assert results[("run", "--rm", "hypr/busybox", "no-such-program")][0] == 127
    assert results[("rm", "web")][0] == 125
    assert results[("inspect", "web", "nosuch")][0] == 125
