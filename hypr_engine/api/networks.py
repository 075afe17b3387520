"""hyprd's Networks service (proto/hypr/v1/networks.proto) and its message conversions.

Kept apart from server.py and convert.py: networks are one feature, and its API code
reads best in one place.
"""

from __future__ import annotations

from hypr_engine.api._pb.hypr import v1 as pb
from hypr_engine.api.convert import _from_pb, _to_pb
from hypr_engine.models import EndpointInfo, NetworkInfo


def network_to_pb(info: NetworkInfo) -> pb.Network:
    def endpoints(m, value):
        m.endpoints = [_to_pb(e, pb.NetworkEndpoint(), {}) for e in value]
    return _to_pb(info, pb.Network(), {"endpoints": endpoints})


def network_from_pb(message: pb.Network) -> NetworkInfo:
    def endpoints(m):
        return [EndpointInfo(**_from_pb(EndpointInfo, e, {})) for e in m.endpoints]
    return NetworkInfo(**_from_pb(NetworkInfo, message, {"endpoints": endpoints}))


class NetworksService(pb.NetworksBase):
    def __init__(self, state) -> None:
        self.s = state

    async def create(self, message: pb.CreateNetworkRequest) -> pb.Network:
        info = await self.s.detach(self.s.local.create_network(
            message.name, subnet=message.subnet, gateway=message.gateway, internal=message.internal,
            labels=dict(message.labels)))
        return network_to_pb(info)

    async def list(self, message: pb.ListNetworksRequest) -> pb.ListNetworksResponse:
        return pb.ListNetworksResponse(networks=[network_to_pb(n) for n in await self.s.local.list_networks()])

    async def inspect(self, message: pb.NetworkRef) -> pb.Network:
        return network_to_pb(await self.s.local.get_network(message.ref))

    async def remove(self, message: pb.RemoveNetworkRequest) -> pb.RemoveNetworkResponse:
        name = await self.s.detach(self.s.local.remove_network(message.ref, force=message.force))
        return pb.RemoveNetworkResponse(name=name)

    async def prune(self, message: pb.PruneNetworksRequest) -> pb.PruneNetworksResponse:
        return pb.PruneNetworksResponse(removed=await self.s.detach(self.s.local.prune_networks()))

    async def connect(self, message: pb.ConnectNetworkRequest) -> pb.ConnectNetworkResponse:
        info, later = await self.s.detach(self.s.local.connect_network(
            message.network, message.vm, aliases=list(message.aliases), ip=message.ip))
        return pb.ConnectNetworkResponse(network=network_to_pb(info), at_next_start=later)

    async def disconnect(self, message: pb.DisconnectNetworkRequest) -> pb.ConnectNetworkResponse:
        info, later = await self.s.detach(self.s.local.disconnect_network(message.network, message.vm))
        return pb.ConnectNetworkResponse(network=network_to_pb(info), at_next_start=later)
