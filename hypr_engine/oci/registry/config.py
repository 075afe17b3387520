"""Which URL a registry host is reached at: plain HTTP or TLS, mirrors, extra CAs.

Defaults follow Docker's: every registry speaks HTTPS with the system's CAs, except the
loopback ones (`localhost:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`), which are plain HTTP
(Docker treats 127.0.0.0/8 as insecure by default). Anything else is configured in
`<data dir>/registries.json`:

    {
      "insecure": ["registry.lan:5000"],                  plain HTTP
      "mirrors": {"docker.io": ["http://127.0.0.1:5001"]},  tried first for pulls
      "ca": {"registry.lan:5443": "/etc/ssl/lan-ca.pem"}    extra CA bundle per host
    }

or, for one process, in the environment: `HYPR_INSECURE_REGISTRIES=host:port,...`
and `HYPR_REGISTRY_MIRRORS=docker.io=http://127.0.0.1:5001,...`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.errors import InvalidArgument

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Docker Hub's API lives on another host than the one references name.
API_HOSTS = {"docker.io": "registry-1.docker.io"}


@dataclass(frozen=True)
class Endpoint:
    """One base URL to talk to for a registry host (the host itself or a mirror)."""

    host: str            # the registry the reference names (credentials and tokens key on it)
    base_url: str        # e.g. https://registry-1.docker.io or http://127.0.0.1:5000
    ca_file: str | None = None
    mirror: bool = False


@dataclass
class RegistryConfig:
    insecure: set[str] = field(default_factory=set)
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    ca_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path | None) -> "RegistryConfig":
        """`registries.json` of the data dir (if any) plus the environment."""
        config = cls()
        if data_dir is not None:
            path = Path(data_dir) / "registries.json"
            if path.exists():
                config._merge_file(path)
        for host in filter(None, (h.strip() for h in os.environ.get("HYPR_INSECURE_REGISTRIES", "").split(","))):
            config.insecure.add(host)
        for item in filter(None, (m.strip() for m in os.environ.get("HYPR_REGISTRY_MIRRORS", "").split(","))):
            host, sep, url = item.partition("=")
            if not sep or not url:
                raise InvalidArgument(f"invalid HYPR_REGISTRY_MIRRORS entry {item!r}: use HOST=URL")
            config.mirrors.setdefault(host.strip(), []).append(url.strip())
        return config

    def _merge_file(self, path: Path) -> None:
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read {path}: {exc}") from None
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{path} must hold a JSON object")
        insecure = obj.get("insecure", [])
        mirrors = obj.get("mirrors", {})
        cas = obj.get("ca", {})
        if not (isinstance(insecure, list) and all(isinstance(h, str) for h in insecure)):
            raise InvalidArgument(f"{path}: 'insecure' must be a list of hosts")
        if not (isinstance(mirrors, dict) and all(isinstance(v, list) and all(isinstance(u, str) for u in v)
                                                  for v in mirrors.values())):
            raise InvalidArgument(f"{path}: 'mirrors' must map a host to a list of URLs")
        if not (isinstance(cas, dict) and all(isinstance(v, str) for v in cas.values())):
            raise InvalidArgument(f"{path}: 'ca' must map a host to a CA bundle path")
        self.insecure.update(insecure)
        for host, urls in mirrors.items():
            self.mirrors.setdefault(host, []).extend(urls)
        self.ca_files.update(cas)

    def is_insecure(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return host in self.insecure or name in LOOPBACK_HOSTS

    def _url_for(self, host: str) -> str:
        scheme = "http" if self.is_insecure(host) else "https"
        return f"{scheme}://{API_HOSTS.get(host, host)}"

    def endpoints(self, host: str, *, for_push: bool = False) -> list[Endpoint]:
        """Where to reach `host`, in the order to try: its mirrors (pulls only), then itself."""
        out: list[Endpoint] = []
        if not for_push:
            for url in self.mirrors.get(host, []):
                if "://" not in url:
                    url = self._url_for(url)
                mirror_host = url.split("://", 1)[1].split("/", 1)[0]
                out.append(Endpoint(host, url.rstrip("/"), self.ca_files.get(mirror_host), mirror=True))
        out.append(Endpoint(host, self._url_for(host), self.ca_files.get(host)))
        return out
