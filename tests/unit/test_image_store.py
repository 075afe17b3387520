"""The image store through the `hypr` CLI (no VM boots): what rmi, image prune, tag, save,
inspect and history do to the content store and the squashfs cache, and bad input that
must change nothing. VMs are only created (`hypr create` starts no process), which is
enough for an image to be in use."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path


from hypr_engine.oci import writer as w

BUSYBOX = Path("/bin/busybox")


def _blobs(home) -> dict[str, int]:
    root = home.data / "blobs" / "sha256"
    return {"sha256:" + p.name: p.stat().st_size for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".")} if root.exists() else {}


def _rootfs(home) -> set[str]:
    root = home.data / "rootfs"
    return {p.name for p in root.glob("*.squashfs")} if root.exists() else set()


def _noise(seed: str, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += hashlib.sha256(f"{seed}{len(out)}".encode()).digest()
    return out[:n]


def _base_layer() -> bytes:
    return w.layer_tar([
        w.directory("bin"),
        w.file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        w.symlink("bin/sh", "busybox"),
        w.file("shared.bin", _noise("base", 300_000)),
    ])


def _config(cmd: list[str], history: list[dict] | None = None) -> dict:
    cfg = {"architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
           "config": {"Cmd": cmd, "Env": ["PATH=/bin"]}}
    if history is not None:
        cfg["history"] = history
    return cfg


def _two_images_sharing_a_layer(tmp_path: Path) -> tuple[Path, list[w.WrittenImage]]:
    base = _base_layer()
    archive = tmp_path / "two.tar"
    written = w.write_docker_archive_images(archive, [
        w.ImageSpec([base, w.layer_tar([w.file("a.bin", _noise("a", 100_000))])], _config(["echo", "a"]), ["app:a"]),
        w.ImageSpec([base, w.layer_tar([w.file("b.bin", _noise("b", 120_000))])], _config(["echo", "b"]), ["app:b"]),
    ])
    return archive, written


def _inspect(home, ref: str) -> dict:
    return json.loads(home.out("image", "inspect", ref))[0]


def _ids(home) -> list[str]:
    return [json.loads(line)["Digest"] for line in home.out("images", "--format", "json").splitlines()]


def _build_rootfs(home, *refs: str) -> None:
    """Build the squashfs of each image as `hypr run` would before booting (no VM here)."""
    from hypr_engine.engine import Engine
    from hypr_engine.paths import Layout

    async def build() -> None:
        engine = await Engine.open(Layout(home.data, home.runtime))
        try:
            for ref in refs:
                image, _ = await engine.images.resolve(ref)
                await engine.images.rootfs_for(image)
        finally:
            await engine.close()

    asyncio.run(build())


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 125, (proc.stdout, proc.stderr)
    err = proc.stderr.decode()
    assert err.startswith("hypr: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_rmi_of_one_of_two_images_sharing_layers_reclaims_only_the_unshared_blobs(hypr_home, tmp_path):
    archive, (a, b) = _two_images_sharing_a_layer(tmp_path)
    hypr_home.run("load", "-i", str(archive), check=True)
    before = _blobs(hypr_home)
    a_manifest = _inspect(hypr_home, "app:a")["ManifestDigest"]
    b_manifest = _inspect(hypr_home, "app:b")["ManifestDigest"]
    assert {a.config_digest, b.config_digest, a_manifest, b_manifest, *a.diff_ids, *b.diff_ids} == set(before)

    out = hypr_home.out("rmi", "app:a")
    assert out.splitlines() == ["Untagged: app:a", f"Deleted: {a.config_digest}"]
    after = _blobs(hypr_home)
    assert set(before) - set(after) == {a.config_digest, a_manifest, a.diff_ids[1]}
    assert a.diff_ids[0] in after  # the shared base layer stays for app:b
    assert hypr_home.run("run", "--rm", "app:a").returncode == 125
    assert _ids(hypr_home) == [b.config_digest]

    hypr_home.run("rmi", "app:b", check=True)
    assert _blobs(hypr_home) == {}


def test_a_squashfs_lives_while_any_image_needs_its_layer_stack(hypr_home, tmp_path):
    """Two images with the same layers (different configs) share one cached root filesystem."""
    layers = [_base_layer()]
    archive = tmp_path / "same-layers.tar"
    w.write_docker_archive_images(archive, [
        w.ImageSpec(layers, _config(["echo", "one"]), ["same:one"]),
        w.ImageSpec(layers, _config(["echo", "two"]), ["same:two"]),
    ])
    hypr_home.run("load", "-i", str(archive), check=True)
    _build_rootfs(hypr_home, "same:one", "same:two")
    assert len(_rootfs(hypr_home)) == 1
    hypr_home.run("rmi", "same:one", check=True)
    assert len(_rootfs(hypr_home)) == 1
    hypr_home.run("rmi", "same:two", check=True)
    assert _rootfs(hypr_home) == set() and _blobs(hypr_home) == {}


def test_image_prune_removes_dangling_only_and_all_removes_every_unused_image(hypr_home, tmp_path, busybox):
    archive, (a, b) = _two_images_sharing_a_layer(tmp_path)
    hypr_home.run("load", "-i", str(archive), check=True)
    # Loading another image as app:a moves the tag: the first app:a is dangling now.
    newer = tmp_path / "newer.tar"
    c = w.write_docker_archive(newer, [_base_layer()], _config(["echo", "c"]), ["app:a"])
    hypr_home.run("load", "-i", str(newer), check=True)
    rows = hypr_home.out("images").splitlines()
    assert any(r.split()[:2] == ["<none>", "<none>"] and a.config_digest[7:19] in r for r in rows), rows
    hypr_home.run("create", "--name", "user", "app:b", check=True)  # app:b is in use
    _build_rootfs(hypr_home, "app:b")
    store_before = sum(_blobs(hypr_home).values())

    out = hypr_home.out("image", "prune", "-f")
    assert f"deleted: {a.config_digest}" in out and out.count("deleted: ") == 1, out
    assert set(_ids(hypr_home)) == {b.config_digest, c.config_digest, _inspect(hypr_home, busybox)["Id"]}
    assert a.diff_ids[1] not in _blobs(hypr_home) and a.diff_ids[0] in _blobs(hypr_home)
    assert store_before - sum(_blobs(hypr_home).values()) >= 100_000
    assert "Total reclaimed space: " in out

    out = hypr_home.out("image", "prune", "-a", "-f")
    assert "untagged: app:a" in out and "untagged: hypr/busybox:latest" in out
    assert _ids(hypr_home) == [b.config_digest]  # the VM's image survives -a
    assert len(_rootfs(hypr_home)) == 1
    assert set(_blobs(hypr_home)) == {b.config_digest, _inspect(hypr_home, "app:b")["ManifestDigest"], *b.diff_ids}
    assert hypr_home.out("image", "prune", "-a", "-f").strip() == "Total reclaimed space: 0B"

    hypr_home.run("rm", "user", check=True)
    hypr_home.out("image", "prune", "-a", "-f")
    assert _ids(hypr_home) == [] and _blobs(hypr_home) == {} and _rootfs(hypr_home) == set()


def test_rmi_of_an_image_a_vm_uses_is_refused_without_force(hypr_home, busybox):
    hypr_home.run("create", "--name", "keeper", busybox, "true", check=True)
    before = _blobs(hypr_home)
    _one_error_line(hypr_home.run("rmi", busybox), "it is used by a VM (keeper)", "-f")
    assert _blobs(hypr_home) == before and "hypr/busybox" in hypr_home.out("images")

    # -f untags; the image stays (untagged) while the VM needs it, and the VM can still use it.
    assert hypr_home.out("rmi", "-f", busybox).splitlines() == ["Untagged: hypr/busybox:latest"]
    assert _blobs(hypr_home) == before
    assert hypr_home.out("images").splitlines()[1].split()[:2] == ["<none>", "<none>"]
    hypr_home.out("image", "prune", "-a", "-f")
    assert _blobs(hypr_home) == before
    hypr_home.run("rm", "keeper", check=True)
    hypr_home.out("image", "prune", "-f")
    assert _blobs(hypr_home) == {}


def test_tag_and_untag(hypr_home, busybox):
    image_id = _inspect(hypr_home, busybox)["Id"]
    blobs = _blobs(hypr_home)
    hypr_home.run("tag", busybox, "localhost:5000/team/box:v1", check=True)
    hypr_home.run("tag", image_id[7:19], "other", check=True)
    assert sorted(_inspect(hypr_home, "other:latest")["RepoTags"]) == [
        "hypr/busybox:latest", "localhost:5000/team/box:v1", "other:latest"]
    rows = [r.split()[:3] for r in hypr_home.out("images").splitlines()[1:]]
    assert ["localhost:5000/team/box", "v1", image_id[7:19]] in rows

    # By ID with several tags: Docker's conflict, unless forced.
    _one_error_line(hypr_home.run("rmi", image_id), "must be forced")
    assert hypr_home.out("rmi", "other").splitlines() == ["Untagged: other:latest"]
    assert hypr_home.out("rmi", "localhost:5000/team/box:v1").splitlines() == ["Untagged: localhost:5000/team/box:v1"]
    assert _blobs(hypr_home) == blobs and _inspect(hypr_home, image_id)["RepoTags"] == ["hypr/busybox:latest"]

    for bad, needle in (("UPPER:x", "must be lowercase"), ("a@sha256:" + "0" * 64, "digest"), ("x:y:z", "invalid")):
        _one_error_line(hypr_home.run("tag", busybox, bad), needle)
    _one_error_line(hypr_home.run("tag", "missing:1", "new:1"), "unable to find image 'missing:1'")
    assert _inspect(hypr_home, busybox)["RepoTags"] == ["hypr/busybox:latest"] and _blobs(hypr_home) == blobs


def test_save_load_round_trip_and_skopeo_reads_the_archive(hypr_home, tmp_path, busybox):
    archive, (a, b) = _two_images_sharing_a_layer(tmp_path)
    hypr_home.run("load", "-i", str(archive), check=True)
    layout = tmp_path / "gz-layout"  # gzip layers in the store: save writes them uncompressed
    g = w.write_oci_layout(layout, [_base_layer(), w.layer_tar([w.file("g", "g\n")])], _config(["echo", "g"]),
                           image_name="docker.io/library/gz:1")
    hypr_home.run("load", "-i", str(layout), check=True)
    saved = tmp_path / "out" / "saved.tar"
    saved.parent.mkdir()
    hypr_home.run("save", "-o", str(saved), "app:a", "app:b", "gz:1", busybox, check=True)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["saved.tar"]  # no temporary files left

    fresh = dict(hypr_home.env, HYPR_DATA_DIR=str(tmp_path / "fresh"))
    loaded = subprocess.run([*_hypr(), "load", "-i", str(saved)], env=fresh, capture_output=True, check=True)
    assert sorted(loaded.stdout.decode().splitlines()) == [
        "Loaded image: app:a", "Loaded image: app:b", "Loaded image: gz:1", "Loaded image: hypr/busybox:latest"]
    rows = subprocess.run([*_hypr(), "images", "--format", "json"], env=fresh, capture_output=True, check=True)
    got = {json.loads(line)["Digest"] for line in rows.stdout.decode().splitlines()}
    assert got == {a.config_digest, b.config_digest, g.config_digest, _inspect(hypr_home, busybox)["Id"]}

    # An independent reader: skopeo turns it into an OCI layout with the same layers.
    for ref, image, word in (("app:b", b, "b"), ("gz:1", g, "g")):
        dest = tmp_path / f"skopeo-{ref.replace(':', '-')}"
        subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{saved}:{ref}", f"oci:{dest}:x"],
                       check=True, capture_output=True, timeout=120)
        info = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{dest}:x"], check=True,
                                         capture_output=True, timeout=60).stdout)
        assert info["rootfs"]["diff_ids"] == image.diff_ids and info["config"]["Cmd"] == ["echo", word]


def _hypr() -> list[str]:
    from tests.conftest import HYPR

    return HYPR


def test_save_to_an_unwritable_path_or_of_an_unknown_image_changes_nothing(hypr_home, tmp_path, busybox):
    blobs = _blobs(hypr_home)
    target = tmp_path / "ok.tar"
    _one_error_line(hypr_home.run("save", "-o", str(target), busybox, "nosuch:1"), "unable to find image 'nosuch:1'")
    _one_error_line(hypr_home.run("save", "-o", str(tmp_path / "missing" / "x.tar"), busybox), "does not exist")
    _one_error_line(hypr_home.run("save", "-o", str(tmp_path), busybox), "is a directory")
    _one_error_line(hypr_home.run("save", "-o", "/proc/hypr-save.tar", busybox), "cannot save to /proc/hypr-save.tar")
    _one_error_line(hypr_home.run("save", busybox), "-o FILE")
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert _blobs(hypr_home) == blobs


def test_inspect_and_history_show_layers_with_sizes_and_what_made_them(hypr_home, tmp_path):
    history = [
        {"created": "2026-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:base in /"},
        {"created": "2026-01-01T00:01:00Z", "created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True},
        {"created": "2026-01-01T00:02:00Z", "created_by": "/bin/sh -c echo top > /top", "comment": "made by test"},
    ]
    top = w.layer_tar([w.file("top", "top\n")])
    archive = tmp_path / "hist.tar"
    written = w.write_docker_archive(archive, [_base_layer(), top], _config(["sh"], history), ["hist:1"])
    hypr_home.run("load", "-i", str(archive), check=True)

    doc = _inspect(hypr_home, "hist:1")
    assert doc["Id"] == written.config_digest and doc["RepoTags"] == ["hist:1"]
    assert doc["RootFS"] == {"Type": "layers", "Layers": written.diff_ids}
    assert [l["Size"] for l in doc["Layers"]] == [len(_base_layer()), len(top)]
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Os"] == "linux" and doc["Created"] == "2026-01-02T03:04:05Z"

    entries = [json.loads(line) for line in hypr_home.out("image", "history", "--format", "json", "hist:1").splitlines()]
    assert [e["CreatedBy"] for e in entries] == [h["created_by"] for h in reversed(history)]
    assert [e["Size"] for e in entries] == [len(top), 0, len(_base_layer())]
    assert [e["ID"] for e in entries] == [written.config_digest, "<missing>", "<missing>"]
    assert entries[0]["Comment"] == "made by test" and entries[1]["EmptyLayer"]
    table = hypr_home.out("image", "history", "--no-trunc", "hist:1").splitlines()
    assert table[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert "/bin/sh -c echo top > /top" in table[1] and "made by test" in table[1]

    docs = hypr_home.run("image", "inspect", "hist:1", "nosuch")
    assert docs.returncode == 125 and b"unable to find image 'nosuch'" in docs.stderr
    assert len(json.loads(docs.stdout)) == 1
    _one_error_line(hypr_home.run("image", "history", "nosuch"), "unable to find image 'nosuch'")
    _one_error_line(hypr_home.run("image", "history", "Not/Valid"), "must be lowercase")
    _one_error_line(hypr_home.run("rmi", "nosuch"), "unable to find image 'nosuch'")


def test_disk_usage_counts_blobs_and_rootfs_and_what_pruning_frees(hypr_home, tmp_path, busybox):
    from hypr_engine.engine import Engine
    from hypr_engine.paths import Layout

    archive, (a, b) = _two_images_sharing_a_layer(tmp_path)
    hypr_home.run("load", "-i", str(archive), check=True)
    hypr_home.run("create", "--name", "user", "app:b", check=True)
    _build_rootfs(hypr_home, "app:a", "app:b")

    async def usage():
        engine = await Engine.open(Layout(hypr_home.data, hypr_home.runtime))
        try:
            return await engine.image_disk_usage()
        finally:
            await engine.close()

    du = asyncio.run(usage())
    squashfs = {p.name: p.stat().st_size for p in (hypr_home.data / "rootfs").glob("*.squashfs")}
    assert (du.images, du.active) == (3, 1)
    assert du.blobs_bytes == sum(_blobs(hypr_home).values()) and du.rootfs_bytes == sum(squashfs.values())
    before = du.blobs_bytes + du.rootfs_bytes
    reclaimed = hypr_home.out("image", "prune", "-a", "-f")
    after = sum(_blobs(hypr_home).values()) + sum(p.stat().st_size for p in (hypr_home.data / "rootfs").glob("*.squashfs"))
    assert before - after == du.reclaimable_bytes > 0
    assert "Total reclaimed space: " in reclaimed


def test_a_sweep_never_takes_blobs_a_load_has_not_recorded_yet(tmp_path):
    """Between publishing blobs and committing the image row, a load holds `adding()`; a sweep
    (another process's rmi or prune) waits for it, or gives up and deletes nothing."""
    from hypr_engine.oci.content import ContentStore

    store = ContentStore(tmp_path / "blobs")
    other = ContentStore(tmp_path / "blobs")  # as another process would open it
    with store.adding():
        digest = store.ingest(b"not recorded yet").digest
        with other.sweeping(timeout=0.2) as held:
            assert not held
        with other.adding(timeout=0.2):  # loads do not exclude each other
            pass
    with other.sweeping(timeout=0.2) as held:
        assert held
    assert store.has(digest)
    assert [p.name for p in (tmp_path / "blobs").rglob("*")] == ["sha256", digest[7:]]


def test_loads_and_removals_at_once_in_one_engine_keep_the_store_consistent(hypr_home, tmp_path):
    """hyprd serves a load and an rmi at the same time: the sweep waits for the load's row,
    never takes its blobs, and neither blocks the other's event loop."""
    from hypr_engine.engine import Engine
    from hypr_engine.paths import Layout

    archive, (a, b) = _two_images_sharing_a_layer(tmp_path)
    other = tmp_path / "other.tar"
    c = w.write_docker_archive(other, [_base_layer(), w.layer_tar([w.file("c", "c\n")])], _config(["c"]), ["app:c"])

    async def race() -> None:
        engine = await Engine.open(Layout(hypr_home.data, hypr_home.runtime))
        try:
            for _ in range(3):
                await engine.images.load(archive)
                await asyncio.wait_for(asyncio.gather(
                    engine.images.load(other), engine.images.remove("app:a", force=False),
                    engine.prune_images(all=False)), 60)
                await asyncio.wait_for(asyncio.gather(
                    engine.images.remove("app:c", force=False), engine.images.load(archive)), 60)
        finally:
            await engine.close()

    asyncio.run(race())
    assert sorted(_ids(hypr_home)) == sorted([a.config_digest, b.config_digest])
    expected = {a.config_digest, b.config_digest, *a.diff_ids, *b.diff_ids,
                _inspect(hypr_home, "app:a")["ManifestDigest"], _inspect(hypr_home, "app:b")["ManifestDigest"]}
    assert set(_blobs(hypr_home)) == expected
    assert c.diff_ids[1] not in _blobs(hypr_home)
