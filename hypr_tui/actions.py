"""The action registry: every user action, defined once.

Each `Action` names its `hypr` subcommand, its arguments and help, the coroutine
in commands.py that performs it, and how the dashboard offers it (the key on a
selected VM or image, and whether it asks for confirmation). `cli.build_parser`
generates the subcommands from this list, and the dashboard generates its key
bindings and command palette from it, so an action cannot reach one front end
and not the other (tests/unit/test_actions.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(tuple(flags), options)


@dataclass(frozen=True)
class Action:
    name: str                     # subcommand, e.g. "stop"; grouped ones as "system info"
    help: str
    handler: str                  # "cmd_x" in hypr_tui.commands, or "module:cmd_x" in hypr_tui.module
    args: tuple[Arg, ...] = ()
    target: str | None = None     # "vm" | "image" | "network": what the dashboard's selection supplies
    key: str | None = None        # the dashboard's key for it on a selection
    destructive: bool = False     # the dashboard asks before doing it

    @property
    def words(self) -> list[str]:
        return self.name.split()


VM_CREATE_ARGS = (
    arg("--name", help="a name for the VM"),
    arg("--rm", action="store_true", help="remove the VM when it exits"),
    arg("-i", "--interactive", action="store_true", help="keep stdin open"),
    arg("-t", "--tty", action="store_true", help="allocate a terminal"),
    arg("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable"),
    arg("--env-file", action="append", default=[], help="read environment variables from a file"),
    arg("-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="set a label"),
    arg("-w", "--workdir", help="working directory inside the VM (absolute)"),
    arg("-u", "--user", help="user: name, uid, name:group or uid:gid"),
    arg("--entrypoint", help="override the image's ENTRYPOINT ('' clears it)"),
    arg("--hostname", help="the VM's hostname"),
    arg("--cpus", default="1", help="virtual CPUs (rounded up to whole CPUs)"),
    arg("-m", "--memory", default="256m", help="memory, e.g. 512m or 1g"),
    arg("--restart", default="no", help="no, on-failure[:N], always or unless-stopped"),
    arg("--stop-signal", help="signal that stops the workload (default: the image's, else SIGTERM)"),
    arg("--stop-timeout", type=int, help="seconds to wait after the stop signal before killing"),
    arg("--health-cmd", help="command to check health (run with /bin/sh -c inside the VM)"),
    arg("--health-interval", help="time between checks (e.g. 30s)"),
    arg("--health-timeout", help="time a check may take (e.g. 30s)"),
    arg("--health-retries", type=int, help="consecutive failures that make the VM unhealthy"),
    arg("--health-start-period", help="failures in this start period do not count (e.g. 10s)"),
    arg("--no-healthcheck", action="store_true", help="disable the image's HEALTHCHECK"),
    arg("--log-opt", action="append", default=[], metavar="KEY=VALUE", help="max-size=10m, max-file=3"),
    # volumes, bind mounts, tmpfs (hypr_tui/volumes_cli.py)
    arg("-v", "--volume", action="append", default=[], metavar="[SOURCE:]TARGET[:ro]",
        help="a named volume (NAME:/path) or a host directory (./dir:/path, /abs:/path)"),
    arg("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,source=,target=[,readonly]",
        help="a mount, Docker's long form"),
    arg("--tmpfs", action="append", default=[], metavar="/PATH[:size=64m,mode=1777]", help="a tmpfs mount"),
    # networking (hypr_tui/net_cli.py turns these into VmSpec.networks / publish)
    arg("--network", "--net", action="append", default=[], metavar="NETWORK",
        help="connect to a network (repeatable; default: 'default'; 'none': no network); "
             "long form name=NET,alias=A,ip=IP"),
    arg("--network-alias", action="append", default=[], metavar="ALIAS",
        help="another name of the VM on the first --network"),
    arg("--ip", help="IPv4 address on the first --network (default: the lowest free one)"),
    arg("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]GUESTPORT[/PROTO]",
        help="publish a guest port on the host (ranges A-B; default host address 0.0.0.0)"),
    arg("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port on a random host port"),
    arg("image", metavar="IMAGE"),
    arg("cmd", nargs="...", metavar="COMMAND", help="command and arguments"),
)

VMS = arg("vms", nargs="+", metavar="VM")

ACTIONS: tuple[Action, ...] = (
    Action("run", "create and start a VM from an image", "cmd_run",
           (arg("-d", "--detach", action="store_true", help="run in the background and print the VM id"),
            *VM_CREATE_ARGS)),
    Action("create", "create a VM without starting it", "cmd_create", VM_CREATE_ARGS),
    Action("start", "start created or exited VMs", "cmd_start", (VMS,), target="vm", key="s"),
    Action("stop", "stop running VMs gracefully", "cmd_stop",
           (arg("-t", "--time", type=int, help="seconds to wait before killing"), VMS),
           target="vm", key="S", destructive=True),
    Action("restart", "stop, then start VMs", "cmd_restart",
           (arg("-t", "--time", type=int, help="seconds to wait before killing"), VMS),
           target="vm", key="r", destructive=True),
    Action("kill", "send a signal to the workload (default SIGKILL)", "cmd_kill",
           (arg("-s", "--signal", default="SIGKILL", help="signal name or number"), VMS),
           target="vm", key="K", destructive=True),
    Action("rm", "remove VMs", "cmd_rm",
           (arg("-f", "--force", action="store_true", help="kill and remove running VMs"), VMS),
           target="vm", key="D", destructive=True),
    Action("rename", "rename a VM", "cmd_rename", (arg("vm", metavar="VM"), arg("new_name", metavar="NEW_NAME")),
           target="vm", key="R"),
    Action("wait", "wait for VMs to exit and print their exit codes", "cmd_wait", (VMS,), target="vm", key="w"),
    Action("ps", "list VMs", "cmd_ps",
           (arg("-a", "--all", action="store_true", help="show all VMs (default: running only)"),
            arg("-q", "--quiet", action="store_true", help="only print VM ids"),
            arg("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                help="name=, label=KEY[=VALUE], status=, id="),
            arg("--format", default="table", help="table, json, or a template such as '{{.Names}} {{.Status}}'"))),
    Action("logs", "print a VM's output", "cmd_logs",
           (arg("-f", "--follow", action="store_true", help="follow until the VM exits"),
            arg("-n", "--tail", default="all", help="lines from the end (default: all)"),
            arg("-t", "--timestamps", action="store_true", help="show timestamps"),
            arg("--since", help="only lines since a time (RFC 3339, unix seconds, or 10m / 2h ago)"),
            arg("--until", help="only lines before a time (same forms)"),
            arg("vm", metavar="VM")),
           target="vm", key="l"),
    Action("exec", "run a command in a running VM", "cmd_exec",
           (arg("-i", "--interactive", action="store_true", help="keep stdin open"),
            arg("-t", "--tty", action="store_true", help="allocate a terminal"),
            arg("-e", "--env", action="append", default=[], metavar="KEY=VALUE"),
            arg("-w", "--workdir"),
            arg("-u", "--user"),
            arg("vm", metavar="VM"),
            arg("cmd", nargs="...", metavar="COMMAND")),
           target="vm", key="e"),
    Action("inspect", "details of VMs as JSON", "cmd_inspect", (VMS,), target="vm", key="i"),
    Action("top", "processes running in a VM", "cmd_top", (arg("vm", metavar="VM"),), target="vm", key="p"),
    Action("stats", "CPU, memory, disk and network use of VMs", "cmd_stats",
           (arg("--no-stream", action="store_true", help="print one sample and exit"),
            arg("-a", "--all", action="store_true", help="all VMs, not only running ones"),
            arg("vms", nargs="*", metavar="VM")),
           target="vm", key="m"),
    Action("cp", "copy files between a VM and the host (VM:PATH on either side)", "cmd_cp",
           (arg("-a", "--archive", action="store_true", help="keep uid/gid (default: owned by root in the VM)"),
            arg("src", metavar="SRC"), arg("dest", metavar="DEST")),
           target="vm", key="c"),
    Action("load", "load images from a docker-archive, oci-archive or OCI layout", "cmd_load",
           (arg("-i", "--input", required=True, help="archive file or OCI layout directory"),
            arg("-q", "--quiet", action="store_true"))),
    Action("import", "make an image from a root filesystem tarball", "cmd_import",
           (arg("tarball"), arg("ref", nargs="?", metavar="REPOSITORY[:TAG]"))),
    Action("images", "list images", "images_cli:cmd_images",
           (arg("-q", "--quiet", action="store_true"), arg("--format", choices=["table", "json"], default="table"),
            arg("--digests", action="store_true", help="show the manifest digests"))),
    Action("rmi", "remove images", "images_cli:cmd_rmi",
           (arg("-f", "--force", action="store_true"), arg("images", nargs="+", metavar="IMAGE")),
           target="image", key="D", destructive=True),
    Action("events", "show VM and image events as they happen", "cmd_events",
           (arg("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                help="type=vm|image|network, event=ACTION, vm=NAME|ID, image=REF|ID, network=NAME|ID "
                     "(repeat a key: either)"),
            arg("--since", help="first replay events since a time (RFC 3339, unix seconds, or 10m / 2h ago)"),
            arg("--until", help="stop at a time (same forms); without it, follow until interrupted"),
            arg("--format", choices=["table", "json"], default="table"))),
    Action("port", "list a VM's published ports, or the host address of one", "net_cli:cmd_port",
           (arg("vm", metavar="VM"), arg("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")),
           target="vm", key="P"),
    Action("system info", "engine, accelerator, kernel, initramfs, and why", "cmd_system_info",
           (arg("--format", choices=["table", "json"], default="table"),)),
    # --- images (hypr_tui/images_cli.py) ---
    Action("tag", "give an image another reference", "images_cli:cmd_tag",
           (arg("source", metavar="SOURCE_IMAGE[:TAG]"), arg("target", metavar="TARGET_IMAGE[:TAG]")),
           target="image", key="t"),
    Action("save", "write images to a docker-archive", "images_cli:cmd_save",
           (arg("-o", "--output", help="the archive to write"), arg("images", nargs="+", metavar="IMAGE")),
           target="image", key="s"),
    Action("image inspect", "details of images as JSON", "images_cli:cmd_image_inspect",
           (arg("images", nargs="+", metavar="IMAGE"),), target="image", key="i"),
    Action("image history", "the layers of an image and what made them", "images_cli:cmd_image_history",
           (arg("-H", "--human", choices=["true", "false"], default="true", help="sizes and dates for humans"),
            arg("--no-trunc", action="store_true", help="do not shorten the output"),
            arg("-q", "--quiet", action="store_true", help="only print image IDs"),
            arg("--format", choices=["table", "json"], default="table"),
            arg("image", metavar="IMAGE")),
           target="image", key="h"),
    Action("image prune", "remove dangling images (-a: every image no VM uses)", "images_cli:cmd_image_prune",
           (arg("-a", "--all", action="store_true", help="all images no VM uses, not only dangling ones"),
            arg("-f", "--force", action="store_true", help="do not ask for confirmation"))),
    # --- registries (hypr_tui/registry_cli.py) ---
    Action("pull", "pull an image from a registry", "registry_cli:cmd_pull",
           (arg("--platform", help="os/arch[/variant] of a multi-platform image (default: this host's)"),
            arg("-q", "--quiet", action="store_true", help="print only the image's reference"),
            arg("image", metavar="NAME[:TAG|@DIGEST]"))),
    Action("push", "push an image to a registry", "registry_cli:cmd_push",
           (arg("-q", "--quiet", action="store_true", help="print nothing but errors"),
            arg("image", metavar="NAME[:TAG]")),
           target="image", key="P"),
    Action("login", "log in to a registry (credentials stored 0600 in the data directory)", "registry_cli:cmd_login",
           (arg("-u", "--username"),
            arg("-p", "--password", help="insecure: use --password-stdin"),
            arg("--password-stdin", action="store_true", help="read the password from stdin"),
            arg("server", nargs="?", metavar="SERVER", help="registry host (default: docker.io)"))),
    Action("logout", "forget the credentials of a registry", "registry_cli:cmd_logout",
           (arg("server", nargs="?", metavar="SERVER", help="registry host (default: docker.io)"),)),
)


# --- volumes and space (hypr_tui/volumes_cli.py, hypr_tui/system_cli.py) -----------------------
ACTIONS += (
    Action("volume create", "create a volume (a sparse ext4 disk image)", "volumes_cli:cmd_volume_create",
           (arg("--label", action="append", default=[], metavar="KEY=VALUE", help="set a label"),
            arg("-o", "--opt", action="append", default=[], metavar="size=SIZE",
                help="size of the volume's file system (default 8g, sparse)"),
            arg("name", nargs="?", metavar="NAME", help="default: a random name"))),
    Action("volume ls", "list volumes", "volumes_cli:cmd_volume_ls",
           (arg("-q", "--quiet", action="store_true", help="only print volume names"),
            arg("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                help="name=, label=KEY[=VALUE], dangling=true|false, driver="),
            arg("--format", choices=["table", "json"], default="table"))),
    Action("volume inspect", "details of volumes as JSON", "volumes_cli:cmd_volume_inspect",
           (arg("names", nargs="+", metavar="VOLUME"),)),
    Action("volume rm", "remove volumes", "volumes_cli:cmd_volume_rm",
           (arg("-f", "--force", action="store_true", help="also when stopped VMs use them"),
            arg("names", nargs="+", metavar="VOLUME")), destructive=True),
    Action("volume prune", "remove unused anonymous volumes (all unused ones with -a)", "volumes_cli:cmd_volume_prune",
           (arg("-a", "--all", action="store_true", help="named volumes too"),
            arg("-f", "--force", action="store_true", help="do not ask")), destructive=True),
    Action("system df", "space used by images, VMs, volumes, caches and logs", "system_cli:cmd_system_df",
           (arg("-v", "--verbose", action="store_true", help="each item"),
            arg("--format", choices=["table", "json"], default="table"))),
    Action("system prune", "remove stopped VMs, dangling images, unused networks and caches",
           "system_cli:cmd_system_prune",
           (arg("-a", "--all", action="store_true", help="every image no VM uses, not only dangling ones"),
            arg("--volumes", action="store_true", help="also every volume no VM uses"),
            arg("-f", "--force", action="store_true", help="do not ask")), destructive=True),
    # --- networks (hypr_tui/network_cli.py) ---
    Action("network create", "create a user network (a bridge with DNS and isolation; needs root)",
           "network_cli:cmd_network_create",
           (arg("--subnet", help="CIDR, e.g. 10.90.0.0/24 (default: a free /24 of 10.89.0.0/16)"),
            arg("--gateway", help="the host's address on the network (default: the subnet's first)"),
            arg("--internal", action="store_true", help="no traffic in or out of the network, only between its VMs"),
            arg("--label", action="append", default=[], metavar="KEY=VALUE", help="set a label"),
            arg("name", metavar="NAME"))),
    Action("network ls", "list networks", "network_cli:cmd_network_ls",
           (arg("-q", "--quiet", action="store_true", help="only print network ids"),
            arg("--format", choices=["table", "json"], default="table"))),
    Action("network inspect", "details of networks as JSON", "network_cli:cmd_network_inspect",
           (arg("networks", nargs="+", metavar="NETWORK"),), target="network", key="i"),
    Action("network rm", "remove networks", "network_cli:cmd_network_rm",
           (arg("-f", "--force", action="store_true", help="also when VMs use it (they are disconnected)"),
            arg("networks", nargs="+", metavar="NETWORK")), target="network", key="D", destructive=True),
    Action("network prune", "remove every user network no VM uses", "network_cli:cmd_network_prune",
           (), destructive=True),
    Action("network connect", "attach a VM to a network (a running VM: at its next start)",
           "network_cli:cmd_network_connect",
           (arg("--alias", action="append", default=[], help="another name the VM answers to on the network"),
            arg("--ip", help="the VM's address on the network (default: the next free one)"),
            arg("network", metavar="NETWORK"), arg("vm", metavar="VM"))),
    Action("network disconnect", "detach a VM from a network (a running VM: at its next start)",
           "network_cli:cmd_network_disconnect",
           (arg("network", metavar="NETWORK"), arg("vm", metavar="VM"))),
)


def handler_of(action: Action) -> Callable[..., Awaitable[int]]:
    """The coroutine function that performs `action` (imported on first use, so
    `hypr ps` does not import the volume or registry commands)."""
    import importlib

    module, _, function = action.handler.rpartition(":")
    return getattr(importlib.import_module(f"hypr_tui.{module or 'commands'}"), function)


def by_name(name: str) -> Action:
    for action in ACTIONS:
        if action.name == name:
            return action
    raise KeyError(name)
