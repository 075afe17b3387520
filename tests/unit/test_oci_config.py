"""Image config, manifests, digests, compression sniffing and strict tar reading."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile

import pytest
import zstandard

from hypr_engine.errors import CorruptData, InvalidArgument
from hypr_engine.oci import writer as w
from hypr_engine.oci.compression import open_decompressed, read_all_checked
from hypr_engine.oci.descriptor import OCI_CONFIG, OCI_LAYER_GZIP, Descriptor
from hypr_engine.oci.digest import chain_id, sha256_digest, validate_digest
from hypr_engine.oci.image_config import ImageConfig
from hypr_engine.oci.manifest import build_manifest, choose_platform, parse_index, parse_manifest
from hypr_engine.oci.tarstream import StrictTarReader

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64

FULL = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-01-02T03:04:05Z",
    "author": "me",
    "config": {
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": ["PATH=/usr/bin:/bin", "NGINX_VERSION=1.25", "EMPTY="],
        "WorkingDir": "/srv",
        "User": "101:101",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}},
        "Volumes": {"/data": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"maintainer": "x"},
        "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/"], "Interval": 30000000000},
    },
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "history": [{"created_by": "a"}, {"created_by": "b", "empty_layer": True}],
}


def test_full_config() -> None:
    cfg = ImageConfig.from_json(json.dumps(FULL).encode())
    assert cfg.entrypoint == ["/docker-entrypoint.sh"]
    assert cfg.cmd == ["nginx", "-g", "daemon off;"]
    assert cfg.env_dict() == {"PATH": "/usr/bin:/bin", "NGINX_VERSION": "1.25", "EMPTY": ""}
    assert cfg.working_dir == "/srv" and cfg.user == "101:101"
    assert cfg.exposed_ports == ["53/udp", "80/tcp", "8080/tcp"]
    assert cfg.volumes == ["/data"]
    assert cfg.stop_signal == "SIGQUIT"
    assert cfg.labels == {"maintainer": "x"}
    assert cfg.healthcheck["Test"][0] == "CMD-SHELL"
    assert (cfg.os, cfg.architecture, cfg.created, cfg.author) == ("linux", "amd64", "2024-01-02T03:04:05Z", "me")
    assert cfg.diff_ids == [D1, D2]
    assert len(cfg.history) == 2
    assert cfg.raw == FULL


def test_minimal_config_defaults() -> None:
    cfg = ImageConfig.from_dict({"rootfs": {"type": "layers", "diff_ids": []}, "config": None})
    assert cfg.entrypoint is None and cfg.cmd is None and cfg.env == [] and cfg.labels == {}
    assert cfg.healthcheck is None and cfg.stop_signal is None and cfg.working_dir == ""
    # Docker's strslice accepts a bare string.
    assert ImageConfig.from_dict({"rootfs": {"type": "layers"}, "config": {"Cmd": "sh"}}).cmd == ["sh"]


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"config": {"Cmd": [1]}}, "Cmd must be a list of strings"),
        ({"config": {"Env": "A=1"}}, "Env must be a list of strings"),
        ({"config": {"Labels": {"a": 1}}}, "Labels must map strings"),
        ({"config": {"ExposedPorts": ["80"]}}, "ExposedPorts must be an object"),
        ({"config": {"ExposedPorts": {"80/xyz": {}}}}, "unknown protocol"),
        ({"config": {"ExposedPorts": {"99999": {}}}}, "invalid exposed port"),
        ({"config": {"WorkingDir": 5}}, "WorkingDir must be a string"),
        ({"config": {"Healthcheck": {"Test": "x"}}}, "Healthcheck.Test"),
        ({"config": []}, "'config' must be an object"),
        ({"rootfs": None}, "'rootfs' is missing"),
        ({"rootfs": {"type": "other"}}, "rootfs.type"),
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}, "diff_id"),
        ({"history": [1]}, "history"),
        ({"os": 3}, "os must be a string"),
    ],
)
def test_config_validation(patch: dict, message: str) -> None:
    obj = {**FULL, **patch}
    with pytest.raises(CorruptData) as info:
        ImageConfig.from_dict(obj)
    assert message in info.value.message


def test_config_not_json() -> None:
    for data in (b"{", b"\xff\xfe", b"[]", b"null"):
        with pytest.raises(CorruptData):
            ImageConfig.from_json(data)


def test_digests_and_chain_id() -> None:
    assert validate_digest(D1) == D1
    for bad in ("sha256:" + "1" * 63, "SHA256:" + "1" * 64, "sha256:", ":abc", "sha256:" + "g" * 64, 5):
        with pytest.raises(InvalidArgument):
            validate_digest(bad)  # type: ignore[arg-type]
    with pytest.raises(CorruptData):
        validate_digest("x", error=CorruptData)
    # OCI image-spec: ChainID(A) = DiffID(A); ChainID(A|B) = sha256(ChainID(A) + " " + DiffID(B)).
    assert chain_id([D1]) == D1
    assert chain_id([D1, D2]) == sha256_digest(f"{D1} {D2}".encode())
    assert chain_id([D1, D2, D1]) == sha256_digest(f"{chain_id([D1, D2])} {D1}".encode())


def test_manifest_roundtrip_and_validation() -> None:
    config = Descriptor(OCI_CONFIG, D1, 10)
    layer = Descriptor(OCI_LAYER_GZIP, D2, 20)
    m = parse_manifest(build_manifest(config, [layer]))
    assert m.config == config and m.layers == [layer]
    bad_cases = [
        (b"{}", "schemaVersion"),
        (json.dumps({"schemaVersion": 2, "config": {"mediaType": "x/cosign", "digest": D1, "size": 1}, "layers": []}).encode(), "not a container image config"),
        (json.dumps({"schemaVersion": 2, "config": config.to_dict(), "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": D2, "size": -1}]}).encode(), "size"),
        (json.dumps({"schemaVersion": 2, "config": config.to_dict(), "layers": [{"mediaType": "text/plain", "digest": D2, "size": 1}]}).encode(), "unsupported layer media type"),
        (json.dumps({"schemaVersion": 2, "config": {**config.to_dict(), "digest": "sha256:../x"}, "layers": []}).encode(), "digest"),
    ]
    for data, message in bad_cases:
        with pytest.raises(CorruptData) as info:
            parse_manifest(data)
        assert message in info.value.message


def test_platform_choice() -> None:
    index = parse_index(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": "m", "digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
                    {"mediaType": "m", "digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                    {"mediaType": "m", "digest": "sha256:" + "3" * 64, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
                ],
            }
        ).encode()
    )
    assert choose_platform(index.manifests, {"os": "linux", "architecture": "amd64"}).digest == D2
    assert choose_platform(index.manifests, {"os": "linux", "architecture": "s390x"}).digest == D1
    assert choose_platform(index.manifests[2:], {"os": "linux", "architecture": "amd64"}) is None


PAYLOAD = b"layer bytes " * 5000


@pytest.mark.parametrize(
    "name,compress",
    [
        (None, lambda d: d),
        ("gzip", lambda d: gzip.compress(d)),
        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
        ("xz", lambda d: lzma.compress(d)),
        ("bzip2", lambda d: bz2.compress(d)),
    ],
)
def test_compression_sniffing(name, compress) -> None:  # noqa: ANN001
    blob = compress(PAYLOAD)
    kind, stream = open_decompressed(io.BytesIO(blob))
    assert kind == name
    out = io.BytesIO()
    read_all_checked(stream, out.write)
    assert out.getvalue() == PAYLOAD
    if name is not None:
        kind, stream = open_decompressed(io.BytesIO(blob[: len(blob) - 7]))
        with pytest.raises(CorruptData):
            read_all_checked(stream)


def _tar(n: int = 3) -> bytes:
    return w.layer_tar([w.file(f"f{i}", b"x" * (700 * i)) for i in range(n)])


def _names(data: bytes) -> list[str]:
    return [m.name for m in StrictTarReader(io.BytesIO(data), "test tar")]


def test_strict_tar_reader() -> None:
    data = _tar()
    assert _names(data) == ["f0", "f1", "f2"]
    assert _names(b"") == []  # an empty stream is an empty archive (as in Go)
    # Ends exactly at a header boundary without the zero blocks: accepted, as Go does.
    third = data.index(b"f2\x00")
    assert _names(data[:third]) == ["f0", "f1"]
    for cut, message in [
        (third + 100, "truncated"),  # partial header
        (third + 512 + 10, "truncated"),  # inside the last member's data
        (600, "truncated"),
    ]:
        with pytest.raises(CorruptData) as info:
            _names(data[:cut])
        assert message in info.value.message
    garbled = bytearray(data)
    garbled[third: third + 512] = b"\x07" * 512  # a header with a bad checksum mid-archive
    with pytest.raises(CorruptData) as info:
        _names(bytes(garbled))
    assert "corrupt tar header" in info.value.message
    with pytest.raises(CorruptData):
        _names(b"not a tar at all" * 100)


def test_writer_entries_roundtrip() -> None:
    data = w.layer_tar(
        [
            w.directory("d", mode=0o700, uid=3, gid=4, mtime=123),
            w.file("d/f", "hi", mode=0o4755, xattrs={"user.a": b"\x00\xff"}),
            w.symlink("s", "../x"),
            w.hardlink("h", "d/f"),
            w.chardev("c", 1, 3),
            w.blockdev("b", 8, 0),
            w.fifo("p"),
            w.whiteout("gone"),
            w.opaque("d"),
        ]
    )
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    assert members["d"].isdir() and members["d"].mode == 0o700 and members["d"].uid == 3
    assert members["d/f"].mode == 0o4755
    assert members["d/f"].pax_headers["SCHILY.xattr.user.a"].encode("utf-8", "surrogateescape") == b"\x00\xff"
    assert members["s"].issym() and members["s"].linkname == "../x"
    assert members["h"].islnk() and members["h"].linkname == "d/f"
    assert members["c"].ischr() and (members["c"].devmajor, members["c"].devminor) == (1, 3)
    assert members["b"].isblk() and members["p"].isfifo()
    assert ".wh.gone" in members and "d/.wh..wh..opq" in members
