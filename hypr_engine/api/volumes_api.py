"""hyprd's Volumes and SystemSpace services: the embedded transport's volume and
space operations served over gRPC (proto/hypr/v1/volumes.proto)."""

from __future__ import annotations

import json

from hypr_engine._volumes_transport import volume_to_pb
from hypr_engine.api._pb.hypr import v1 as pb


class VolumesService(pb.VolumesBase):
    def __init__(self, state) -> None:
        self.s = state

    async def create(self, message: pb.CreateVolumeRequest) -> pb.Volume:
        volume = await self.s.detach(self.s.local.create_volume(
            message.name, labels=dict(message.labels), options=dict(message.options)))
        return volume_to_pb(volume)

    async def list(self, message: pb.ListVolumesRequest) -> pb.ListVolumesResponse:
        volumes = await self.s.local.list_volumes([(f.key, f.value) for f in message.filters])
        return pb.ListVolumesResponse(volumes=[volume_to_pb(v) for v in volumes])

    async def inspect(self, message: pb.VolumeRef) -> pb.Volume:
        return volume_to_pb(await self.s.local.get_volume(message.name))

    async def remove(self, message: pb.RemoveVolumeRequest) -> pb.RemoveVolumeResponse:
        name = await self.s.detach(self.s.local.remove_volume(message.name, force=message.force))
        return pb.RemoveVolumeResponse(name=name)

    async def prune(self, message: pb.PruneVolumesRequest) -> pb.PruneVolumesResponse:
        removed, reclaimed = await self.s.detach(self.s.local.prune_volumes(all=message.all))
        return pb.PruneVolumesResponse(removed=removed, reclaimed_bytes=reclaimed)


class SystemSpaceService(pb.SystemSpaceBase):
    def __init__(self, state) -> None:
        self.s = state

    async def df(self, message: pb.DfRequest) -> pb.SpaceReport:
        return pb.SpaceReport(report_json=json.dumps(await self.s.local.system_df()))

    async def prune(self, message: pb.SystemPruneRequest) -> pb.SpaceReport:
        report = await self.s.detach(self.s.local.system_prune(all=message.all, volumes=message.volumes))
        return pb.SpaceReport(report_json=json.dumps(report))
