"""hyprd's Net service (proto/hypr/v1/net.proto): published ports."""

from __future__ import annotations

from hypr_engine.api._pb.hypr import v1 as pb


def binding_to_pb(b) -> pb.PortBinding:
    return pb.PortBinding(host_ip=b.host_ip, host_port=b.host_port, guest_port=b.guest_port, protocol=b.protocol)


def binding_from_pb(m: pb.PortBinding):
    from hypr_engine.net.ports import PortBinding

    return PortBinding(m.host_ip, m.host_port, m.guest_port, m.protocol)


class NetService(pb.NetBase):
    def __init__(self, state) -> None:
        self.s = state

    async def ports(self, message: pb.VmRef) -> pb.PortList:
        return pb.PortList(ports=[binding_to_pb(b) for b in await self.s.local.vm_ports(message.ref)])
