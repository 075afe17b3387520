"""Where HYPR keeps things.

- data dir (`HYPR_DATA_DIR`): the SQLite state, blobs, root filesystems, one
  directory per VM. Default /var/lib/hypr as root, else ~/.local/share/hypr.
- runtime dir (`HYPR_RUNTIME_DIR`): sockets only. Kept short because a Unix
  socket path is limited to 108 bytes. Default /run/hypr as root, else
  $XDG_RUNTIME_DIR/hypr, else /tmp/hypr-<uid>.
- cache dir (`XDG_CACHE_HOME`/hypr): what set-up builds once per machine (the
  guest kernel, kestrel's initramfs, the bundled busybox image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


def _is_root() -> bool:
    return os.geteuid() == 0


def default_data_dir() -> Path:
    if env := os.environ.get("HYPR_DATA_DIR"):
        return Path(env)
    if _is_root():
        return Path("/var/lib/hypr")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(base) / "hypr"


def default_runtime_dir() -> Path:
    if env := os.environ.get("HYPR_RUNTIME_DIR"):
        return Path(env)
    if _is_root():
        return Path("/run/hypr")
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "hypr"
    return Path(f"/tmp/hypr-{os.geteuid()}")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hypr"


@dataclass(frozen=True)
class Layout:
    """All paths of one data directory, derived in one place."""

    data: Path
    runtime: Path

    @classmethod
    def default(cls) -> "Layout":
        return cls(default_data_dir(), default_runtime_dir())

    @property
    def db(self) -> Path:
        return self.data / "hypr.db"

    @property
    def lock(self) -> Path:
        return self.data / "engine.lock"

    @property
    def blobs(self) -> Path:
        return self.data / "blobs"

    @property
    def rootfs_cache(self) -> Path:
        return self.data / "rootfs"

    @property
    def tmp(self) -> Path:
        return self.data / "tmp"

    def vm_dir(self, vm_id: str) -> Path:
        return self.data / "vms" / vm_id

    def vm_runtime_dir(self, vm_id: str) -> Path:
        # Sockets live here; 12 hex digits keep the path short (and are unique
        # enough: the full id is checked by the engine).
        return self.runtime / vm_id[:12]

    def ensure(self) -> None:
        for d in (self.data, self.blobs, self.rootfs_cache, self.tmp, self.data / "vms"):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = self.vm_runtime_dir("0" * 64) / "agent.sock"
        if len(str(probe)) > SOCKET_PATH_MAX:
            from hypr_engine.errors import InvalidArgument

            raise InvalidArgument(
                f"runtime directory {self.runtime} is too long for Unix socket paths "
                f"(at most {SOCKET_PATH_MAX - len(str(probe)) + len(str(self.runtime))} characters); "
                "set HYPR_RUNTIME_DIR to a shorter path"
            )
