"""`hypr push`, `hypr run REF` of a missing image, and the same through hyprd."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from hypr_engine.oci import writer as w
from hypr_engine.oci.busybox_image import busybox_config, busybox_entries
from tests.conftest import HyprHome
from tests.registry.conftest import assert_one_line_error, image_rows
from tests.registry.images import BUSYBOX, marker_layer


def _archive(path: Path, tags: list[str], marker: str = "pushed by hypr") -> w.WrittenImage:
    config = busybox_config()
    config["config"]["Cmd"] = ["cat", "/hypr-marker"]
    return w.write_docker_archive(path, [w.layer_tar(busybox_entries(BUSYBOX)), marker_layer(marker)], config, tags)


@pytest.fixture
def other_home(tmp_path):
    """A second data directory (pulls only: no VMs, so no teardown checks needed)."""
    runtime = Path(f"/tmp/hyprt-{uuid.uuid4().hex[:8]}")
    env = dict(os.environ)
    env.update(HYPR_DATA_DIR=str(tmp_path / "data2"), HYPR_RUNTIME_DIR=str(runtime),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    yield HyprHome(tmp_path / "data2", runtime, env)
    import shutil

    shutil.rmtree(runtime, ignore_errors=True)


def test_push_skips_existing_blobs_mounts_across_repositories_and_round_trips(
        hypr_home, other_home, registry, proxy_for, tmp_path):
    proxy = proxy_for(registry)
    a, b = f"{proxy.host}/team/a:1", f"{proxy.host}/team/b:1"
    written = _archive(tmp_path / "img.tar", [a, b])
    hypr_home.run("load", "-i", str(tmp_path / "img.tar"), check=True)

    out = hypr_home.out("push", a)
    assert out.startswith(f"The push refers to repository [{proxy.host}/team/a]\n")
    assert out.count(": Pushed") == 3, out             # two layers and the config
    assert f"1: digest: {written.manifest_digest} size: {len(written.manifest)}" in out

    # Again: HEAD finds every blob, nothing is uploaded.
    before = len(proxy.log)
    again = hypr_home.out("push", a)
    assert again.count("Layer already exists") == 3, again
    assert [r.method for r in proxy.log[before:] if "/blobs/" in r.path] == ["HEAD"] * 3

    # Another repository of the same registry: blobs are mounted from team/a, not uploaded.
    before = len(proxy.log)
    mounted = hypr_home.out("push", b)
    assert mounted.count("Mounted from team/a") == 3, mounted
    new = proxy.log[before:]
    assert not [r for r in new if r.method in ("PUT", "PATCH") and "/blobs/" in r.path]
    assert len([r for r in new if r.method == "POST" and "mount=" in r.path and "from=team/a" in r.path]) == 3

    # Pulled into another data directory: the same image, byte for byte.
    other_home.run("pull", b, check=True)
    assert [r["Digest"] for r in image_rows(other_home)] == [written.config_digest]


def test_push_errors(hypr_home, registry, tmp_path):
    assert_one_line_error(hypr_home.run("push", f"{registry.host}/none:1"), "unable to find image")
    _archive(tmp_path / "img.tar", ["127.0.0.1:1/team/a:1"])
    hypr_home.run("load", "-i", str(tmp_path / "img.tar"), check=True)
    assert_one_line_error(hypr_home.run("push", "127.0.0.1:1/team/a:1"), "connection refused")


def test_pull_and_push_through_hyprd(hypr_home, hyprd, registry, images, tmp_path):
    from tests.daemon.conftest import hypr_text  # noqa: F401 - the daemon fixture's module

    written = images.push(f"{registry.host}/viad:1", fmt="oci")
    out = hypr_home.out("pull", f"{registry.host}/viad:1")
    assert out.count("Pull complete") == 2 and f"Digest: {written.manifest_digest}" in out
    assert [r["Digest"] for r in image_rows(hypr_home)] == [written.config_digest]
    again = hypr_home.out("push", f"{registry.host}/viad:1")
    assert again.count("Layer already exists") == 3
    assert_one_line_error(hypr_home.run("pull", f"{registry.host}/viad:nope"), "not found")
    assert_one_line_error(hypr_home.run("pull", "registry.hypr-test.invalid/x:1"), "cannot resolve")
    assert hypr_home.out("logout", registry.host) == f"Not logged in to {registry.host}\n"


@pytest.mark.vm
def test_run_pulls_a_missing_image_and_runs_it_in_a_vm(hypr_home, other_home, registry, images):
    """An image pushed by skopeo (Docker schema 2, gzip): `hypr run` pulls and boots it; push it
    back (a Docker manifest, uploaded as is), and another data directory pulls the same image."""
    ref = f"{registry.host}/vm/app:1"
    written = images.push(ref, "hello from a pulled image", fmt="v2s2")

    proc = hypr_home.run("run", "--rm", ref, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout.decode() == "hello from a pulled image\n"
    assert err.startswith(f"Unable to find image '{ref}' locally\n"), err
    assert err.count("Pull complete") == 2, err
    assert [r["Digest"] for r in image_rows(hypr_home)] == [written.config_digest]

    pushed = hypr_home.out("push", ref)
    assert pushed.count("Layer already exists") == 3, pushed
    other_home.run("pull", ref, check=True)
    assert [r["Digest"] for r in image_rows(other_home)] == [written.config_digest]
    # And a second run finds the image: no pull.
    again = hypr_home.run("run", "--rm", ref, timeout=300)
    assert again.returncode == 0 and again.stderr.decode() == "", again.stderr
