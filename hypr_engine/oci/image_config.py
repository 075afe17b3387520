"""The image configuration (OCI image-spec `config.md`, Docker's image JSON).

This is what `hypr run` takes its defaults from (entrypoint, cmd, env, workdir, user,
ports, stop signal, health check) and what ties a manifest's layers to their
uncompressed digests (`rootfs.diff_ids`). Configs arrive from registries and archives,
so every field is type-checked: a wrong type is CorruptData, never a crash later in
the boot path. The parsed JSON is kept whole in `raw` so nothing is lost on save/push.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypr_engine.errors import CorruptData
from hypr_engine.oci.digest import validate_digest


@dataclass
class ImageConfig:
    """Runtime defaults and layer identity of an image."""

    architecture: str = ""
    os: str = ""
    variant: str | None = None
    created: str | None = None
    author: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: dict[str, Any] | None = None
    diff_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> "ImageConfig":
        """Parse config JSON bytes; anything malformed is CorruptData."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptData(f"image config is not valid JSON: {exc}") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: object) -> "ImageConfig":
        """Validate and convert a decoded config object."""
        if not isinstance(obj, dict):
            raise CorruptData("image config must be a JSON object")
        cfg = obj.get("config")
        if cfg is None:
            cfg = {}
        elif not isinstance(cfg, dict):
            raise CorruptData("image config: 'config' must be an object")

        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict):
            raise CorruptData("image config: 'rootfs' is missing or not an object")
        if rootfs.get("type") != "layers":
            raise CorruptData(f"image config: rootfs.type must be 'layers', got {rootfs.get('type')!r}")
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise CorruptData("image config: rootfs.diff_ids must be a list")
        for d in diff_ids:
            validate_digest(d, error=CorruptData, what="image config diff_id")

        history = obj.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise CorruptData("image config: 'history' must be a list of objects")

        healthcheck = cfg.get("Healthcheck")
        if healthcheck is not None:
            if not isinstance(healthcheck, dict):
                raise CorruptData("image config: Healthcheck must be an object")
            test = healthcheck.get("Test")
            if test is not None and not _is_str_list(test):
                raise CorruptData("image config: Healthcheck.Test must be a list of strings")

        return cls(
            architecture=_opt_str(obj, "architecture") or "",
            os=_opt_str(obj, "os") or "",
            variant=_opt_str(obj, "variant"),
            created=_opt_str(obj, "created"),
            author=_opt_str(obj, "author"),
            entrypoint=_str_slice(cfg, "Entrypoint"),
            cmd=_str_slice(cfg, "Cmd"),
            env=_str_list(cfg, "Env"),
            working_dir=_opt_str(cfg, "WorkingDir") or "",
            user=_opt_str(cfg, "User") or "",
            exposed_ports=sorted(_normalise_port(p) for p in _str_set(cfg, "ExposedPorts")),
            volumes=sorted(_str_set(cfg, "Volumes")),
            stop_signal=_opt_str(cfg, "StopSignal") or None,
            labels=_str_map(cfg, "Labels"),
            healthcheck=healthcheck,
            diff_ids=list(diff_ids),
            history=list(history),
            raw=obj,
        )

    def env_dict(self) -> dict[str, str]:
        """Env as a mapping (later entries win, an entry without '=' maps to '')."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def to_json(self) -> bytes:
        """The original JSON object re-serialised (not byte-identical to the blob: use the store for that)."""
        return json.dumps(self.raw, separators=(",", ":")).encode()


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CorruptData(f"image config: {key} must be a string, got {type(value).__name__}")
    return value


def _str_slice(obj: dict[str, Any], key: str) -> list[str] | None:
    """Entrypoint/Cmd: null, a list of strings, or (Docker's strslice) a single string."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not _is_str_list(value):
        raise CorruptData(f"image config: {key} must be a list of strings")
    return list(value)


def _str_list(obj: dict[str, Any], key: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not _is_str_list(value):
        raise CorruptData(f"image config: {key} must be a list of strings")
    return list(value)


def _str_set(obj: dict[str, Any], key: str) -> list[str]:
    """ExposedPorts/Volumes: a JSON object used as a set (values are `{}`)."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise CorruptData(f"image config: {key} must be an object")
    return list(value)


def _str_map(obj: dict[str, Any], key: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CorruptData(f"image config: {key} must map strings to strings")
    return dict(value)


def _normalise_port(port: str) -> str:
    """`80` -> `80/tcp`; validates `port[/proto]` with proto tcp, udp or sctp."""
    number, _, proto = port.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise CorruptData(f"image config: exposed port {port!r} has unknown protocol {proto!r}")
    lo, dash, hi = number.partition("-")
    for part in (lo, hi) if dash else (lo,):
        if not (part.isascii() and part.isdigit()) or not 0 < int(part) < 65536:
            raise CorruptData(f"image config: invalid exposed port {port!r}")
    return f"{number}/{proto}"
