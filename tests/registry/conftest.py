"""Fixtures of the registry tests: real docker-registry processes (anonymous, htpasswd,
bearer tokens), the fault-injecting proxy, and helpers to push images with skopeo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.daemon.conftest import hyprd, hyprd_factory  # noqa: F401 - fixtures used by the API tests
from tests.registry.images import write_image
from tests.registry.peers import FaultProxy, Registry, TokenIssuer, htpasswd_file, http_push_layout, skopeo_copy

USER, PASSWORD = "alice", "wonderland"

for tool in ("docker-registry", "skopeo", "htpasswd", "openssl"):
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is missing: run ./dev setup (scripts/setup.sh installs it)")


@pytest.fixture
def registry(tmp_path):
    """An anonymous registry on 127.0.0.1 (plain HTTP, as loopback registries are by default)."""
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def basic_registry(tmp_path):
    """A registry with htpasswd (bcrypt) basic auth: user alice, password wonderland."""
    pw = htpasswd_file(tmp_path / "htpasswd", USER, PASSWORD)
    reg = Registry(tmp_path / "basic-registry", auth={"htpasswd": {"realm": "hypr-test", "path": str(pw)}})
    yield reg
    reg.stop()


@pytest.fixture
def token_registry(tmp_path):
    """A registry with bearer-token auth from a token issuer the test runs (anonymous pull, alice pushes)."""
    issuer = TokenIssuer(tmp_path / "issuer", USER, PASSWORD)
    reg = Registry(tmp_path / "token-registry", auth=issuer.registry_auth())
    reg.issuer = issuer
    yield reg
    reg.stop()
    issuer.stop()


@pytest.fixture
def proxy_for():
    """proxy_for(registry) -> a FaultProxy in front of it (stopped at the end)."""
    proxies: list[FaultProxy] = []

    def make(reg: Registry) -> FaultProxy:
        proxy = FaultProxy(reg.host)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


class Pusher:
    """Writes test images as OCI layouts and pushes them with skopeo."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.count = 0

    def push(self, dest: str, marker: str = "hello from the registry", *, fmt: str = "v2s2",
             compression: str = "gzip", creds: tuple[str, str] | None = None, **kw):
        self.count += 1
        layout = self.tmp / f"layout-{self.count}"
        written = write_image(layout, marker, compression=compression, ref_name="img", **kw)
        if compression == "none":   # skopeo would compress the layers: upload them as they are
            host, _, rest = dest.partition("/")
            repo, _, tag = rest.rpartition(":")
            http_push_layout(layout, host, repo, tag)
        else:
            skopeo_copy(f"oci:{layout}:img", f"docker://{dest}", fmt=fmt, creds=creds)
        return written


@pytest.fixture
def images(tmp_path) -> Pusher:
    return Pusher(tmp_path)


def store_files(home) -> list[str]:
    """Everything in the content store's blob directory (blobs and temp files)."""
    blob_dir = home.data / "blobs" / "sha256"
    return sorted(p.name for p in blob_dir.iterdir()) if blob_dir.exists() else []


def image_rows(home) -> list[dict]:
    out = home.out("images", "--format", "json").strip()
    if not out:
        return []
    if out.startswith("["):
        return json.loads(out)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def assert_one_line_error(proc, *needles: str, code: int = 125) -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, (proc.returncode, err, proc.stdout.decode(errors="replace"))
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hypr: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_nothing_stored(home) -> None:
    assert image_rows(home) == []
    assert store_files(home) == [], store_files(home)
