"""The image commands print the same thing, exit the same way and leave the same store
whether the CLI embeds the engine or talks to hyprd (Images.Tag, History, Save, Prune,
DiskUsage over gRPC). No VM boots: `hypr create` makes the one in-use image."""

from __future__ import annotations

import asyncio
import re

from tests.conftest import BUSYBOX_IMAGE

AGE = re.compile(rb"\b(\d+) (second|minute|hour|day)s?( ago)?\b|Less than a second( ago)?|\d+ days ago")


def _norm(text: bytes) -> bytes:
    text = re.sub(rb"\"LastTagTime\": \"[^\"]*\"", b'"LastTagTime": "<t>"', text)
    return re.sub(rb" {2,}", b"   ", AGE.sub(b"<age>", text))


def _sequence(home, out_dir) -> list[tuple[int, bytes, bytes]]:
    steps = [
        ("load", "-i", str(BUSYBOX_IMAGE)),
        ("tag", "hypr/busybox", "box:1"),
        ("tag", "hypr/busybox", "Bad:Ref"),
        ("tag", "nosuch", "x:1"),
        ("images", "--digests"),
        ("images", "--format", "json"),
        ("image", "history", "box:1"),
        ("image", "history", "--format", "json", "box:1"),
        ("image", "inspect", "box:1", "nosuch"),
        ("save", "-o", str(out_dir / "s.tar"), "box:1", "hypr/busybox"),
        ("save", "-o", str(out_dir / "missing" / "s.tar"), "box:1"),
        ("create", "--name", "user", "box:1", "true"),
        ("rmi", "box:1"),                 # one of two tags: untagged, though a VM uses the image
        ("rmi", "hypr/busybox"),          # the last tag of an image a VM uses: refused
        ("rmi", "-f", "hypr/busybox"),    # forced: untagged, kept for the VM
        ("image", "prune", "-a", "-f"),
        ("rm", "user"),
        ("image", "prune", "-f"),
        ("images", "-q"),
        ("load", "-i", str(out_dir / "s.tar")),
        ("images",),
    ]
    results = []
    for args in steps:
        proc = home.run(*args, timeout=120)
        stdout = proc.stdout.replace(str(out_dir).encode(), b"<out>")
        stderr = proc.stderr.replace(str(out_dir).encode(), b"<out>")
        if args[0] == "create":
            stdout = b"<vm id>"
        results.append((proc.returncode, _norm(stdout), _norm(stderr)))
    return results


def test_image_commands_are_identical_embedded_and_through_hyprd(hypr_home, hyprd_factory, tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "d").mkdir()
    embedded = _sequence(hypr_home, tmp_path / "e")
    hypr_home.run("image", "prune", "-a", "-f", check=True)
    hyprd_factory.start()
    daemon = _sequence(hypr_home, tmp_path / "d")
    assert "Engine:         daemon" in hypr_home.out("system", "info")
    hyprd_factory.stop()
    for i, (a, b) in enumerate(zip(embedded, daemon)):
        assert a == b, f"step {i}:\nembedded: {a}\ndaemon:   {b}"
    codes = [r[0] for r in embedded]
    assert codes == [0, 0, 125, 125, 0, 0, 0, 0, 125, 0, 125, 0, 0, 125, 0, 0, 0, 0, 0, 0, 0], codes
    assert embedded[12][1] == b"Untagged: box:1\n" and b"used by a VM (user)" in embedded[13][2]
    assert embedded[15][1].strip() == b"Total reclaimed space: 0B"     # the VM's image stays
    assert b"deleted: sha256:" in embedded[17][1]                     # ...until the VM is gone
    assert embedded[18][1] == b""
    assert (tmp_path / "d" / "s.tar").read_bytes() == (tmp_path / "e" / "s.tar").read_bytes()


def test_disk_usage_and_prune_through_the_client_match(hypr_home, hyprd):
    from hypr_engine.client import HyprClient
    from hypr_engine.paths import Layout

    hypr_home.run("load", "-i", str(BUSYBOX_IMAGE), check=True)

    async def through_hyprd():
        client = await HyprClient.connect(Layout(hypr_home.data, hypr_home.runtime))
        try:
            assert client.mode == "daemon"
            before = await client.image_disk_usage()
            report = await client.prune_images(all=True)
            after = await client.image_disk_usage()
            return before, report, after
        finally:
            await client.close()

    before, report, after = asyncio.run(through_hyprd())
    assert (before.images, before.active) == (1, 0) and before.blobs_bytes > 0
    assert before.reclaimable_bytes == before.blobs_bytes + before.rootfs_bytes
    assert report.untagged == ["hypr/busybox:latest"] and len(report.deleted) == 1
    assert report.bytes_reclaimed == before.reclaimable_bytes
    assert (after.images, after.blobs_bytes, after.reclaimable_bytes) == (0, 0, 0)
