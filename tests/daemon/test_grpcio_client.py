"""The API from another implementation: grpcio (C core) with code protoc generates from
proto/hypr/v1 at test time (plain python + grpc plugins), calling hyprd over its Unix
socket. Proves the .proto files are the contract, not betterproto2's view of them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import grpc
    from hypr.v1 import types_pb2, vms_pb2, vms_pb2_grpc, images_pb2, images_pb2_grpc
    from hypr.v1 import system_pb2, system_pb2_grpc, events_pb2, events_pb2_grpc

    socket, image, boot = sys.argv[2], sys.argv[3], sys.argv[4] == "boot"
    out = {}
    channel = grpc.insecure_channel("unix://" + socket)
    system = system_pb2_grpc.SystemStub(channel)
    vms = vms_pb2_grpc.VmsStub(channel)
    images = images_pb2_grpc.ImagesStub(channel)
    events = events_pb2_grpc.EventsStub(channel)

    hello = system.Hello(system_pb2.HelloRequest(api_major=1, client_version="grpcio"), timeout=10)
    out["hello"] = [hello.api_major, hello.daemon_version, hello.socket]
    try:
        system.Hello(system_pb2.HelloRequest(api_major=9), timeout=10)
    except grpc.RpcError as e:
        out["hello_v9"] = [e.code().name, e.details()]
    out["health"] = system_pb2.HealthResponse.Status.Name(system.Health(system_pb2.HealthRequest(), timeout=10).status)
    out["images"] = [list(i.tags) for i in images.List(images_pb2.ListImagesRequest(), timeout=10).images]
    image_info = images.Inspect(images_pb2.ImageRef(ref=image), timeout=10)
    out["image"] = [image_info.id.startswith("sha256:"), json.loads(image_info.config_json)["architecture"],
                    len(image_info.layers)]
    spec = types_pb2.VmSpec(image=image, name="grpcio-vm", cpus=1, memory_mb=256, restart="no",
                            command=types_pb2.StringList(items=["sleep", "600"]))
    steps = list(vms.Create(vms_pb2.CreateRequest(spec=spec, start=boot), timeout=600))
    out["stages"] = [s.stage for s in steps]
    vm = steps[-1].vm
    out["get_by_prefix"] = vms.Get(vms_pb2.VmRef(ref=vm.id[:10]), timeout=10).name
    out["state"] = vm.state
    try:
        vms.Get(vms_pb2.VmRef(ref="nosuch"), timeout=10)
    except grpc.RpcError as e:
        details = dict(e.trailing_metadata() or ()).get("grpc-status-details-bin")
        status = types_pb2.RpcStatus.FromString(details)
        info = types_pb2.ErrorInfo.FromString(status.details[0].value)
        out["not_found"] = [e.code().name, e.details(), status.details[0].type_url, info.kind, info.exit_code]
    if boot:
        def inputs():
            yield vms_pb2.ExecInput(start=vms_pb2.ExecStart(ref="grpcio-vm", options=vms_pb2.ExecOptions(
                argv=["sh", "-c", "cat; echo err >&2; exit 5"], interactive=True, rows=24, cols=80)))
            yield vms_pb2.ExecInput(stdin=b"hello from grpcio\\n")
            yield vms_pb2.ExecInput(close_stdin=True)
        got = {"stdout": b"", "stderr": b""}
        for msg in vms.Exec(inputs(), timeout=120):
            kind = msg.WhichOneof("output")
            if kind in ("stdout", "stderr"):
                got[kind] += getattr(msg, kind)
            elif kind == "exit_code":
                got["exit_code"] = msg.exit_code
            elif kind == "started":
                got["pid"] = msg.started
        out["exec"] = [got["stdout"].decode(), got["stderr"].decode(), got["exit_code"], got["pid"] > 1]
        out["processes"] = sorted(p.comm for p in vms.Processes(vms_pb2.VmRef(ref="grpcio-vm"), timeout=60).processes)
        logs = list(vms.Logs(vms_pb2.LogsRequest(ref="grpcio-vm"), timeout=30))
        out["logs_batches"] = len(logs)
        details = vms.Inspect(vms_pb2.VmRef(ref="grpcio-vm"), timeout=10)
        out["inspect"] = [details.vm.name, details.supervisor_pid > 1, details.vmm_pid > 1,
                          details.log_path.endswith("/log")]
        stream = vms.StreamStats(vms_pb2.StatsRequest(all=True, interval_ms=300), timeout=60)
        samples = [next(stream), next(stream)]
        stream.cancel()
        out["stream_stats"] = [[(s.name, s.error or "", s.mem_limit > 0) for s in r.stats] for r in samples]
    vms.Remove(vms_pb2.RemoveRequest(ref=vm.id, force=True), timeout=60)
    seen = [e.event.action for e in events.Watch(events_pb2.WatchEventsRequest(since_seq=0, follow=False),
                                                  timeout=30) if e.WhichOneof("kind") == "event" and e.event.type == "vm"]
    out["events"] = seen
    print(json.dumps(out))
''')


def _generate(tmp_path: Path) -> Path:
    out = tmp_path / "grpcio_gen"
    out.mkdir()
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto/hypr/v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    f"--python_out={out}", f"--grpc_python_out={out}", *protos], check=True, timeout=120)
    return out


def _run_client(hypr_home, hyprd, tmp_path, busybox, boot: bool) -> dict:
    gen = _generate(tmp_path)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    proc = subprocess.run([sys.executable, str(script), str(gen), str(hyprd.socket), busybox,
                           "boot" if boot else "noboot"], capture_output=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_grpcio_client_calls_hyprd(hypr_home, hyprd, busybox, tmp_path):
    out = _run_client(hypr_home, hyprd, tmp_path, busybox, boot=False)
    assert out["hello"] == [1, "0.1.0", str(hyprd.socket)]
    assert out["hello_v9"][0] == "FAILED_PRECONDITION" and "incompatible API versions" in out["hello_v9"][1]
    assert out["health"] == "SERVING"
    assert out["images"] == [["hypr/busybox:latest"]]
    assert out["image"][0] and out["image"][2] >= 1
    assert out["stages"] == ["image_resolved", "created"]
    assert out["state"] == "created" and out["get_by_prefix"] == "grpcio-vm"
    assert out["not_found"] == ["NOT_FOUND", "no such VM: nosuch", "type.googleapis.com/hypr.v1.ErrorInfo",
                                "NotFound", 125]
    assert out["events"][-3:] == ["create", "remove", "destroy"]


@pytest.mark.vm
def test_grpcio_client_boots_and_execs(hypr_home, hyprd, busybox, tmp_path):
    out = _run_client(hypr_home, hyprd, tmp_path, busybox, boot=True)
    assert out["stages"] == ["image_resolved", "created", "rootfs_ready", "started"]
    assert out["state"] == "running"
    assert out["exec"] == ["hello from grpcio\n", "err\n", 5, True]
    assert "sleep" in out["processes"]
    assert out["inspect"] == ["grpcio-vm", True, True, True]
    assert out["stream_stats"] == [[["grpcio-vm", "", True]]] * 2
    assert out["events"][-5:] == ["create", "start", "running", "remove", "destroy"]
