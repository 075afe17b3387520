"""Plain data the engine hands to front ends (and, later, over gRPC).

Front ends see these and nothing of the engine's internals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class VmSpec:
    """What the user asked for with `hypr run` / `create`."""

    image: str
    name: str | None = None
    command: list[str] | None = None       # overrides the image's CMD
    entrypoint: list[str] | None = None    # overrides ENTRYPOINT; [] clears it
    env: list[str] = field(default_factory=list)   # KEY=VALUE, already validated
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    cpus: int = 1
    memory_mb: int = 256
    auto_remove: bool = False
    interactive: bool = False              # keep stdin open (-i)
    tty: bool = False                      # allocate a terminal (-t)
    stop_signal: int | str | None = None   # a name or number; the engine validates it
    stop_timeout: int | None = None
    restart: str = "no"                    # no | on-failure[:N] | always | unless-stopped
    labels: dict[str, str] = field(default_factory=dict)
    log_opts: dict[str, Any] = field(default_factory=dict)   # max-size, max-file
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_retries: int | None = None
    health_start_period: str | None = None
    no_healthcheck: bool = False
    # -v / --mount / --tmpfs as mount records (hypr_engine/mounts.py); bind sources absolute
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # Networks (hypr_engine/net/): each {"name": NAME, "aliases": [...], "ip": IP or None}, in
    # interface order; empty: the `default` network; [{"name": "none"}]: no NIC, only lo.
    networks: list[dict[str, Any]] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)   # -p values as given ([IP:][HOST:]GUEST[/PROTO])
    publish_all: bool = False                          # -P: every EXPOSEd port on a random host port

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VmSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class VmInfo:
    id: str
    name: str
    image: str
    image_id: str
    command: list[str]
    state: str
    exit_code: int | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    auto_remove: bool
    spec: VmSpec
    stages: dict[str, float] = field(default_factory=dict)
    restart_count: int = 0
    health: dict[str, Any] | None = None   # {Status, FailingStreak, Log}; None without a check
    health_config: dict[str, Any] | None = None   # the check kestrel runs (argv, interval_ms, ...)
    network_settings: dict[str, Any] = field(default_factory=dict)   # Docker's NetworkSettings: Networks, Ports

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"] = self.spec.to_json()
        return data


@dataclass
class ImageInfo:
    id: str
    tags: list[str]
    size: int
    created: str | None
    added_at: float
    config: dict[str, Any]
    layers: list[dict[str, Any]]
    manifest_digest: str = ""            # the manifest as stored (synthesised for docker-archives)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExecOptions:
    argv: list[str]
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    interactive: bool = False
    rows: int = 24
    cols: int = 80


@dataclass
class RunProgress:
    """One step of `run`/`create` (HyprClient.run_vm): image_resolved, created, rootfs_ready, started."""

    stage: str
    time: float
    message: str = ""
    vm: VmInfo | None = None       # set from `created` on


@dataclass
class VmDetails:
    """A VM with where it lives at run time (HyprClient.inspect_vm)."""

    vm: VmInfo
    supervisor_pid: int | None
    vmm_pid: int | None
    vm_dir: str
    log_path: str
    control_socket: str


# --- image store: history, prune and disk usage (hypr_engine/images.py) ---------------------

@dataclass
class ImageHistoryEntry:
    """One entry of an image config's history, newest first, as `docker history` shows it."""

    id: str                 # the image ID on the newest entry, "<missing>" on the others (Docker's way)
    created: str | None     # RFC 3339
    created_by: str
    size: int               # bytes of the layer blob this entry made (0 for an empty layer)
    comment: str
    empty_layer: bool
    layer_digest: str       # "" for an empty layer


@dataclass
class ImagePruneReport:
    """What `rmi`/`image prune`/`system prune` took away."""

    deleted: list[str]      # image IDs removed
    untagged: list[str]     # familiar references removed with them
    bytes_reclaimed: int    # blobs and cached root filesystems deleted


@dataclass
class ImageDiskUsage:
    """Space the images take, for `system df`."""

    images: int             # image records
    active: int             # of them, used by at least one VM
    blobs_bytes: int        # the content store (layers, configs, manifests)
    rootfs_bytes: int       # the squashfs cache, one file per layer stack
    reclaimable_bytes: int  # what `image prune -a` would free now


# --- volumes (hypr_engine/volumes.py) ---------------------------------------------------------

@dataclass
class VolumeInfo:
    """A volume: a sparse ext4 disk image the VMs that mount it see as a directory."""

    name: str
    driver: str
    mountpoint: str            # the disk image on the host
    labels: dict[str, str]
    options: dict[str, str]
    size_bytes: int            # the file system's size (the image's apparent size)
    allocated_bytes: int       # host space the sparse image really takes (st_blocks)
    anonymous: bool
    created_at: float
    used_by: list[str] = field(default_factory=list)   # names of the VMs whose spec mounts it
# --- networks (hypr_engine/net/networks.py) ---------------------------------------------

@dataclass
class EndpointInfo:
    """A VM's attachment to a network: its address there and the extra names it answers to."""

    vm_id: str
    vm_name: str
    ip: str
    mac: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class NetworkInfo:
    id: str
    name: str
    driver: str                    # gvproxy (the default network) | bridge (user networks)
    subnet: str
    gateway: str
    internal: bool
    labels: dict[str, str]
    created_at: float
    endpoints: list[EndpointInfo] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
