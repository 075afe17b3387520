"""Small test images for the registry tests: busybox-static plus a marker layer.

Each image has two layers (busybox, then `/hypr-marker` with the given text and some
incompressible padding so layers are not tiny), written as an OCI layout with
hypr_engine/oci/writer.py in the compression asked for.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from hypr_engine.oci import writer as w
from hypr_engine.oci.busybox_image import busybox_config, busybox_entries
from hypr_engine.oci.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor
from hypr_engine.oci.digest import sha256_digest
from hypr_engine.oci.manifest import build_index

BUSYBOX = Path("/bin/busybox")


def marker_layer(text: str, padding: int = 256 << 10, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    return w.layer_tar([w.file("hypr-marker", text + "\n"),
                        w.file("padding.bin", rnd.randbytes(padding))])


def write_image(layout: Path, marker: str, *, compression: str = "gzip", arch: str | None = None,
                ref_name: str | None = None, padding: int = 256 << 10, seed: int = 1) -> w.WrittenImage:
    """One image into an OCI layout dir (appended to its index.json)."""
    config = busybox_config()
    config["config"]["Cmd"] = ["cat", "/hypr-marker"]
    if arch:
        config["architecture"] = arch
        config["os"] = "linux"
    layers = [w.layer_tar(busybox_entries(BUSYBOX)), marker_layer(marker, padding, seed)]
    return w.write_oci_layout(layout, layers, config, ref_name, compression)  # type: ignore[arg-type]


def write_multi_arch(layout: Path, ref_name: str = "multi") -> dict[str, w.WrittenImage]:
    """An OCI layout whose index.json names one image index (amd64 + arm64 entries)."""
    staging = layout.parent / (layout.name + ".parts")
    images = {
        "amd64": write_image(staging, "amd64 image", arch="amd64", seed=2),
        "arm64": write_image(staging, "arm64 image", arch="arm64", seed=3),
    }
    platforms = {"amd64": {"os": "linux", "architecture": "amd64"},
                 "arm64": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
    entries = [Descriptor(OCI_MANIFEST, img.manifest_digest, len(img.manifest), platform=platforms[arch])
               for arch, img in images.items()]
    index = build_index(entries)
    blobs = staging / "blobs" / "sha256"
    digest = sha256_digest(index)
    (blobs / digest.split(":")[1]).write_bytes(index)
    top = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": digest, "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}
    (staging / "index.json").write_text(json.dumps(top))
    os.replace(staging, layout)
    return images
