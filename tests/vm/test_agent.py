"""The Python protocol codec against the real guest agent (kestrel in a real VM)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from hypr_engine.agent import codec
from hypr_engine.client import HyprClient
from hypr_engine.errors import CommandNotFound
from hypr_engine.models import VmSpec
from hypr_engine.paths import Layout

pytestmark = pytest.mark.vm


@pytest.fixture
async def agent(hypr_home, busybox):
    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    vm = await client.create_vm(VmSpec(image=busybox, command=["sleep", "600"], name="agent-test"))
    await client.start_vm(vm.id)
    engine_vms = client._engine.vms  # test-only: reach the agent client directly
    _, agent_client = await engine_vms.agent(vm.id)
    try:
        yield agent_client
    finally:
        await agent_client.close()
        await client.remove_vm(vm.id, force=True)
        await client.close()


async def test_hello_and_ping_round_trip_at_every_size(agent):
    assert agent.hello is not None
    assert agent.hello.version == codec.PROTOCOL_VERSION
    assert agent.hello.agent.startswith("kestrel")
    assert agent.hello.workload_pid > 1
    for size in (0, 1, 4095, 4096, 65535, codec.MAX_PAYLOAD):
        payload = os.urandom(size)
        assert await agent.ping(payload) == payload


async def test_binary_stdin_round_trips_through_cat(agent):
    data = os.urandom(3 * codec.INITIAL_WINDOW + 12345)  # several windows each way
    session = await agent.exec(codec.ExecRequest(argv=["cat"], stdin=True))
    received = bytearray()

    async def read() -> None:
        async for stream, chunk in session.output():
            assert stream == "stdout"
            received.extend(chunk)

    reader = asyncio.ensure_future(read())
    await session.write(data)
    session.close_stdin()
    await asyncio.wait_for(reader, 120)
    assert session.exit_code == 0
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_stalled_reader_does_not_stall_other_sessions(agent):
    # This session floods output that nobody reads: it runs out of credit and blocks, alone.
    flood = await agent.exec(codec.ExecRequest(argv=["sh", "-c", "yes flood | head -c 5000000; echo done"]))
    for n in range(5):
        quick = await agent.exec(codec.ExecRequest(argv=["sh", "-c", f"echo quick {n}"]))
        chunks = [c async for _, c in quick.output()]
        assert b"".join(chunks) == f"quick {n}\n".encode()
        assert quick.exit_code == 0
    # Now drain the flood: every byte arrives, then the exit.
    total = 0
    async for _, chunk in flood.output():
        total += len(chunk)
    assert total == 5000000 + len("done\n")
    assert flood.exit_code == 0


async def test_process_list_and_stats(agent):
    # The hello can come a moment before the workload has exec'd `sleep`: look again briefly.
    for _ in range(50):
        procs = await agent.ps()
        if any(p["cmdline"].startswith("sleep 600") for p in procs):
            break
        await asyncio.sleep(0.1)
    by_pid = {p["pid"]: p for p in procs}
    assert by_pid["1"]["comm"] == "init"  # kestrel
    assert any(p["cmdline"].startswith("sleep 600") for p in procs)
    stats = await agent.stats()
    assert stats["mem_total_kb"] > 100_000
    assert 0 < stats["mem_available_kb"] <= stats["mem_total_kb"]
    assert stats["procs"] >= 2


async def test_signals_resize_and_errors(agent):
    session = await agent.exec(codec.ExecRequest(argv=["sh", "-c", "trap 'echo got-usr1; exit 5' USR1; echo armed; while :; do sleep 0.1; done"]))
    outputs = session.output()
    stream, first = await outputs.__anext__()
    assert first == b"armed\n"
    session.signal(10)  # SIGUSR1
    rest = b"".join([c async for _, c in outputs])
    assert rest == b"got-usr1\n"
    assert session.exit_code == 5

    tty = await agent.exec(codec.ExecRequest(argv=["sh", "-c", "sleep 0.5; stty size"], tty=True, rows=10, cols=20))
    tty.resize(40, 132)
    out = b"".join([c async for _, c in tty.output()])
    assert b"40 132" in out

    with pytest.raises(CommandNotFound):
        await agent.exec(codec.ExecRequest(argv=["/no/such/binary"]))


async def test_kill_with_a_pid_signals_that_process_and_the_vm_goes_on(agent):
    from hypr_engine.errors import InvalidArgument, NotFound

    session = await agent.exec(codec.ExecRequest(argv=["sleep", "600"]))
    workload = agent.hello.workload_pid
    for _ in range(100):  # STARTED comes after fork(): the child may not have exec'd sleep yet
        procs = await agent.ps()
        pids = [int(p["pid"]) for p in procs if p["cmdline"].strip() == "sleep 600" and int(p["pid"]) != workload]
        if pids:
            break
        await asyncio.sleep(0.05)
    assert pids == [session.pid]
    await agent.kill(15, pids[0])  # SIGTERM to the exec'd sleep, not to the workload
    assert await asyncio.wait_for(session.wait(), 30) == 128 + 15
    procs = await agent.ps()
    assert str(workload) in {p["pid"] for p in procs}
    assert not any(p["pid"] == str(pids[0]) for p in procs)
    assert await agent.ping(b"still here") == b"still here"
    with pytest.raises(NotFound):
        await agent.kill(15, 999999)
    with pytest.raises(InvalidArgument):
        await agent.kill(15, 1)  # kestrel
    assert str(workload) in {p["pid"] for p in await agent.ps()}
