"""The guest's /etc/hosts and /etc/resolv.conf, computed by the engine (boot tags 9 and 10).

- hosts: localhost, the VM's hostname and name on each of its addresses (the first
  NIC's first), and on a gvproxy network `host.hypr.internal` and
  `host.containers.internal` for 192.168.127.254, which gvproxy maps to the host's
  127.0.0.1 (gvproxy's own DNS also answers `host.containers.internal`).
- resolv.conf: the first user network's gateway (where that network's resolver runs, which
  knows the VM's peers) when the VM is on a user network, else the default network's DNS
  (gvproxy on 192.168.127.1).
  No network: nothing is written and the image's file stays.
"""

from __future__ import annotations

from hypr_engine.net.driver import NicPlan
from hypr_engine.net.store import GVPROXY_HOST_ALIAS, Endpoint

HOST_NAMES = ("host.hypr.internal", "host.containers.internal")


def hosts_file(hostname: str, vm_name: str, endpoints: list[Endpoint]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    names = " ".join(dict.fromkeys([hostname, vm_name]))
    if not endpoints:
        lines.append(f"127.0.1.1\t{names}")
    for ep in endpoints:
        extra = " ".join(a for a in ep.aliases if a not in (hostname, vm_name))
        lines.append(f"{ep.ip}\t{names}{' ' + extra if extra else ''}")
    if any(ep.network.driver == "gvproxy" for ep in endpoints):
        lines.append(f"{GVPROXY_HOST_ALIAS}\t{' '.join(HOST_NAMES)}")
    return "\n".join(lines) + "\n"


def resolv_conf(endpoints: list[Endpoint], nics: list[NicPlan]) -> str:
    # A user network's resolver comes first: it answers the names of the VM's peers (on
    # all of its user networks) and forwards the rest to the host's resolver, as gvproxy does.
    user = [nic.dns for ep, nic in zip(endpoints, nics) if ep.network.driver != "gvproxy" and nic.dns]
    default = [nic.dns for ep, nic in zip(endpoints, nics) if ep.network.driver == "gvproxy" and nic.dns]
    servers = user + default
    if not servers:
        return ""
    return f"nameserver {servers[0]}\noptions ndots:0\n"
