"""The `gvproxy` network driver: the default network, through this data dir's gvproxy."""

from __future__ import annotations

from hypr_engine.net import gvproxy
from hypr_engine.net.driver import GuestNic, NicPlan, netdev_id, register, virtio_net_args
from hypr_engine.net.store import DEFAULT_MTU, GVPROXY_GATEWAY, Endpoint
from hypr_engine.paths import Layout


def paths_of(layout: Layout) -> gvproxy.GvproxyPaths:
    return gvproxy.GvproxyPaths(layout.data, layout.runtime)


class GvproxyDriver:
    name = "gvproxy"

    def nic(self, endpoint: Endpoint, layout: Layout) -> NicPlan:
        nid = netdev_id(endpoint.position)
        net = endpoint.network
        return NicPlan(
            netdev_id=nid,
            purpose=f"network {net.name}",
            # the descriptor is gvproxy's hijacked /connect, obtained by the supervisor per spawn
            qemu_args=virtio_net_args(nid, "stream,addr.type=fd,addr.str={fd:%s}" % nid, endpoint.mac),
            guest=GuestNic(endpoint.mac, endpoint.ip, net.prefix, None if net.internal else net.gateway, DEFAULT_MTU),
            fd_source={"module": gvproxy.__name__, "lost": "the default network's gvproxy exited",
                       **paths_of(layout).to_json()},
            dns=GVPROXY_GATEWAY,
        )

    def prepare(self, endpoint: Endpoint, layout: Layout) -> None:
        gvproxy.find_gvproxy()  # not installed: say so now, not after a start timeout
        gvproxy.ensure_running(paths_of(layout))


register("gvproxy", GvproxyDriver)
