"""The engine's models to API messages and back; HYPR errors to gRPC statuses and back.

Both directions live here so that a round trip gives back an equal object: the gRPC
transport returns exactly what the embedded engine returns, and the CLI prints the same
either way (tests/daemon/test_convert.py round-trips every field of every model, so a
field added to models.py without its place in the .proto fails a test).

Dataclass fields map to message fields of the same name; a few need a rule of their
own (lists that may be absent, signals given as a name or a number, free-form
documents carried as JSON in `<name>_json`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import betterproto2
from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.exceptions import GRPCError

from hypr_engine import errors
from hypr_engine.api._pb.hypr import v1 as pb
from hypr_engine.events import Event, Gap
from hypr_engine.logfile import LogRecord
from hypr_engine.models import ExecOptions, ImageInfo, VmInfo, VmSpec

ERROR_INFO_TYPE_URL = "type.googleapis.com/hypr.v1.ErrorInfo"


# --- generic field mapping -------------------------------------------------------------

def _to_pb(obj: Any, message: Any, special: dict[str, Any]) -> Any:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in special:
            special[f.name](message, value)
        elif hasattr(message, f.name):
            setattr(message, f.name, value)
        elif hasattr(message, f.name + "_json"):
            setattr(message, f.name + "_json", None if value is None else json.dumps(value))
        else:
            raise TypeError(f"{type(obj).__name__}.{f.name} has no field in {type(message).__name__}: add it to the .proto")
    return message


def _from_pb(cls: type, message: Any, special: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in special:
            kwargs[f.name] = special[f.name](message)
        elif hasattr(message, f.name):
            value = getattr(message, f.name)
            kwargs[f.name] = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
        elif hasattr(message, f.name + "_json"):
            raw = getattr(message, f.name + "_json")
            kwargs[f.name] = None if raw is None else json.loads(raw) if raw else {}
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no field in {type(message).__name__}: add it to the .proto")
    return kwargs


def _set_list(name: str):
    def setter(message, value):
        setattr(message, name, None if value is None else pb.StringList(items=list(value)))
    return setter


def _get_list(name: str):
    def getter(message):
        value = getattr(message, name)
        return None if value is None else list(value.items)
    return getter


def _set_stop_signal(message, value) -> None:
    if isinstance(value, int):
        message.stop_signal_number = value
    elif value is not None:
        message.stop_signal_name = str(value)


def _get_stop_signal(message):
    field, value = betterproto2.which_one_of(message, "stop_signal")
    return value if field else None


_SPEC_TO = {"command": _set_list("command"), "entrypoint": _set_list("entrypoint"), "stop_signal": _set_stop_signal}
_SPEC_FROM = {"command": _get_list("command"), "entrypoint": _get_list("entrypoint"), "stop_signal": _get_stop_signal}


# --- models ------------------------------------------------------------------------------

def spec_to_pb(spec: VmSpec) -> pb.VmSpec:
    return _to_pb(spec, pb.VmSpec(), _SPEC_TO)


def spec_from_pb(message: pb.VmSpec | None) -> VmSpec:
    if message is None:
        raise errors.InvalidArgument("the request has no VM spec")
    return VmSpec(**_from_pb(VmSpec, message, _SPEC_FROM))


def vm_to_pb(vm: VmInfo) -> pb.Vm:
    return _to_pb(vm, pb.Vm(), {"spec": lambda m, v: setattr(m, "spec", spec_to_pb(v)),
                                "stages": lambda m, v: setattr(m, "stages", {k: float(t) for k, t in v.items()})})


def vm_from_pb(message: pb.Vm) -> VmInfo:
    return VmInfo(**_from_pb(VmInfo, message, {"spec": lambda m: spec_from_pb(m.spec or pb.VmSpec())}))


def image_to_pb(image: ImageInfo) -> pb.Image:
    def layers(m, value):
        m.layers = [pb.Layer(digest=l["digest"], media_type=l["media_type"], size=l["size"]) for l in value]
    return _to_pb(image, pb.Image(), {"layers": layers})


def image_from_pb(message: pb.Image) -> ImageInfo:
    def layers(m):
        return [{"digest": l.digest, "media_type": l.media_type, "size": l.size} for l in m.layers]
    return ImageInfo(**_from_pb(ImageInfo, message, {"layers": layers}))


def to_pb_fields(obj: Any, message: Any) -> Any:
    """A plain model (fields of the same names, nothing special) into its message."""
    return _to_pb(obj, message, {})


def from_pb_fields(cls: type, message: Any) -> Any:
    """The inverse of `to_pb_fields`."""
    return cls(**_from_pb(cls, message, {}))


def exec_options_to_pb(options: ExecOptions) -> pb.ExecOptions:
    return _to_pb(options, pb.ExecOptions(), {})


def exec_options_from_pb(message: pb.ExecOptions | None) -> ExecOptions:
    return ExecOptions(**_from_pb(ExecOptions, message or pb.ExecOptions(), {}))


def record_to_pb(rec: LogRecord) -> pb.LogRecord:
    return pb.LogRecord(time_ns=rec.time_ns, kind=rec.kind, payload=rec.payload)


def record_from_pb(message: pb.LogRecord) -> LogRecord:
    return LogRecord(message.time_ns, message.kind, message.payload)


PROCESS_KEYS = ("pid", "ppid", "uid", "state", "rss_kb", "cpu_ticks", "start_ticks", "threads", "comm", "cmdline")
_PROCESS_TEXT = {"state", "comm", "cmdline"}


def process_to_pb(p: dict[str, str]) -> pb.Process:
    message = pb.Process()
    for key in PROCESS_KEYS:
        value = p.get(key, "")
        if key in _PROCESS_TEXT:
            setattr(message, key, value)
        else:
            try:
                setattr(message, key, int(value))
            except ValueError:
                setattr(message, key, 0)
    return message


def process_from_pb(message: pb.Process) -> dict[str, str]:
    return {key: str(getattr(message, key)) for key in PROCESS_KEYS}


STATS_KEYS = ("cpu_percent", "mem_used", "mem_limit", "net_rx", "net_tx", "block_read", "block_write", "pids", "vmm_rss")


def stats_to_pb(s: dict[str, Any]) -> pb.VmStats:
    message = pb.VmStats(id=s["id"], name=s["name"])
    if s.get("error") is not None:
        message.error = str(s["error"])
        return message
    for key in STATS_KEYS:
        setattr(message, key, s.get(key, 0))
    return message


def stats_from_pb(message: pb.VmStats) -> dict[str, Any]:
    base: dict[str, Any] = {"id": message.id, "name": message.name}
    if message.error is not None:
        return base | {"error": message.error}
    return base | {key: getattr(message, key) for key in STATS_KEYS}


def event_to_pb(item: Event | Gap) -> pb.EventMessage:
    if isinstance(item, Gap):
        return pb.EventMessage(gap=pb.Gap(missed=item.missed, first_seq=item.first_seq, last_seq=item.last_seq))
    return pb.EventMessage(event=pb.Event(seq=item.seq, time=item.time, type=item.type, action=item.action,
                                          id=item.id, name=item.name, attributes=dict(item.attributes)))


def event_from_pb(message: pb.EventMessage) -> Event | Gap:
    field, value = betterproto2.which_one_of(message, "kind")
    if field == "gap":
        return Gap(value.missed, value.first_seq, value.last_seq)
    if field == "event":
        return Event(value.seq, value.time, value.type, value.action, value.id, value.name, dict(value.attributes))
    raise errors.ProtocolError("hyprd sent an empty event message")


# --- errors --------------------------------------------------------------------------------

def _error_classes() -> dict[str, type[errors.HyprError]]:
    out: dict[str, type[errors.HyprError]] = {}
    todo = [errors.HyprError]
    while todo:
        cls = todo.pop()
        out[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return out


# A status with no ErrorInfo (a foreign server, grpclib itself) becomes this class.
_BY_STATUS: dict[Status, type[errors.HyprError]] = {
    Status.INVALID_ARGUMENT: errors.InvalidArgument,
    Status.NOT_FOUND: errors.NotFound,
    Status.ALREADY_EXISTS: errors.AlreadyExists,
    Status.FAILED_PRECONDITION: errors.Conflict,
    Status.DATA_LOSS: errors.CorruptData,
    Status.UNAVAILABLE: errors.Unavailable,
    Status.DEADLINE_EXCEEDED: errors.Timeout,
    Status.INTERNAL: errors.ProtocolError,
}


def status_of(exc: errors.HyprError) -> Status:
    try:
        return Status[exc.grpc_status]
    except KeyError:
        return Status.UNKNOWN


def error_to_grpc(exc: errors.HyprError) -> GRPCError:
    info = pb.ErrorInfo(kind=type(exc).__name__, detail=exc.detail or "", exit_code=exc.exit_code)
    return GRPCError(status_of(exc), exc.message, info)


def error_from_grpc(exc: GRPCError) -> errors.HyprError:
    """The HyprError the server raised (same class, message, detail, exit code)."""
    message = exc.message or f"hyprd answered {exc.status.name}"
    info = exc.details if isinstance(exc.details, pb.ErrorInfo) else None
    cls = _error_classes().get(info.kind) if info and info.kind else None
    if cls is None:
        cls = _BY_STATUS.get(exc.status, errors.HyprError)
    err = cls(message, detail=(info.detail or None) if info else None)
    if info and info.exit_code and info.exit_code != err.exit_code:
        err.exit_code = info.exit_code  # a class this client does not know the code of
    return err


class StatusDetailsCodec(StatusDetailsCodecBase):
    """grpc-status-details-bin as a google.rpc.Status holding one hypr.v1.ErrorInfo."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        items = []
        if isinstance(details, pb.ErrorInfo):
            items.append(pb.AnyMessage(type_url=ERROR_INFO_TYPE_URL, value=bytes(details)))
        return bytes(pb.RpcStatus(code=status.value, message=message or "", details=items))

    def decode(self, status: Status, message: str | None, data: bytes) -> Any:
        try:
            rpc_status = pb.RpcStatus.parse(data)
        except Exception:
            return None
        for item in rpc_status.details:
            if item.type_url.endswith("/hypr.v1.ErrorInfo"):
                try:
                    return pb.ErrorInfo.parse(item.value)
                except Exception:
                    return None
        return None


# --- registries ------------------------------------------------------------------------------

def progress_to_pb(event) -> pb.TransferProgress:
    """A pull/push Progress (hypr_engine/oci/registry/progress.py) as a message."""
    return pb.TransferProgress(stage=event.stage, id=event.id, status=event.status, current=event.current,
                               total=event.total, message=event.message,
                               image=image_to_pb(event.image) if event.image is not None else None)


def progress_from_pb(message: pb.TransferProgress):
    from hypr_engine.oci.registry.progress import Progress

    return Progress(message.stage, message.id, message.status, message.current, message.total, message.message,
                    image_from_pb(message.image) if message.image is not None else None)
