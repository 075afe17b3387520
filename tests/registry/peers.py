"""Real peers for the registry tests: docker-registry processes, a bearer-token issuer,
a fault-injecting HTTP proxy, and images pushed with skopeo.

- `Registry`: `docker-registry serve CONFIG.yml` on 127.0.0.1:PORT with its storage in a
  temp dir; anonymous, htpasswd (bcrypt from `htpasswd -B`) or token auth.
- `TokenIssuer`: the token server of distribution's token auth: checks basic auth and
  answers a JWT (RS256, signed by `openssl dgst`, the certificate in the `x5c` header;
  the registry trusts it through `rootcertbundle`).
- `FaultProxy`: forwards each request to the registry (one request per connection), logs
  method, path and Range, and can cut the first answer for a chosen path after N bytes
  or slow every answer down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

READY_TIMEOUT = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, proc: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


# --- docker-registry ----------------------------------------------------------------------------

class Registry:
    """One docker-registry process; `host` is what references name it by."""

    def __init__(self, workdir: Path, *, auth: dict | None = None, tls: tuple[Path, Path] | None = None,
                 bind: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.port = free_port(bind)
        self.host = f"{bind}:{self.port}"
        http: dict = {"addr": self.host, "secret": "hypr-test-secret"}
        if tls:
            http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": http,
        }
        if auth:
            config["auth"] = auth
        self.config_path = self.workdir / "config.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = open(self.workdir / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            _wait_port(bind, self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def blob_data(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    line = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, check=True,
                          timeout=30).stdout.decode().strip()
    path.write_text(line + "\n")
    return path


# --- the token issuer ----------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """A token server for distribution's `auth.token`, with one user."""

    workdir: Path
    user: str = "alice"
    password: str = "wonderland"
    service: str = "hypr-test-registry"
    issuer: str = "hypr-test-issuer"
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "issuer.key"
        self.cert = self.workdir / "issuer.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=hypr-test-issuer"],
                       check=True, capture_output=True, timeout=60)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True, timeout=30).stdout
        self._x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                issuer._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def registry_auth(self) -> dict:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert)}}

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(handler.path).query)
        header = handler.headers.get("Authorization", "")
        account = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != (self.user, self.password):
                self.requests.append({"scope": query.get("scope", []), "ok": False})
                handler.send_response(401)
                handler.send_header("Content-Type", "application/json")
                handler.end_headers()
                handler.wfile.write(b'{"details":"incorrect username or password"}')
                return
            account = user
        scopes = query.get("scope", [])
        self.requests.append({"scope": scopes, "ok": True, "account": account})
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository":
                # Anonymous users may pull; the user may also push.
                actions = [a for a in parts[2].split(",") if a == "pull" or account]
                access.append({"type": "repository", "name": parts[1], "actions": actions})
        token = self.sign({"iss": self.issuer, "sub": account, "aud": self.service, "exp": int(time.time()) + 300,
                           "nbf": int(time.time()) - 10, "iat": int(time.time()),
                           "jti": os.urandom(8).hex(), "access": access})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True, check=True, timeout=30).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# --- the fault-injecting proxy -------------------------------------------------------------------

@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None


class FaultProxy:
    """Forwards to `upstream` (host:port); `cut(path_part, after)` cuts the first matching answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.log: list[LoggedRequest] = []
        self._cuts: dict[str, int] = {}
        self.delay = 0.0            # seconds of sleep per 64 KiB forwarded (to make pulls overlap)
        self.strip_range = False    # act as a server that ignores Range (answers 200 with everything)
        self._lock = threading.Lock()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise TimeoutError("the proxy did not start")

    def cut(self, path_part: str, after: int) -> None:
        with self._lock:
            self._cuts[path_part] = after

    def requests_for(self, path_part: str, method: str = "GET") -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if path_part in r.path and r.method == method]

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        started.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if line]
            length = 0
            rng = None
            out_headers = []
            for line in headers:
                name, _, value = line.partition(":")
                lname = name.strip().lower()
                if lname == "content-length":
                    length = int(value.strip())
                if lname == "range":
                    rng = value.strip()
                if lname in ("connection", "keep-alive", "proxy-connection"):
                    continue
                if lname == "range" and self.strip_range:
                    continue
                out_headers.append(line)
            body = await reader.readexactly(length) if length else b""
            cut_after = None
            with self._lock:
                self.log.append(LoggedRequest(method, path, rng))
                for part, after in list(self._cuts.items()):
                    if part in path and method == "GET":
                        cut_after = after
                        del self._cuts[part]
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in out_headers) + \
                "Connection: close\r\n\r\n"
            up_writer.write(request.encode("latin-1") + body)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(response_head)
            sent = 0
            while True:
                chunk = await up_reader.read(65536)
                if not chunk:
                    break
                if cut_after is not None and sent + len(chunk) >= cut_after:
                    writer.write(chunk[: cut_after - sent])
                    await writer.drain()
                    break   # the cut: close both sides mid-body
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
                if self.delay:
                    await asyncio.sleep(self.delay)
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:        # connections still being served
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- images, written with oci/writer.py and pushed with skopeo ----------------------------------------

def skopeo_copy(source: str, dest: str, *, fmt: str | None = None, multi_arch: bool = False,
                creds: tuple[str, str] | None = None) -> None:
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--src-tls-verify=false"]
    if fmt:
        argv += ["--format", fmt]
    if multi_arch:
        argv += ["--multi-arch", "all"]
    if creds:
        argv += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    proc = subprocess.run([*argv, source, dest], capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"skopeo copy {source} {dest} failed: {proc.stderr.decode(errors='replace')}")


def manifest_digest_of(layout: Path, ref_name: str | None = None) -> str:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if ref_name is None or entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref_name:
            return entry["digest"]
    raise KeyError(ref_name)


_SAFE = re.compile(r"[^a-z0-9]+")


def http_push_layout(layout: Path, registry_host: str, repo: str, tag: str) -> None:
    """Upload an OCI layout's one image blob by blob, byte for byte (skopeo would compress
    uncompressed layers on the way; this keeps them as written)."""
    import httpx

    base = f"http://{registry_host}"
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    manifest = (layout / "blobs/sha256" / entry["digest"].split(":")[1]).read_bytes()
    parsed = json.loads(manifest)
    with httpx.Client(timeout=60) as http:
        for desc in [parsed["config"], *parsed["layers"]]:
            data = (layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes()
            loc = http.post(f"{base}/v2/{repo}/blobs/uploads/").headers["Location"]
            url = httpx.URL(loc if loc.startswith("http") else base + loc).copy_merge_params({"digest": desc["digest"]})
            put = http.put(url, content=data)
            assert put.status_code == 201, put.text
        put = http.put(f"{base}/v2/{repo}/manifests/{tag}", content=manifest,
                       headers={"Content-Type": entry["mediaType"]})
        assert put.status_code == 201, put.text
