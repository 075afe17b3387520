"""Exec benchmark: `hypr exec VM true` and `AgentClient.exec(true)` against an echo on the agent channel.

    .venv/bin/python bench/exec.py [-n 20] [-k 10] [--traced 3] [--no-direct] [--no-pyc-cache]

One VM (`hypr run -d --rm hypr/busybox sleep 3600`). Measured, interleaved round by round:

- `hypr exec VM true`: a fresh CLI process, spawn to exit (exit code checked);
- in-process `AgentClient.exec(ExecRequest(["true"]))` + wait for EXIT, on one open
  connection to the supervisor's control socket;
- in-process PING/PONG on the same connection: the floor. A PING straight on QEMU's agent
  socket is not possible for this VM: QEMU's socket takes one client and the supervisor
  holds it, so the floor is the echo *through the supervisor* (client -> control.sock ->
  supervisor -> QEMU chardev -> virtio-serial -> kestrel and back);
- a fresh connection to control.sock + HELLO/HELLO_OK (what every CLI call pays first).

Extra (skip with --no-direct): a second VM under QEMU alone (same argv as the engine's,
bench/_common.py RawVm), whose agent socket this benchmark holds itself: PING and EXEC
straight on QEMU's socket, which prices the supervisor hop. It is another VM, not the
same one, booted from the same kernel, initrd recipe and rootfs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    HYPR_CMD,
    IMAGE,
    add_common_args,
    fmt_s,
    header,
    loadavg,
    print_breakdown,
    ratio_row,
    RawVm,
    Sandbox,
    stats_row,
    tail_lines,
    traced_cli,
)

from hypr_engine.agent import codec  # noqa: E402
from hypr_engine.agent.client import AgentClient  # noqa: E402
from hypr_engine.agent.codec import GUEST_TYPES, SYNC, FrameDecoder, Msg  # noqa: E402

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STEPS = [
    ("interpreter start (python + site)", "spawn", "interpreter_ready"),
    ("import hypr_tui.cli", "interpreter_ready", "cli_imported"),
    ("import engine modules", "cli_imported", "engine_imported"),
    ("argparse, event loop, engine open (DB, lock)", "engine_imported", "engine_open_end"),
    ("look up the VM", "engine_open_end", "agent_connect_start"),
    ("connect control.sock + HELLO", "agent_connect_start", "agent_connected"),
    ("image lookup, env composition", "agent_connected", "exec_sent"),
    ("EXEC until STARTED", "exec_sent", "exec_started"),
    ("STARTED until EXIT", "exec_started", "agent_close_start"),
    ("close agent connection", "agent_close_start", "agent_closed"),
    ("engine close", "command_done", "engine_closed"),
    ("asyncio.run teardown until atexit", "engine_closed", "atexit"),
    ("interpreter exit (and the tracer's dump)", "watcher_joined", "end"),
]


class DirectAgent:
    """The protocol spoken straight to QEMU's agent socket (PROTOCOL.md), no supervisor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(GUEST_TYPES, hunting=True)
        self.pending: list = []
        self.next = 1

    @classmethod
    async def connect(cls, path: Path, timeout: float = 60) -> "DirectAgent":
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"QEMU's agent socket {path} never answered") from None
                await asyncio.sleep(0.02)
        self = cls(reader, writer)
        while True:  # SYNC + HELLO, again every 1.5 s until HELLO_OK (as the supervisor does)
            writer.write(SYNC + codec.frame(Msg.HELLO, 0, codec.hello_payload()))
            try:
                fr = await asyncio.wait_for(self.recv(), 1.5)
            except asyncio.TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the guest never answered HELLO") from None
                continue
            if fr.channel == 0 and fr.type == Msg.HELLO_OK:
                return self

    async def recv(self):
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("QEMU closed the agent socket")
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def channel(self) -> int:
        self.next += 1
        return self.next

    async def ping(self, data: bytes = b"ping") -> bytes:
        ch = self.channel()
        self.writer.write(codec.frame(Msg.PING, ch, data))
        while True:
            fr = await self.recv()
            if fr.channel == ch and fr.type == Msg.PONG:
                return fr.payload

    async def exec_true(self) -> int:
        ch = self.channel()
        self.writer.write(codec.frame(Msg.EXEC, ch, codec.ExecRequest(argv=["true"], env=[PATH_ENV]).encode()))
        while True:
            fr = await self.recv()
            if fr.channel != ch:
                continue
            if fr.type == Msg.EXIT:
                return codec.parse_i32(fr.payload, "EXIT")
            if fr.type == Msg.ERROR:
                raise RuntimeError(f"direct exec failed: {codec.AgentError.parse(fr.payload).message}")

    def close(self) -> None:
        self.writer.close()


async def cli_exec(sb: Sandbox, vm: str) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *HYPR_CMD, "exec", vm, "true", env=sb.env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"hypr exec exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return elapsed


async def bench(sb: Sandbox, opts, raw: RawVm | None) -> None:
    vm_id = sb.hypr("run", "-d", "--rm", "--name", "hb-exec", IMAGE, "sleep", "3600").stdout.decode().split()[-1]
    control = sb.runtime / vm_id[:12] / "control.sock"
    t = time.perf_counter()
    client = await AgentClient.connect(control, timeout=60)
    print(f"setup: HYPR VM {vm_id[:12]} answered after {fmt_s(time.perf_counter() - t)} (from `run -d` returning)")
    direct = None
    if raw is not None:
        qlog = open(raw.dir / "qemu.log", "wb")
        sb.spawn_raw(raw.argv, stdout=qlog, stderr=qlog)
        qlog.close()
        t = time.perf_counter()
        try:
            direct = await DirectAgent.connect(raw.launch.agent_socket, timeout=60)
        except TimeoutError as exc:
            raise RuntimeError(f"raw VM: {exc}; console: {tail_lines(raw.dir / 'console.log', 3)}") from None
        print(f"setup: raw QEMU VM answered HELLO {fmt_s(time.perf_counter() - t)} after its spawn")

    env = [PATH_ENV]
    r: dict[str, list[float]] = {k: [] for k in
                                 ("cli", "exec", "ping", "connect", "direct_ping", "direct_exec")}
    try:
        # warm-up: one of each, untimed
        await cli_exec(sb, vm_id)
        await (await client.exec(codec.ExecRequest(argv=["true"], env=env))).wait()
        await client.ping()
        if direct:
            await direct.ping()
            await direct.exec_true()
        print(f"load average before: {loadavg()}")
        for i in range(opts.n):
            r["cli"].append(await cli_exec(sb, vm_id))
            t = time.perf_counter()
            fresh = await AgentClient.connect(control, timeout=30)
            r["connect"].append(time.perf_counter() - t)
            await fresh.close()
            for _ in range(opts.k):
                t = time.perf_counter()
                session = await client.exec(codec.ExecRequest(argv=["true"], env=env))
                code = await session.wait()
                r["exec"].append(time.perf_counter() - t)
                if code != 0:
                    raise RuntimeError(f"in-process exec of true exited {code}")
                t = time.perf_counter()
                await client.ping()
                r["ping"].append(time.perf_counter() - t)
                if direct:
                    t = time.perf_counter()
                    await direct.ping()
                    r["direct_ping"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    code = await direct.exec_true()
                    r["direct_exec"].append(time.perf_counter() - t)
                    if code != 0:
                        raise RuntimeError(f"direct exec of true exited {code}")
            print(f"  round {i + 1}/{opts.n}: cli {fmt_s(r['cli'][-1])}, in-process exec "
                  f"{fmt_s(r['exec'][-1])}, ping {fmt_s(r['ping'][-1])}", flush=True)
        print(f"load average after:  {loadavg()}")
    finally:
        await client.close()
        if direct:
            direct.close()

    print()
    print("results (round trips):")
    print(stats_row("hypr exec VM true (CLI process)", r["cli"]))
    print(stats_row("fresh connect + HELLO via control.sock", r["connect"]))
    print(stats_row("AgentClient.exec(true) + EXIT, in-process", r["exec"]))
    print(stats_row("PING via supervisor (floor)", r["ping"]))
    if direct:
        print(stats_row("PING straight on QEMU's socket (raw VM)", r["direct_ping"]))
        print(stats_row("EXEC true straight on QEMU's socket (raw VM)", r["direct_exec"]))
    print()
    if opts.traced:
        runs = []
        for _ in range(opts.traced):
            marks, proc = await asyncio.to_thread(traced_cli, sb, ["exec", vm_id, "true"], timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"traced hypr exec exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
            runs.append(marks)
        print(f"breakdown of `hypr exec VM true` (median of {len(runs)} instrumented runs, "
              "bench/_traced_cli.py; not the timed runs):")
        print_breakdown(runs, STEPS)
        print()
    print("ratios (medians):")
    print(ratio_row("hypr exec (CLI) / PING via supervisor", r["cli"], r["ping"]))
    print(ratio_row("AgentClient.exec / PING via supervisor", r["exec"], r["ping"]))
    print(ratio_row("hypr exec (CLI) / AgentClient.exec", r["cli"], r["exec"]))
    if direct:
        print(ratio_row("PING via supervisor / PING direct", r["ping"], r["direct_ping"]))
        print(ratio_row("AgentClient.exec / EXEC direct", r["exec"], r["direct_exec"]))
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="rounds; each runs one `hypr exec` (default 20)")
    ap.add_argument("-k", type=int, default=10, help="in-process execs and pings per round (default 10)")
    ap.add_argument("--no-direct", action="store_true", help="skip the second, raw QEMU VM")
    ap.add_argument("--traced", type=int, default=3, help="instrumented CLI runs for the breakdown (default 3)")
    add_common_args(ap)
    opts = ap.parse_args()
    with Sandbox("exec", pyc_cache=not opts.no_pyc_cache) as sb:
        header("exec: `hypr exec VM true` and AgentClient.exec(true) vs PING on the agent channel", sb)
        sb.load_busybox()
        sb.hypr("run", "--rm", IMAGE, "true")       # builds and caches the rootfs squashfs
        raw = None if opts.no_direct else RawVm(sb, ["sleep", "3600"], "direct")
        asyncio.run(bench(sb, opts, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
