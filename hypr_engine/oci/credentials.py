"""Registry credentials: what `hypr login` stores, and what Docker's config already holds.

HYPR keeps its own logins in `<data dir>/auth.json` (mode 0600, Docker's config.json
format: `{"auths": {"HOST": {"auth": base64("user:password")}}}`), so whoever runs the
engine (hyprd or an embedded `hypr`) reads the same file. When HYPR has no login for a
registry, `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) is read as well: its
plain `auths` entries, and a `credsStore`/`credHelpers` helper
(`docker-credential-NAME get`) when one is configured and installed.

Keys are registry hosts as references name them (`docker.io`, `127.0.0.1:5000`); Docker's
historical key for Docker Hub, `https://index.docker.io/v1/`, is read as `docker.io`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hypr_engine.errors import InvalidArgument

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io")
HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password by accident
        return f"Credentials(username={self.username!r}, password=***)"


def normalize_server(server: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `http://host:5000/` -> `host:5000`."""
    text = server.strip()
    if not text:
        raise InvalidArgument("registry server is empty")
    if text in DOCKER_HUB_KEYS:
        return "docker.io"
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    host = text.split("/", 1)[0]
    if host in DOCKER_HUB_KEYS:
        return "docker.io"
    if not host or any(c.isspace() for c in host):
        raise InvalidArgument(f"invalid registry server {server!r}")
    return host


def _decode_auth(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, password) if sep else None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    return None


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


class CredentialStore:
    """`hypr login`'s file, with Docker's config as a read-only fallback."""

    def __init__(self, path: Path, docker_config: Path | None = None) -> None:
        self.path = Path(path)
        if docker_config is None:
            base = os.environ.get("DOCKER_CONFIG")
            docker_config = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
        self.docker_config = docker_config

    def get(self, server: str) -> Credentials | None:
        """Credentials for a registry host: HYPR's own login first, then Docker's config."""
        host = normalize_server(server)
        own = self._auths(_read_json(self.path))
        if host in own:
            return own[host]
        docker = _read_json(self.docker_config)
        found = self._auths(docker).get(host)
        return found or self._from_helper(docker, host)

    def save(self, server: str, creds: Credentials) -> None:
        """Store a login, replacing the file atomically; the file is 0600 from the start."""
        host = normalize_server(server)
        data = _read_json(self.path)
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            data["auths"] = auths = {}
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        auths[host] = {"auth": token}
        self._write(data)

    def remove(self, server: str) -> bool:
        """Forget a login; False when there was none."""
        host = normalize_server(server)
        data = _read_json(self.path)
        auths = data.get("auths")
        if not isinstance(auths, dict) or host not in auths:
            return False
        del auths[host]
        self._write(data)
        return True

    @staticmethod
    def _auths(config: dict) -> dict[str, Credentials]:
        out: dict[str, Credentials] = {}
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return out
        for key, entry in auths.items():
            try:
                host = normalize_server(str(key))
            except InvalidArgument:
                continue
            creds = _decode_auth(entry)
            if creds is not None:
                out[host] = creds
        return out

    @staticmethod
    def _from_helper(config: dict, host: str) -> Credentials | None:
        """Ask Docker's credential helper (`docker-credential-NAME get`), if one is set and installed."""
        helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
        name = helpers.get(host) or (helpers.get("index.docker.io") if host == "docker.io" else None)
        name = name or config.get("credsStore")
        if not isinstance(name, str) or not name:
            return None
        program = shutil.which(f"docker-credential-{name}")
        if program is None:
            return None
        server = "https://index.docker.io/v1/" if host == "docker.io" else host
        try:
            out = subprocess.run([program, "get"], input=server.encode(), capture_output=True,
                                 timeout=HELPER_TIMEOUT, check=True).stdout
            obj = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        if isinstance(obj, dict) and isinstance(obj.get("Username"), str) and isinstance(obj.get("Secret"), str):
            return Credentials(obj["Username"], obj["Secret"])
        return None

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
