"""KILL with a pid (signal one process of the guest): the supervisor does not take it for
a stop, and VmService.signal_process checks its arguments before reaching a VM."""

from __future__ import annotations

import json
import signal

import pytest

from hypr_engine.agent import codec
from hypr_engine.errors import InvalidArgument
from hypr_engine.supervisor import Supervisor
from hypr_engine.vms import VmService


def _supervisor(tmp_path, **launch) -> Supervisor:
    (tmp_path / "launch.json").write_text(json.dumps({"vm_id": "x", "runtime_dir": str(tmp_path), **launch}))
    return Supervisor(tmp_path)


def test_only_the_four_byte_kill_can_stop_the_vm(tmp_path):
    sup = _supervisor(tmp_path, stop_signal=int(signal.SIGTERM))
    assert sup.is_final_signal(codec.u32(signal.SIGKILL))
    assert sup.is_final_signal(codec.u32(signal.SIGTERM))
    assert not sup.is_final_signal(codec.u32(signal.SIGUSR1))
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1):
        assert not sup.is_final_signal(codec.u32(sig) + codec.u32(1234))


@pytest.mark.parametrize("pid,sig", [(1, 15), (0, 15), (-3, 15), (2**31, 15), (True, 15), (50, "SIGNOPE"), (50, 0)])
async def test_signal_process_refuses_bad_arguments_before_looking_up_the_vm(pid, sig):
    service = VmService.__new__(VmService)  # no database: the checks come first
    with pytest.raises(InvalidArgument):
        await service.signal_process("any", pid, sig)
