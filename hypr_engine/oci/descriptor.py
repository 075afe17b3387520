"""OCI descriptors and the media types HYPR understands.

A descriptor (media type, digest, size) is how manifests, indexes and the content
store point at blobs; parsing one from untrusted JSON validates all three so that
later code can use the digest as a file name and the size as a bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypr_engine.errors import CorruptData
from hypr_engine.oci.digest import validate_digest

OCI_LAYOUT_VERSION = "1.0.0"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

OCTET_STREAM = "application/octet-stream"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_ND,
        OCI_LAYER_ND_GZIP,
        OCI_LAYER_ND_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_FOREIGN_GZIP,
    }
)

# Layer media type for each compression we write (OCI names; Docker has no zstd type).
LAYER_TYPE_FOR_COMPRESSION = {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}

# Annotations naming an image inside an OCI layout.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to a blob: what it is, its digest and its exact size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = field(default=None, compare=False)
    platform: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, field order as the OCI spec writes it."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_dict(cls, obj: object, *, what: str = "descriptor") -> "Descriptor":
        """Parse and validate a descriptor from untrusted JSON (CorruptData on any problem)."""
        if not isinstance(obj, dict):
            raise CorruptData(f"invalid {what}: expected an object")
        media_type = obj.get("mediaType", "")
        if not isinstance(media_type, str):
            raise CorruptData(f"invalid {what}: mediaType must be a string")
        digest = validate_digest(obj.get("digest"), error=CorruptData, what=f"{what} digest")
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CorruptData(f"invalid {what} {digest}: size must be a non-negative integer")
        annotations = obj.get("annotations")
        if annotations is not None and (
            not isinstance(annotations, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        ):
            raise CorruptData(f"invalid {what} {digest}: annotations must map strings to strings")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise CorruptData(f"invalid {what} {digest}: platform must be an object")
        return cls(media_type, digest, size, annotations or None, platform)
