"""The nftables table of one data directory's user networks.

One table, `inet hypr_<data-dir tag>`, rendered whole from the list of bridge
networks and swapped in atomically (`nft -f` applies a file as one transaction), so
it never holds a half-written rule set and re-applying is always safe. It holds:

- masquerade for each non-internal network's subnet leaving through another interface
  (VMs reach the outside world through the host's address);
- isolation: nothing is forwarded from one HYPR bridge to another (`hyb*`: this data
  directory's and every other's), and from outside into a network only replies;
- `--internal`: nothing forwarded in or out at all, and of the host only the network's
  own DNS resolver (port 53 on its gateway) answers.

Forwarding needs `net.ipv4.ip_forward=1`, set (host-wide) as soon as a non-internal
network exists; HYPR never turns it off again, since other software may rely on it.
The table is deleted when the last network goes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from hypr_engine.errors import Unavailable
from hypr_engine.net.bridge import BRIDGE_PREFIX, dir_tag

NFT_TIMEOUT = 10.0
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class NetRules:
    bridge: str
    subnet: str
    gateway: str
    internal: bool


def table_name(data_dir: Path | str) -> str:
    return f"hypr_{dir_tag(data_dir)}"


def render(table: str, networks: list[NetRules]) -> str:
    """The nft script that replaces `table` with the rules of `networks`."""
    forward: list[str] = []
    inbound: list[str] = []
    nat: list[str] = []
    for n in networks:
        br = f'"{n.bridge}"'
        if n.internal:
            forward += [f"iifname {br} oifname != {br} drop", f"oifname {br} iifname != {br} drop"]
            inbound += [f"iifname {br} ip daddr {n.gateway} udp dport 53 accept",
                        f"iifname {br} ip daddr {n.gateway} tcp dport 53 accept",
                        f"iifname {br} ct state established,related accept",
                        f"iifname {br} drop"]
            continue
        forward += [
            # to any other HYPR bridge (this data directory's or another's): isolation
            f'iifname {br} oifname != {br} oifname "{BRIDGE_PREFIX}*" drop',
            # from elsewhere into the network: only replies to what a VM started
            f"oifname {br} iifname != {br} ct state established,related accept",
            f"oifname {br} iifname != {br} drop",
        ]
        nat.append(f"ip saddr {n.subnet} oifname != {br} masquerade")
    body = "\n".join([
        f"table inet {table} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        *(f"    {r}" for r in forward),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {r}" for r in inbound),
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *(f"    {r}" for r in nat),
        "  }",
        "}",
    ])
    # Declare (no-op if present), delete, recreate: one transaction, whatever was there.
    return f"table inet {table}\ndelete table inet {table}\n{body}\n"


def _nft(script: str | None, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["nft", *args], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    except FileNotFoundError:
        raise Unavailable("the `nft` command (nftables) is missing; run scripts/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"`nft {' '.join(args)}` did not finish within {NFT_TIMEOUT:g} s") from None


def apply(data_dir: Path | str, networks: list[NetRules]) -> None:
    """Make the table of `data_dir` say exactly `networks` (none: no table)."""
    table = table_name(data_dir)
    if not networks:
        remove(data_dir)
        return
    proc = _nft(render(table, networks), "-f", "-")
    if proc.returncode != 0:
        raise Unavailable(f"nftables refused HYPR's rules: {proc.stderr.strip()}")
    if any(not n.internal for n in networks):
        enable_ip_forward()


def remove(data_dir: Path | str) -> None:
    table = table_name(data_dir)
    if table_exists(table):
        proc = _nft(None, "delete", "table", "inet", table)
        if proc.returncode != 0 and table_exists(table):
            raise Unavailable(f"cannot delete nftables table {table}: {proc.stderr.strip()}")


def table_exists(table: str) -> bool:
    return _nft(None, "list", "table", "inet", table).returncode == 0


def tables_with_prefix(prefix: str) -> list[str]:
    out = _nft(None, "list", "tables").stdout
    return [line.split()[-1] for line in out.splitlines() if line.split()[-1:] and line.split()[-1].startswith(prefix)]


def enable_ip_forward() -> None:
    try:
        if IP_FORWARD.read_text().strip() != "1":
            IP_FORWARD.write_text("1\n")
    except OSError as exc:
        raise Unavailable(f"cannot enable IPv4 forwarding ({IP_FORWARD}): {exc}") from None
