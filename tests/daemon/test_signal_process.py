"""HyprClient.signal_process, embedded and through hyprd (the SignalProcess RPC): a chosen
process of the guest gets the signal; the VM and its workload go on."""

from __future__ import annotations

import asyncio

import pytest

from hypr_engine.client import HyprClient
from hypr_engine.errors import Conflict, InvalidArgument, NotFound
from hypr_engine.models import ExecOptions, VmSpec
from hypr_engine.paths import Layout

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("daemon", [False, True], ids=["embedded", "daemon"])
async def test_signal_process_ends_that_process_only(hypr_home, hyprd_factory, busybox, daemon):
    if daemon:
        hyprd_factory.start()
    client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
    assert client.mode == ("daemon" if daemon else "embedded")
    vm = await client.create_vm(VmSpec(image=busybox, command=["sleep", "3600"], name="sigproc"))
    try:
        await client.start_vm(vm.id)
        handle = await client.exec(vm.id, ExecOptions(argv=["sleep", "600"]))
        for _ in range(100):  # the exec'd child may not have exec'd sleep yet
            procs = await client.processes(vm.id)
            pids = [int(p["pid"]) for p in procs if p["cmdline"].strip() == "sleep 600"]
            if pids:
                break
            await asyncio.sleep(0.05)
        assert len(pids) == 1
        info = await client.signal_process(vm.id, pids[0], "SIGTERM")
        assert info.state == "running"
        assert await asyncio.wait_for(handle.wait(), 30) == 128 + 15
        await handle.close()
        assert (await client.get_vm(vm.id)).state == "running"
        assert any(p["cmdline"].strip() == "sleep 3600" for p in await client.processes(vm.id))
        with pytest.raises(NotFound):
            await client.signal_process(vm.id, 999999, 15)
        with pytest.raises(InvalidArgument):
            await client.signal_process(vm.id, 1, "SIGTERM")
        with pytest.raises(InvalidArgument):
            await client.signal_process(vm.id, pids[0], "SIGNOPE")
        assert (await client.get_vm(vm.id)).state == "running"
        await client.stop_vm(vm.id, timeout=5)
        with pytest.raises(Conflict):
            await client.signal_process(vm.id, pids[0], "SIGTERM")
    finally:
        await client.remove_vm(vm.id, force=True)
        await client.close()
