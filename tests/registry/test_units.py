"""Pure logic of the registry client (challenges, platforms, credentials, endpoints), and
a disk that fills mid-pull (ENOSPC from the store's write path, against a real registry)."""

from __future__ import annotations

import base64
import errno
import json
import stat

import pytest

from hypr_engine.errors import InvalidArgument, Unavailable
from hypr_engine.oci.credentials import Credentials, CredentialStore, normalize_server
from hypr_engine.oci.descriptor import OCI_MANIFEST, Descriptor
from hypr_engine.oci.registry.auth import parse_challenges
from hypr_engine.oci.registry.config import RegistryConfig
from hypr_engine.oci.registry.pull import choose_entry, parse_platform


def test_parse_challenges():
    (bearer,) = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                 'scope="repository:library/busybox:pull"')
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/busybox:pull"}
    basic, token = parse_challenges('Basic realm="Registry Realm", Bearer realm="http://x/t",service=s')
    assert (basic.scheme, basic.params) == ("basic", {"realm": "Registry Realm"})
    assert (token.scheme, token.params) == ("bearer", {"realm": "http://x/t", "service": "s"})
    (escaped,) = parse_challenges(r'Bearer realm="a\"b",error="insufficient_scope"')
    assert escaped.params["realm"] == 'a"b' and escaped.params["error"] == "insufficient_scope"


def test_parse_platform():
    assert str(parse_platform("linux/arm64/v8")[0]) == "linux/arm64/v8"
    assert str(parse_platform("arm64")[0]) == "linux/arm64"
    assert str(parse_platform("linux/x86_64")[0]) == "linux/amd64"
    assert parse_platform(None) == (parse_platform("linux/amd64")[0], False)
    for bad in ("linux/", "/amd64", "a/b/c/d", "plan9"):
        with pytest.raises(InvalidArgument, match="invalid platform"):
            parse_platform(bad)


def _entry(arch: str, variant: str | None = None, os_: str = "linux") -> Descriptor:
    plat = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
    return Descriptor(OCI_MANIFEST, "sha256:" + (arch + (variant or "")).encode().hex().ljust(64, "0")[:64], 1,
                      platform=plat)


def test_choose_entry_matches_os_arch_and_variant():
    entries = [_entry("arm", "v6"), _entry("arm", "v7"), _entry("arm64", "v8"), _entry("amd64"),
               _entry("unknown", os_="unknown")]
    assert choose_entry(entries, parse_platform("linux/arm/v7")[0]).platform["variant"] == "v7"
    assert choose_entry(entries, parse_platform("linux/arm64")[0]).platform["architecture"] == "arm64"
    assert choose_entry(entries, parse_platform("linux/arm64/v8")[0]).platform["variant"] == "v8"
    assert choose_entry(entries, parse_platform("linux/amd64")[0]).platform["architecture"] == "amd64"
    assert choose_entry(entries, parse_platform("linux/s390x")[0]) is None
    assert choose_entry(entries, parse_platform("windows/amd64")[0]) is None


def test_credential_store_file_mode_docker_config_and_hub_aliases(tmp_path):
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    hub = base64.b64encode(b"hubuser:hubpass").decode()
    docker.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": hub},
                                            "http://reg.example:5000/v2/": {"username": "u", "password": "p"}}}))
    store = CredentialStore(tmp_path / "data" / "auth.json", docker)
    assert store.get("docker.io") == Credentials("hubuser", "hubpass")
    assert store.get("reg.example:5000") == Credentials("u", "p")
    assert store.get("other:1") is None

    store.save("reg.example:5000", Credentials("mine", "secret:with:colons"))
    assert stat.S_IMODE((tmp_path / "data" / "auth.json").stat().st_mode) == 0o600
    assert store.get("reg.example:5000") == Credentials("mine", "secret:with:colons")   # HYPR's own first
    assert "secret" not in repr(store.get("reg.example:5000"))
    assert store.remove("reg.example:5000") and not store.remove("reg.example:5000")
    assert store.get("reg.example:5000") == Credentials("u", "p")

    assert normalize_server("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    with pytest.raises(InvalidArgument):
        normalize_server("  ")


def test_endpoints_plain_http_for_loopback_tls_elsewhere_mirrors_first(tmp_path, monkeypatch):
    monkeypatch.delenv("HYPR_INSECURE_REGISTRIES", raising=False)
    monkeypatch.delenv("HYPR_REGISTRY_MIRRORS", raising=False)
    config = RegistryConfig.load(tmp_path)
    assert [e.base_url for e in config.endpoints("127.0.0.1:5000")] == ["http://127.0.0.1:5000"]
    assert [e.base_url for e in config.endpoints("localhost:5000")] == ["http://localhost:5000"]
    assert [e.base_url for e in config.endpoints("docker.io")] == ["https://registry-1.docker.io"]
    assert [e.base_url for e in config.endpoints("reg.lan:5000")] == ["https://reg.lan:5000"]

    (tmp_path / "registries.json").write_text(json.dumps({
        "insecure": ["reg.lan:5000"], "mirrors": {"docker.io": ["http://127.0.0.1:5001", "mirror.lan"]},
        "ca": {"mirror.lan": "/etc/ca.pem"}}))
    config = RegistryConfig.load(tmp_path)
    assert [e.base_url for e in config.endpoints("reg.lan:5000")] == ["http://reg.lan:5000"]
    pulls = config.endpoints("docker.io")
    assert [e.base_url for e in pulls] == ["http://127.0.0.1:5001", "https://mirror.lan",
                                           "https://registry-1.docker.io"]
    assert pulls[1].ca_file == "/etc/ca.pem" and pulls[0].mirror and not pulls[2].mirror
    assert [e.base_url for e in config.endpoints("docker.io", for_push=True)] == ["https://registry-1.docker.io"]

    (tmp_path / "registries.json").write_text('{"insecure": "not a list"}')
    with pytest.raises(InvalidArgument, match="'insecure' must be a list"):
        RegistryConfig.load(tmp_path)


async def test_a_disk_that_fills_mid_pull_stores_nothing(tmp_path, registry, images, monkeypatch):
    """ENOSPC from the store's write path after the first MiB: one clear error, no blob, no temp file, no row."""
    from hypr_engine.engine import Engine
    from hypr_engine.oci.content import BlobWriter
    from hypr_engine.paths import Layout

    images.push(f"{registry.host}/full:1", padding=3 << 20)     # a layer of a few MiB
    real_write = BlobWriter.write
    written = {"bytes": 0}

    def filling_write(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 1 << 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(BlobWriter, "write", filling_write)
    engine = await Engine.open(Layout(tmp_path / "data", tmp_path / "run"))
    try:
        with pytest.raises(Unavailable, match="no space left on device while storing blob sha256:"):
            async for _ in engine.registry.pull(f"{registry.host}/full:1"):
                pass
        assert await engine.images.list() == []
        assert list((tmp_path / "data" / "blobs" / "sha256").iterdir()) == []
    finally:
        await engine.close()
