"""`hypr load` / `hypr import`: docker-archive, oci-archive, OCI layouts, rootfs tarballs.

Images are crafted with the writer; where skopeo is installed, an independent producer
converts them too. Every refusal must leave the content store exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypr_engine.errors import CorruptData, HyprError, InvalidArgument, NotFound
from hypr_engine.oci import writer as w
from hypr_engine.oci.archive import import_rootfs, load_archive
from hypr_engine.oci.content import ContentStore
from hypr_engine.oci.descriptor import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
)
from hypr_engine.oci.manifest import build_index, host_platform, parse_manifest

L1 = w.layer_tar([w.directory("etc"), w.file("etc/os-release", "ID=test\n"), w.file("bin/tool", b"\x7fELF", mode=0o755)])
L2 = w.layer_tar([w.whiteout("etc/os-release"), w.file("app/run.sh", "#!/bin/sh\necho hi\n", mode=0o755)])
CONFIG = {
    "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["/app/run.sh"], "Env": ["PATH=/bin"], "WorkingDir": "/app", "ExposedPorts": {"8080/tcp": {}}},
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.blob_dir))


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    s = ContentStore(tmp_path / "content")
    s.ingest(b"a blob that was here before")
    return s


def check_image(store: ContentStore, img, *, tags: list[str]) -> None:  # noqa: ANN001
    assert img.repo_tags == tags
    assert img.diff_ids == [sha(L1), sha(L2)]
    assert img.config.cmd == ["/app/run.sh"] and img.config.working_dir == "/app"
    assert img.config.exposed_ports == ["8080/tcp"]
    # Everything needed for save/push is stored, and is what it claims to be.
    for digest in [img.manifest_digest, img.config_digest, *(layer.digest for layer in img.layers)]:
        assert store.has(digest)
        assert sha(store.read(digest)) == digest
    assert sha(img.manifest) == img.manifest_digest
    manifest = parse_manifest(store.read(img.manifest_digest))
    assert manifest.config.digest == img.config_digest
    assert manifest.layers == img.layers
    for layer in img.layers:
        assert store.size(layer.digest) == layer.size


def test_docker_archive_classic(store: ContentStore, tmp_path: Path) -> None:
    path = tmp_path / "img.tar"
    written = w.write_docker_archive(path, [L1, L2], CONFIG, ["myapp:1", "localhost:5000/team/myapp:latest"])
    [img] = load_archive(path, store)
    check_image(store, img, tags=["docker.io/library/myapp:1", "localhost:5000/team/myapp:latest"])
    assert img.config_digest == written.config_digest
    # Uncompressed layers: the blob digest is the diff_id.
    assert [(d.media_type, d.digest) for d in img.layers] == [(OCI_LAYER, sha(L1)), (OCI_LAYER, sha(L2))]
    assert img.id == img.config_digest and img.size == len(L1) + len(L2)
    # Loading again is idempotent.
    before = snapshot(store)
    [again] = load_archive(path, store)
    assert again.manifest_digest == img.manifest_digest and snapshot(store) == before


def test_docker_archive_with_oci_layout(store: ContentStore, tmp_path: Path) -> None:
    """Docker >= 25 writes manifest.json and an OCI layout in the same tar: keep its manifest digest."""
    path = tmp_path / "img.tar"
    written = w.write_docker_archive(path, [L1, L2], CONFIG, ["busybox:latest", "busybox:1"], oci_layout=True)
    [img] = load_archive(path, store)
    check_image(store, img, tags=["docker.io/library/busybox:latest", "docker.io/library/busybox:1"])
    assert img.manifest_digest == written.manifest_digest


def test_docker_archive_compressed_and_from_stream(store: ContentStore, tmp_path: Path) -> None:
    path = tmp_path / "img.tar"
    w.write_docker_archive(path, [L1, L2], CONFIG, ["a:1"])
    raw = path.read_bytes()
    for blob in (gzip.compress(raw), zstandard.ZstdCompressor().compress(raw), lzma.compress(raw)):
        [img] = load_archive(io.BytesIO(blob), store)  # e.g. `hypr load < img.tar.gz`
        check_image(store, img, tags=["docker.io/library/a:1"])


def test_multi_image_archive_shares_layers(store: ContentStore, tmp_path: Path) -> None:
    path = tmp_path / "two.tar"
    w.write_docker_archive_images(
        path,
        [w.ImageSpec([L1, L2], CONFIG, ["one:1"]), w.ImageSpec([L1], {"config": {"Cmd": ["sh"]}}, ["two:1", "two:2"])],
    )
    images = load_archive(path, store)
    assert [i.repo_tags for i in images] == [["docker.io/library/one:1"], ["docker.io/library/two:1", "docker.io/library/two:2"]]
    assert images[0].layers[0] == images[1].layers[0]


def test_legacy_docker_archive_with_symlinked_layer(store: ContentStore, tmp_path: Path) -> None:
    """Old `docker save` dedups identical layers of different v1 ids with a symlink."""
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(L1), sha(L1)]}, "config": {}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["sym:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode()
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in [("aaa/layer.tar", L1), ("c.json", cfg), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
        tf.addfile(link)
    [img] = load_archive(path, store)
    assert [d.digest for d in img.layers] == [sha(L1), sha(L1)]


@pytest.mark.parametrize("compression,media_type", [("gzip", OCI_LAYER_GZIP), ("zstd", OCI_LAYER_ZSTD), ("none", OCI_LAYER)])
def test_oci_archive_and_layout(store: ContentStore, tmp_path: Path, compression: str, media_type: str) -> None:
    layout = tmp_path / "layout"
    written = w.write_oci_layout(layout, [L1, L2], CONFIG, "example.com/app:2", compression, image_name=None)
    [img] = load_archive(layout, store)
    check_image(store, img, tags=["example.com/app:2"])
    assert img.manifest_digest == written.manifest_digest
    assert [d.media_type for d in img.layers] == [media_type, media_type]

    archive = tmp_path / "img.oci.tar"
    w.write_oci_archive(archive, [L1, L2], CONFIG, "latest", compression, image_name="docker.io/library/web:3")
    [img2] = load_archive(archive, store)
    assert img2.repo_tags == ["docker.io/library/web:3"]  # io.containerd.image.name wins over a bare tag


def test_oci_layout_bare_tag_is_untagged_and_same_manifest_merges(store: ContentStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    w.write_oci_layout(layout, [L1, L2], CONFIG, "latest")
    w.write_oci_layout(layout, [L1, L2], CONFIG, "busybox:1.36")  # same image, second name
    [img] = load_archive(layout, store)
    assert img.repo_tags == ["docker.io/library/busybox:1.36"]


def test_multi_platform_index_picks_host(store: ContentStore, tmp_path: Path) -> None:
    """An index whose other platforms' blobs are absent (docker save of one platform)."""
    layout = tmp_path / "layout"
    written = w.write_oci_layout(layout, [L1, L2], CONFIG)
    blobs = layout / "blobs" / "sha256"
    platform_manifest = Descriptor(OCI_MANIFEST, written.manifest_digest, len(written.manifest), platform=host_platform())
    missing = Descriptor(OCI_MANIFEST, "sha256:" + "e" * 64, 100, platform={"os": "linux", "architecture": "riscv64"})
    attestation = Descriptor(
        OCI_MANIFEST, "sha256:" + "f" * 64, 100, {"vnd.docker.reference.type": "attestation-manifest"},
        {"os": "unknown", "architecture": "unknown"},
    )
    nested = build_index([missing, platform_manifest, attestation])
    (blobs / sha(nested)[7:]).write_bytes(nested)
    top = Descriptor(OCI_INDEX, sha(nested), len(nested), {"io.containerd.image.name": "docker.io/library/multi:1"})
    (layout / "index.json").write_bytes(build_index([top]))
    [img] = load_archive(layout, store)
    assert img.manifest_digest == written.manifest_digest
    assert img.repo_tags == ["docker.io/library/multi:1"]


def test_artifacts_in_index_are_skipped(store: ContentStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    w.write_oci_layout(layout, [L1, L2], CONFIG, "x/app:1")
    blobs = layout / "blobs" / "sha256"
    cfg = b"{}"
    (blobs / sha(cfg)[7:]).write_bytes(cfg)
    sig = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": sha(cfg), "size": 2}, "layers": []}
    ).encode()
    (blobs / sha(sig)[7:]).write_bytes(sig)
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": sha(sig), "size": len(sig)})
    (layout / "index.json").write_text(json.dumps(index))
    [img] = load_archive(layout, store)
    assert img.repo_tags == ["docker.io/x/app:1"]
    assert not store.has(sha(sig))


# ----------------------------------------------------------------------------- refusals


def _oci_archive_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.oci.tar"
    w.write_oci_archive(path, [L1, L2], CONFIG, "a/b:1", "gzip")
    return path.read_bytes()


def _docker_archive_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.tar"
    w.write_docker_archive(path, [L1, L2], CONFIG, ["a:1"])
    return path.read_bytes()


def _rewrite(data: bytes, edit) -> bytes:  # noqa: ANN001
    """Copy a tar, letting `edit(name, bytes)` return new bytes (or None to drop the member)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            content = src.extractfile(m).read() if m.isreg() else None
            if content is not None:
                content = edit(m.name, content)
                if content is None:
                    continue
                m.size = len(content)
            dst.addfile(m, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _flip_last_byte_of_layer(name: str, content: bytes) -> bytes:
    if name.endswith("layer.tar") or (name.startswith("blobs/") and content[:2] == b"\x1f\x8b"):
        return content[:100] + bytes([content[100] ^ 1]) + content[101:]
    return content


def _largest_member(data: bytes) -> tarfile.TarInfo:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return max(tf.getmembers(), key=lambda m: m.size)


def _cut_inside_largest_member(data: bytes) -> bytes:
    m = _largest_member(data)
    return data[: m.offset_data + m.size // 2]


def _cut_before_largest_member(data: bytes) -> bytes:
    return data[: _largest_member(data).offset]


def _drop_a_layer(name: str, content: bytes) -> bytes:
    if name != "manifest.json":
        return content
    entries = json.loads(content)
    entries[0]["Layers"] = entries[0]["Layers"][:1]
    return json.dumps(entries).encode()


REFUSALS = [
    ("oci truncated in a blob", _oci_archive_bytes, lambda d: _cut_inside_largest_member(d), "truncated"),
    ("oci truncated at a member", _oci_archive_bytes, lambda d: _cut_before_largest_member(d), "missing from the archive"),
    ("oci truncated in a header", _oci_archive_bytes, lambda d: d[: 512 * 3 + 100], "truncated"),
    ("oci blob corrupt", _oci_archive_bytes, lambda d: _rewrite(d, _flip_last_byte_of_layer), "digest mismatch"),
    ("oci blob missing", _oci_archive_bytes, lambda d: _rewrite(d, lambda n, c: None if c[:2] == b"\x1f\x8b" else c), "missing from the archive"),
    ("oci index garbage", _oci_archive_bytes, lambda d: _rewrite(d, lambda n, c: b"{nope" if n == "index.json" else c), "not valid JSON"),
    ("docker layer corrupt", _docker_archive_bytes, lambda d: _rewrite(d, _flip_last_byte_of_layer), "config says"),
    ("docker layer missing", _docker_archive_bytes, lambda d: _rewrite(d, lambda n, c: None if n.endswith("layer.tar") else c), "missing from the archive"),
    ("docker config missing", _docker_archive_bytes, lambda d: _rewrite(d, lambda n, c: None if n.endswith(".json") and n != "manifest.json" else c), "missing from the archive"),
    ("docker manifest.json garbage", _docker_archive_bytes, lambda d: _rewrite(d, lambda n, c: b"{}" if n == "manifest.json" else c), "must be a list"),
    ("docker bad repo tag", _docker_archive_bytes, lambda d: _rewrite(d, lambda n, c: c.replace(b'"a:1"', b'"A:1"') if n == "manifest.json" else c), "invalid image name"),
    ("docker layer count", _docker_archive_bytes, lambda d: _rewrite(d, _drop_a_layer), "diff_ids"),
    ("docker gzip outer truncated", _docker_archive_bytes, lambda d: gzip.compress(d)[:-40], "corrupt"),
    ("neither format", _docker_archive_bytes, lambda d: _rewrite(d, lambda n, c: None if n == "manifest.json" else c), "not a docker-archive or OCI archive"),
    ("not a tar", _docker_archive_bytes, lambda d: b"hello, this is not a tar archive\n" * 40, "not a valid tar"),
    ("empty", _docker_archive_bytes, lambda d: b"", "empty"),
]


@pytest.mark.parametrize("name,make,corrupt,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_corrupt_archives_leave_store_unchanged(store: ContentStore, tmp_path: Path, name, make, corrupt, message) -> None:  # noqa: ANN001
    data = corrupt(make(tmp_path))
    path = tmp_path / "bad.tar"
    path.write_bytes(data)
    before = snapshot(store)
    with pytest.raises(CorruptData) as info:
        load_archive(path, store)
    assert message in info.value.message, info.value.message
    assert "\n" not in info.value.message
    assert snapshot(store) == before


def test_corrupt_layout_dir_leaves_store_unchanged(store: ContentStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    written = w.write_oci_layout(layout, [L1, L2], CONFIG, "a:1")
    blob = layout / "blobs" / "sha256" / written.layers[1].digest[7:]
    blob.write_bytes(blob.read_bytes()[:-5])
    before = snapshot(store)
    with pytest.raises(CorruptData, match="truncated"):
        load_archive(layout, store)
    assert snapshot(store) == before
    with pytest.raises(CorruptData, match="no index.json"):
        load_archive(tmp_path, store)


def test_missing_archive(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_archive(tmp_path / "nope.tar", store)


# ----------------------------------------------------------------------------- skopeo

SKOPEO = shutil.which("skopeo")


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_skopeo_produced_archives(store: ContentStore, tmp_path: Path) -> None:
    """An independent producer: skopeo converts our OCI layout to docker-archive and oci-archive."""
    layout = tmp_path / "layout"
    written = w.write_oci_layout(layout, [L1, L2], CONFIG, "app", "gzip")
    out = tmp_path / "skopeo-docker.tar"
    subprocess.run([SKOPEO, "--insecure-policy", "copy", "-q", f"oci:{layout}:app", f"docker-archive:{out}:skopeo/app:7"], check=True, timeout=60)
    [img] = load_archive(out, store)
    assert img.repo_tags == ["docker.io/skopeo/app:7"]
    assert img.diff_ids == written.diff_ids
    assert img.config.cmd == ["/app/run.sh"]
    assert [d.digest for d in img.layers] == written.diff_ids  # skopeo decompresses for docker-archive

    out2 = tmp_path / "skopeo.oci.tar"
    subprocess.run([SKOPEO, "--insecure-policy", "copy", "-q", f"docker-archive:{out}", f"oci-archive:{out2}:x.io/y/z:1"], check=True, timeout=60)
    [img2] = load_archive(out2, store)
    assert img2.repo_tags == ["x.io/y/z:1"]
    assert img2.diff_ids == written.diff_ids


# ----------------------------------------------------------------------------- import

ROOTFS = w.layer_tar([w.directory("bin"), w.file("bin/sh", b"#!", mode=0o755), w.symlink("bin/ash", "sh")])


@pytest.mark.parametrize(
    "compress",
    [lambda d: d, gzip.compress, lzma.compress, lambda d: zstandard.ZstdCompressor().compress(d)],
    ids=["plain", "gzip", "xz", "zstd"],
)
def test_import_rootfs(store: ContentStore, tmp_path: Path, compress) -> None:  # noqa: ANN001
    src = tmp_path / "rootfs.tar"
    src.write_bytes(compress(ROOTFS))
    img = import_rootfs(src, store, ref="imported:v1", changes={"Cmd": ["/bin/sh"], "Env": ["A=1"]}, message="hello", created="2024-05-05T00:00:00Z")
    assert img.repo_tags == ["docker.io/library/imported:v1"]
    assert img.layers == [Descriptor(OCI_LAYER, sha(ROOTFS), len(ROOTFS))]
    assert img.diff_ids == [sha(ROOTFS)]
    assert img.config.cmd == ["/bin/sh"] and img.config.env == ["A=1"]
    assert img.config.created == "2024-05-05T00:00:00Z"
    assert img.config.raw["comment"] == "hello" and img.config.history[0]["created_by"] == "hypr import"
    for digest in (img.manifest_digest, img.config_digest, sha(ROOTFS)):
        assert store.has(digest)
    # From a stream, untagged, fresh config with no command (as docker import).
    img2 = import_rootfs(io.BytesIO(compress(ROOTFS)), store)
    assert img2.repo_tags == [] and img2.config.cmd is None and img2.config.os == "linux"


@pytest.mark.parametrize(
    "data,message",
    [
        (gzip.compress(ROOTFS)[:-30], "corrupt"),
        (b"definitely not a tarball" * 50, "not a valid tar"),
        (b"", "empty"),
        (ROOTFS[: 3 * 512 + 100], "truncated"),  # inside the third header
        (w.layer_tar([w.file("../escape", "x")]), "'..' path component"),
        (w.layer_tar([w.symlink("evil", "/etc"), w.file("evil/passwd", "x")]), "goes through symlink"),
    ],
    ids=["gzip-truncated", "not-tar", "empty", "tar-truncated", "dotdot", "symlink-parent"],
)
def test_import_refusals_leave_store_unchanged(store: ContentStore, data: bytes, message: str) -> None:
    before = snapshot(store)
    with pytest.raises(CorruptData) as info:
        import_rootfs(io.BytesIO(data), store, ref="x:1")
    assert message in info.value.message, info.value.message
    assert snapshot(store) == before


def test_import_bad_arguments(store: ContentStore, tmp_path: Path) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidArgument):
        import_rootfs(io.BytesIO(ROOTFS), store, ref="Bad:Ref")
    with pytest.raises(InvalidArgument, match="invalid import changes"):
        import_rootfs(io.BytesIO(ROOTFS), store, changes={"Cmd": 5})
    with pytest.raises(NotFound):
        import_rootfs(tmp_path / "missing.tar", store)
    assert snapshot(store) == before


# ----------------------------------------------------------------------------- fuzz

_FUZZ_LAYER = w.layer_tar(
    [w.directory("d"), w.file("d/f", "x" * 1000, xattrs={"user.a": "b"}), w.symlink("s", "d"), w.hardlink("h", "d/f"), w.file("L" * 300, "long"), w.whiteout("q")]
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["docker", "oci"]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
)
def test_mutated_archives_only_raise_hypr_errors(tmp_path: Path, kind: str, edits, cut) -> None:  # noqa: ANN001
    path = tmp_path / f"fuzz-{kind}.tar"
    if not path.exists():
        if kind == "docker":
            w.write_docker_archive(path, [_FUZZ_LAYER], {"config": {}}, ["a:1"])
        else:
            w.write_oci_archive(path, [_FUZZ_LAYER], {"config": {}}, "a/b:1")
    data = bytearray(path.read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    store = ContentStore(tmp_path / f"store-{uuid.uuid4().hex}")
    try:
        load_archive(io.BytesIO(bytes(data)), store)
    except HyprError:
        assert list(store.digests()) == [] and os.listdir(store.blob_dir) == []
