"""`hypr pull` against real docker-registry processes: formats, platforms, auth, faults."""

from __future__ import annotations

import stat
import subprocess
import time

import pytest

from tests.registry.conftest import (
    PASSWORD,
    USER,
    assert_nothing_stored,
    assert_one_line_error,
    image_rows,
    store_files,
)
from tests.registry.images import write_multi_arch
from tests.registry.peers import skopeo_copy


def _image(home, ref_familiar: str) -> dict:
    rows = [r for r in image_rows(home) if ref_familiar in r["Tags"]]
    assert len(rows) == 1, image_rows(home)
    return rows[0]


@pytest.mark.parametrize("fmt,compression", [("v2s2", "gzip"), ("oci", "gzip"), ("oci", "zstd"), ("oci", "none")])
def test_pull_docker_schema2_and_oci_images_with_each_compression(hypr_home, registry, images, fmt, compression):
    written = images.push(f"{registry.host}/tests/app:{compression}", fmt=fmt, compression=compression)
    proc = hypr_home.run("pull", f"{registry.host}/tests/app:{compression}", check=True)
    out = proc.stdout.decode()
    assert f"{compression}: Pulling from tests/app" in out
    assert out.count("Pull complete") == 2
    assert out.strip().splitlines()[-1] == f"{registry.host}/tests/app:{compression}"
    row = _image(hypr_home, f"{registry.host}/tests/app:{compression}")
    assert row["Digest"] == written.config_digest     # the config digest is the image ID: same image
    # Every blob is in the store, nothing else (no temp file).
    stored = set(store_files(hypr_home))
    blobs = {written.config_digest, written.manifest_digest, *(d.digest for d in written.layers)}
    if fmt == "oci":   # skopeo rewrites a v2s2 manifest; an OCI one arrives as written, layers as compressed
        assert stored == {d.split(":")[1] for d in blobs}
    # A second pull finds everything there and downloads nothing.
    again = hypr_home.out("pull", f"{registry.host}/tests/app:{compression}")
    assert again.count("Already exists") == 2 and "Pull complete" not in again
    assert "Status: Image is up to date for" in again and "Status: Downloaded newer image" in out


def test_pull_quiet_prints_only_the_reference(hypr_home, registry, images):
    images.push(f"{registry.host}/q:1")
    assert hypr_home.out("pull", "-q", f"{registry.host}/q:1") == f"{registry.host}/q:1\n"


def test_pull_by_digest(hypr_home, registry, images):
    written = images.push(f"{registry.host}/bydigest:1", fmt="oci")
    ref = f"{registry.host}/bydigest@{written.manifest_digest}"
    hypr_home.run("pull", ref, check=True)
    assert _image(hypr_home, ref)["Digest"] == written.config_digest


def test_multi_platform_index_host_default_and_platform_flag(hypr_home, registry, tmp_path):
    layout = tmp_path / "multi"
    parts = write_multi_arch(layout)
    skopeo_copy(f"oci:{layout}:multi", f"docker://{registry.host}/multi:1", multi_arch=True)
    ref = f"{registry.host}/multi:1"

    hypr_home.run("pull", ref, check=True)
    assert _image(hypr_home, ref)["Digest"] == parts["amd64"].config_digest   # this host is linux/amd64

    hypr_home.run("pull", "--platform", "linux/arm64/v8", ref, check=True)
    assert _image(hypr_home, ref)["Digest"] == parts["arm64"].config_digest

    proc = hypr_home.run("pull", "--platform", "linux/s390x", f"{registry.host}/multi:1")
    assert_one_line_error(proc, "no matching manifest for linux/s390x", "linux/amd64", "linux/arm64/v8")
    proc = hypr_home.run("pull", "--platform", "plan9/", ref)
    assert_one_line_error(proc, "invalid platform 'plan9/'")
    proc = hypr_home.run("pull", "--platform", "arm64", ref)     # one word: an architecture, on linux
    assert proc.returncode == 0 and _image(hypr_home, ref)["Digest"] == parts["arm64"].config_digest


def test_platform_of_a_single_manifest_is_checked(hypr_home, registry, images):
    images.push(f"{registry.host}/single:1", arch="amd64")
    proc = hypr_home.run("pull", "--platform", "linux/arm64", f"{registry.host}/single:1")
    assert_one_line_error(proc, "does not match the specified platform", "wanted linux/arm64", "linux/amd64")
    assert_nothing_stored(hypr_home)


# --- authentication -------------------------------------------------------------------------------

def test_basic_auth_login_pull_logout(hypr_home, basic_registry, images):
    ref = f"{basic_registry.host}/private/app:1"
    written = images.push(ref, creds=(USER, PASSWORD))

    anonymous = hypr_home.run("pull", ref)
    assert_one_line_error(anonymous, f"{basic_registry.host} requires authentication", "hypr login")

    wrong = hypr_home.run("login", "-u", USER, "--password-stdin", basic_registry.host, input=b"nope\n")
    assert_one_line_error(wrong, f"login to {basic_registry.host} failed", "incorrect username or password")
    assert not (hypr_home.data / "auth.json").exists()

    ok = hypr_home.run("login", "-u", USER, "--password-stdin", basic_registry.host, input=PASSWORD.encode() + b"\n")
    assert ok.returncode == 0 and ok.stdout.decode() == "Login Succeeded\n", ok.stderr
    auth = hypr_home.data / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert PASSWORD not in auth.read_text()           # base64, as Docker stores it; never the raw line

    hypr_home.run("pull", ref, check=True)
    assert _image(hypr_home, ref)["Digest"] == written.config_digest

    assert hypr_home.out("logout", basic_registry.host) == f"Removing login credentials for {basic_registry.host}\n"
    hypr_home.run("rmi", ref, check=True)
    assert_one_line_error(hypr_home.run("pull", ref), "requires authentication")


def test_credentials_from_docker_config(hypr_home, basic_registry, images, tmp_path):
    import base64
    import json

    ref = f"{basic_registry.host}/private/app:1"
    images.push(ref, creds=(USER, PASSWORD))
    docker_dir = tmp_path / "docker-config"
    docker_dir.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {f"http://{basic_registry.host}": {"auth": token}}}))
    hypr_home.env["DOCKER_CONFIG"] = str(docker_dir)
    hypr_home.run("pull", ref, check=True)


def test_bearer_token_auth(hypr_home, token_registry, images):
    issuer = token_registry.issuer
    ref = f"{token_registry.host}/team/app:1"
    written = images.push(ref, creds=(USER, PASSWORD), fmt="oci")

    # Anonymous pull: the issuer hands out pull-only tokens for the scope asked.
    hypr_home.run("pull", ref, check=True)
    assert _image(hypr_home, ref)["Digest"] == written.config_digest
    assert any(r["scope"] == ["repository:team/app:pull"] and r["ok"] and not r["account"] for r in issuer.requests)

    wrong = hypr_home.run("login", "-u", USER, "--password-stdin", token_registry.host, input=b"wrong\n")
    assert_one_line_error(wrong, "incorrect username or password")

    # Push needs the user's token.
    denied = hypr_home.run("push", ref)
    assert_one_line_error(denied, "denied")
    hypr_home.run("login", "-u", USER, "--password-stdin", token_registry.host, input=PASSWORD.encode(), check=True)
    out = hypr_home.out("push", ref)
    assert out.count("Layer already exists") == 3, out     # two layers and the config: HEAD said so
    assert f"1: digest: {written.manifest_digest}" in out


# --- integrity and faults ---------------------------------------------------------------------------

def test_tampered_blob_fails_with_a_digest_error_and_stores_nothing(hypr_home, registry, images):
    written = images.push(f"{registry.host}/tampered:1")
    layer = written.layers[1]
    data = registry.blob_data(layer.digest)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                      # same size, one byte different
    data.write_bytes(bytes(raw))
    proc = hypr_home.run("pull", f"{registry.host}/tampered:1")
    assert_one_line_error(proc, "digest mismatch", layer.digest)
    assert_nothing_stored(hypr_home)


def test_a_cut_mid_layer_resumes_with_a_range_request(hypr_home, registry, images, proxy_for):
    written = images.push(f"{registry.host}/cut:1")
    proxy = proxy_for(registry)
    big = max(written.layers, key=lambda d: d.size)
    proxy.cut(big.digest, after=big.size // 3)
    hypr_home.run("pull", f"{proxy.host}/cut:1", check=True)
    assert _image(hypr_home, f"{proxy.host}/cut:1")["Digest"] == written.config_digest
    gets = proxy.requests_for(f"/blobs/{big.digest}")
    assert len(gets) == 2, gets
    assert gets[0].range is None
    assert gets[1].range is not None and gets[1].range.startswith("bytes=")
    start = int(gets[1].range.split("=")[1].rstrip("-"))
    assert 0 < start <= big.size // 3


def test_a_server_that_ignores_range_still_resumes_correctly(hypr_home, registry, images, proxy_for):
    """After a cut, a 200 with the whole blob (Range ignored): the bytes already held are skipped."""
    written = images.push(f"{registry.host}/norange:1")
    proxy = proxy_for(registry)
    proxy.strip_range = True
    big = max(written.layers, key=lambda d: d.size)
    proxy.cut(big.digest, after=big.size // 2)
    hypr_home.run("pull", f"{proxy.host}/norange:1", check=True)
    assert _image(hypr_home, f"{proxy.host}/norange:1")["Digest"] == written.config_digest
    gets = proxy.requests_for(f"/blobs/{big.digest}")
    assert len(gets) == 2 and gets[1].range is not None, gets


@pytest.mark.parametrize("daemon", [False, True], ids=["two-processes", "one-hyprd"])
def test_two_concurrent_pulls_fetch_each_blob_once(hypr_home, hyprd_factory, registry, images, proxy_for, daemon):
    """Two embedded engines (separate processes on one data dir) or two calls to one hyprd."""
    if daemon:
        hyprd_factory.start()
    written = images.push(f"{registry.host}/shared:1")
    proxy = proxy_for(registry)
    proxy.delay = 0.05                  # per 64 KiB: each pull takes over a second, so the two overlap
    ref = f"{proxy.host}/shared:1"
    procs = [hypr_home.popen("pull", ref, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # They did overlap: one waited on the other's blob locks, then found the blobs stored.
    assert any(b"Waiting for another pull" in out for out, _ in outs), outs
    for desc in [*written.layers]:
        assert len(proxy.requests_for(f"/blobs/{desc.digest}")) == 1, proxy.log
    assert len(proxy.requests_for(f"/blobs/{written.config_digest}")) == 1, proxy.log
    assert len(proxy.requests_for("/manifests/")) == 2        # each pull resolved the tag itself
    assert _image(hypr_home, ref)["Digest"] == written.config_digest


def test_ctrl_c_mid_pull_leaves_nothing(hypr_home, registry, images, proxy_for):
    import signal

    images.push(f"{registry.host}/interrupted:1", padding=4 << 20)
    proxy = proxy_for(registry)
    proxy.delay = 0.05                  # about 4 s for the big layer
    proc = hypr_home.popen("pull", f"{proxy.host}/interrupted:1", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not proxy.requests_for("/blobs/") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert_nothing_stored(hypr_home)


# --- bad input -----------------------------------------------------------------------------------------

def test_bad_references_and_unreachable_registries(hypr_home, registry, images):
    images.push(f"{registry.host}/there:1")
    cases = [
        (("pull", "UPPER/Case"), "invalid reference format", "must be lowercase"),
        (("pull", "bad::ref"), "invalid reference format"),
        (("pull", f"{registry.host}/there:nope"), "not found", "there:nope"),
        (("pull", f"{registry.host}/nothere:1"), "not found"),
        (("pull", "registry.hypr-test.invalid/x:1"), "cannot resolve the registry host registry.hypr-test.invalid"),
        (("pull", "127.0.0.1:1/x:1"), "connection refused"),
    ]
    for args, *needles in cases:
        assert_one_line_error(hypr_home.run(*args), *needles)
    assert_nothing_stored(hypr_home)


def test_http_and_tls_errors(hypr_home, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.registry.peers import Registry

    class Broken(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            body = b'{"errors":[{"code":"UNKNOWN","message":"storage backend exploded"}]}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proc = hypr_home.run("pull", f"127.0.0.1:{server.server_address[1]}/x:1")
        assert_one_line_error(proc, "answered HTTP 500", "storage backend exploded")
    finally:
        server.shutdown()
        server.server_close()

    # TLS: a registry with a self-signed certificate on 127.0.0.2 (not a plain-HTTP default).
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.2", "-addext", "subjectAltName=IP:127.0.0.2"],
                   check=True, capture_output=True, timeout=60)
    tls = Registry(tmp_path / "tls-registry", tls=(cert, key), bind="127.0.0.2")
    try:
        proc = hypr_home.run("pull", f"{tls.host}/x:1")
        assert_one_line_error(proc, f"TLS error talking to {tls.host}", "CERTIFICATE_VERIFY_FAILED")
        # With its CA configured, the same registry is reachable (and says the tag is unknown).
        (hypr_home.data / "registries.json").write_text(f'{{"ca": {{"{tls.host}": "{cert}"}}}}')
        assert_one_line_error(hypr_home.run("pull", f"{tls.host}/x:1"), "not found")
    finally:
        tls.stop()
    assert_nothing_stored(hypr_home)


def test_unknown_media_type_is_refused(hypr_home, registry):
    import hashlib
    import json

    import httpx

    base = f"http://{registry.host}"
    blobs = {}
    for data in (b'{"kind":"not an image"}', b"some artifact bytes"):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = httpx.post(f"{base}/v2/art/blobs/uploads/").headers["Location"]
        url = httpx.URL(loc if loc.startswith("http") else base + loc).copy_merge_params({"digest": digest})
        assert httpx.put(url, content=data).status_code == 201
        blobs[data] = digest
    config, layer = list(blobs.items())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[1],
                                      "size": len(config[0])},
                           "layers": [{"mediaType": "application/vnd.example.artifact.v1", "digest": layer[1],
                                       "size": len(layer[0])}]}).encode()
    put = httpx.put(f"{base}/v2/art/manifests/1", content=manifest,
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert put.status_code == 201, put.text
    proc = hypr_home.run("pull", f"{registry.host}/art:1")
    assert_one_line_error(proc, "unsupported layer media type 'application/vnd.example.artifact.v1'")
    assert_nothing_stored(hypr_home)


def test_mirror_is_tried_first_and_the_registry_after_it(hypr_home, registry, images, proxy_for, tmp_path):
    from tests.registry.peers import Registry

    images.push(f"{registry.host}/mirrored:1")
    proxy = proxy_for(registry)
    empty = Registry(tmp_path / "empty-mirror")
    try:
        # The first mirror lacks the image, the second (a proxy of the registry) has it.
        hypr_home.env["HYPR_REGISTRY_MIRRORS"] = f"{registry.host}=http://{empty.host},{registry.host}=http://{proxy.host}"
        hypr_home.run("pull", f"{registry.host}/mirrored:1", check=True)
        assert proxy.requests_for("/manifests/1"), "the mirror was not used"
    finally:
        empty.stop()


def test_login_prompt_needs_a_terminal(hypr_home, registry):
    proc = hypr_home.run("login", "-u", USER, registry.host, stdin=subprocess.DEVNULL)
    assert_one_line_error(proc, "stdin is not a terminal")
