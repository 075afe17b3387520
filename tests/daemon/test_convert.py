"""Models <-> API messages and errors <-> statuses, both ways, field by field."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from grpclib.const import Status

from hypr_engine import errors
from hypr_engine.api import convert, incompatibility
from hypr_engine.api._pb.hypr import v1 as pb
from hypr_engine.events import Event, Gap
from hypr_engine.models import ExecOptions, ImageInfo, VmInfo, VmSpec


def _sample(cls, salt: int = 1):
    """An instance with a non-default value in every field (so a dropped field shows)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        text = repr(t)
        if f.name == "spec":
            values[f.name] = _sample(VmSpec, salt)
        elif f.name == "stop_signal":
            values[f.name] = "SIGUSR1" if salt % 2 else 10
        elif "dict[str, float]" in text:
            values[f.name] = {"requested": 1.5 + salt, "agent_hello": 2.25}
        elif "dict[str, str]" in text:
            values[f.name] = {"k": f"v{salt}", "x": ""}
        elif "list[dict" in text:
            values[f.name] = [{"digest": "sha256:" + "a" * 64, "media_type": "application/x", "size": 12}]
        elif "dict" in text:
            values[f.name] = {"nested": {"a": [1, 2.5, None, "s"]}, "n": salt}
        elif "list[str]" in text:
            values[f.name] = [f"a{salt}", "b c", ""]
        elif t is bool or text.startswith("bool"):
            values[f.name] = True
        elif "int" in text and "str" not in text:
            values[f.name] = 7 + salt
        elif "float" in text:
            values[f.name] = 1795874756.123456 + salt
        else:
            values[f.name] = f"{f.name}-{salt}"
    return cls(**values)


@pytest.mark.parametrize("salt", [1, 2])
def test_every_field_of_every_model_survives_the_round_trip(salt):
    spec = _sample(VmSpec, salt)
    assert convert.spec_from_pb(pb.VmSpec.parse(bytes(convert.spec_to_pb(spec)))) == spec
    vm = _sample(VmInfo, salt)
    assert convert.vm_from_pb(pb.Vm.parse(bytes(convert.vm_to_pb(vm)))) == vm
    image = _sample(ImageInfo, salt)
    assert convert.image_from_pb(pb.Image.parse(bytes(convert.image_to_pb(image)))) == image
    options = _sample(ExecOptions, salt)
    assert convert.exec_options_from_pb(pb.ExecOptions.parse(bytes(convert.exec_options_to_pb(options)))) == options


def test_absent_and_empty_lists_stay_apart():
    for command in (None, [], ["x"]):
        spec = VmSpec(image="i", command=command, entrypoint=command)
        back = convert.spec_from_pb(pb.VmSpec.parse(bytes(convert.spec_to_pb(spec))))
        assert back.command == command and back.entrypoint == command
    assert convert.spec_from_pb(pb.VmSpec.parse(bytes(convert.spec_to_pb(VmSpec(image="i"))))) == VmSpec(image="i")


def test_vm_without_optional_fields():
    vm = VmInfo(id="a" * 64, name="n", image="i", image_id="sha256:b", command=["sh"], state="created",
                exit_code=None, error=None, created_at=1.0, started_at=None, finished_at=None, auto_remove=False,
                spec=VmSpec(image="i"))
    assert convert.vm_from_pb(pb.Vm.parse(bytes(convert.vm_to_pb(vm)))) == vm
    zero = dataclasses.replace(vm, exit_code=0, error="")
    assert convert.vm_from_pb(pb.Vm.parse(bytes(convert.vm_to_pb(zero)))) == zero


def test_processes_stats_and_events():
    proc = {"pid": "1", "ppid": "0", "uid": "0", "state": "S", "rss_kb": "192", "cpu_ticks": "5",
            "start_ticks": "9", "threads": "1", "comm": "init", "cmdline": "/init --x"}
    assert convert.process_from_pb(pb.Process.parse(bytes(convert.process_to_pb(proc)))) == proc
    sample = {"id": "a" * 64, "name": "n", "cpu_percent": 1.5, "mem_used": 1, "mem_limit": 2, "net_rx": 3,
              "net_tx": 4, "block_read": 5, "block_write": 6, "pids": 7, "vmm_rss": 8}
    assert convert.stats_from_pb(pb.VmStats.parse(bytes(convert.stats_to_pb(sample)))) == sample
    failed = {"id": "a" * 64, "name": "n", "error": "exited"}
    assert convert.stats_from_pb(pb.VmStats.parse(bytes(convert.stats_to_pb(failed)))) == failed
    ev = Event(3, 12.5, "vm", "die", "a" * 64, "web", {"exit_code": "0"})
    assert convert.event_from_pb(pb.EventMessage.parse(bytes(convert.event_to_pb(ev)))) == ev
    gap = Gap(5, 10, 14)
    assert convert.event_from_pb(pb.EventMessage.parse(bytes(convert.event_to_pb(gap)))) == gap


def _all_error_classes():
    out, todo = [], [errors.HyprError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_crosses_the_wire_intact(cls):
    exc = cls("something failed: x", detail="last console line\nanother")
    grpc_error = convert.error_to_grpc(exc)
    assert grpc_error.status == Status[cls.grpc_status]
    codec = convert.StatusDetailsCodec()
    wire = codec.encode(grpc_error.status, grpc_error.message, grpc_error.details)
    grpc_error.details = codec.decode(grpc_error.status, grpc_error.message, wire)
    back = convert.error_from_grpc(grpc_error)
    assert type(back) is cls
    assert (back.message, back.detail, back.exit_code) == (exc.message, exc.detail, exc.exit_code)


def test_a_status_without_details_maps_by_code():
    from grpclib.exceptions import GRPCError

    assert type(convert.error_from_grpc(GRPCError(Status.NOT_FOUND, "gone"))) is errors.NotFound
    err = convert.error_from_grpc(GRPCError(Status.RESOURCE_EXHAUSTED, None))
    assert type(err) is errors.HyprError and err.exit_code == 125 and "RESOURCE_EXHAUSTED" in err.message
    assert convert.StatusDetailsCodec().decode(Status.UNKNOWN, None, b"\xff\xff garbage") is None


def test_versions():
    assert incompatibility(1, 0, 1, 7) is None
    text = incompatibility(1, 2, 2, 0)
    assert "this hypr speaks hypr.v1 (API 1.2) and hyprd speaks hypr.v2 (API 2.0); hyprd is newer" in text
