"""Image manifests and indexes (OCI and Docker schema 2): parse, validate, build, pick a platform.

Archives, OCI layouts and registries all hand HYPR the same two JSON documents; this
module is the one place they are read, so a manifest from any source gets the same
checks (schema version, media types, descriptor digests and sizes).
"""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass
from typing import Any

from hypr_engine.errors import CorruptData
from hypr_engine.oci.descriptor import (
    CONFIG_TYPES,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)

MAX_MANIFEST_SIZE = 4 << 20  # distribution's limit for manifests


@dataclass(frozen=True)
class Manifest:
    """One platform's image: its config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] | None = None


@dataclass(frozen=True)
class Index:
    """A list of manifests (per platform, or per name in an OCI layout's index.json)."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] | None = None


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_SIZE:
        raise CorruptData(f"{what} is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptData(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptData(f"{what} must be a JSON object")
    if obj.get("schemaVersion") != 2:
        raise CorruptData(f"{what} has unsupported schemaVersion {obj.get('schemaVersion')!r} (need 2)")
    return obj


def _annotations(obj: dict[str, Any], what: str) -> dict[str, str] | None:
    ann = obj.get("annotations")
    if ann is None:
        return None
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise CorruptData(f"{what}: annotations must map strings to strings")
    return ann


def sniff_media_type(data: bytes) -> str | None:
    """Media type of a manifest/index blob from its own content (for descriptors that omit it)."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("mediaType"), str):
        return obj["mediaType"]
    if "manifests" in obj:
        return OCI_INDEX
    if "layers" in obj or "config" in obj:
        return OCI_MANIFEST
    return None


def parse_manifest(data: bytes, *, what: str = "manifest") -> Manifest:
    """Parse an image manifest; only container images (known config and layer types) are accepted."""
    obj = _load(data, what)
    media_type = obj.get("mediaType") or OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise CorruptData(f"{what} has media type {media_type!r}, not an image manifest")
    config = Descriptor.from_dict(obj.get("config"), what=f"{what} config")
    if config.media_type not in CONFIG_TYPES:
        raise CorruptData(f"{what}: config media type {config.media_type!r} is not a container image config")
    layers_raw = obj.get("layers")
    if not isinstance(layers_raw, list):
        raise CorruptData(f"{what}: 'layers' must be a list")
    layers = [Descriptor.from_dict(layer, what=f"{what} layer") for layer in layers_raw]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise CorruptData(f"{what}: unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, config, layers, _annotations(obj, what))


def parse_index(data: bytes, *, what: str = "index") -> Index:
    """Parse an OCI image index or a Docker manifest list."""
    obj = _load(data, what)
    media_type = obj.get("mediaType") or OCI_INDEX
    if media_type not in INDEX_TYPES:
        raise CorruptData(f"{what} has media type {media_type!r}, not an image index")
    raw = obj.get("manifests")
    if not isinstance(raw, list):
        raise CorruptData(f"{what}: 'manifests' must be a list")
    manifests = [Descriptor.from_dict(m, what=f"{what} entry") for m in raw]
    return Index(media_type, manifests, _annotations(obj, what))


def build_manifest(config: Descriptor, layers: list[Descriptor], *, docker: bool = False) -> bytes:
    """Serialise a manifest (OCI by default; Docker schema 2 when `docker`), compact and deterministic."""
    obj = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def build_index(manifests: list[Descriptor]) -> bytes:
    """Serialise an OCI index (as an OCI layout's index.json)."""
    obj = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    return json.dumps(obj, separators=(",", ":")).encode()


_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}


def host_platform() -> dict[str, str]:
    """The OCI platform of this machine (what the guest VMs run)."""
    machine = _platform.machine().lower()
    return {"os": "linux", "architecture": _ARCH_ALIASES.get(machine, machine)}


def is_image_platform(desc: Descriptor) -> bool:
    """False for index entries that are not runnable images (e.g. BuildKit attestations, `unknown/unknown`)."""
    if desc.annotations and desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return False
    plat = desc.platform or {}
    return plat.get("os") != "unknown" and plat.get("architecture") != "unknown"


def choose_platform(candidates: list[Descriptor], want: dict[str, str] | None = None) -> Descriptor | None:
    """The entry matching `want` (default: the host), else the first runnable one, else None."""
    want = want or host_platform()
    runnable = [d for d in candidates if is_image_platform(d)]
    for desc in runnable:
        plat = desc.platform or {}
        if plat.get("os", "linux") == want["os"] and plat.get("architecture") == want["architecture"]:
            return desc
    return runnable[0] if runnable else None
