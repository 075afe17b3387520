"""Volume and space operations of HyprClient's two transports (mixins of
EmbeddedTransport and GrpcTransport), kept apart so the volume feature is one place."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from hypr_engine.models import VolumeInfo

DEADLINE_QUICK = 30.0
DEADLINE_SLOW = 900.0    # creating a volume runs mkfs; prune removes VMs and images


class EmbeddedVolumes:
    engine: Any

    async def _settle_vms(self) -> None:
        """Which VMs use a volume goes by their state: settle the states of VMs whose
        supervisor died unobserved first (VmService.list reconciles each)."""
        await self.engine.vms.list()

    async def create_volume(self, name: str | None, *, labels: dict[str, str] | None = None,
                            options: dict[str, str] | None = None) -> VolumeInfo:
        return await self.engine.volumes.create(name, labels=labels, options=options)

    async def list_volumes(self, filters: Iterable[tuple[str, str]] = ()) -> list[VolumeInfo]:
        await self._settle_vms()
        return await self.engine.volumes.list(list(filters))

    async def get_volume(self, name: str) -> VolumeInfo:
        await self._settle_vms()
        return await self.engine.volumes.get(name)

    async def remove_volume(self, name: str, *, force: bool = False) -> str:
        await self._settle_vms()
        return await self.engine.volumes.remove(name, force=force)

    async def prune_volumes(self, *, all: bool = False) -> tuple[list[str], int]:
        await self._settle_vms()
        return await self.engine.volumes.prune(all=all)

    async def system_df(self) -> dict:
        return await self.engine.system.df()

    async def system_prune(self, *, all: bool = False, volumes: bool = False) -> dict:
        return await self.engine.system.prune(all=all, volumes=volumes)


def volume_to_pb(v: VolumeInfo):
    from hypr_engine.api._pb.hypr import v1 as pb

    return pb.Volume(name=v.name, driver=v.driver, mountpoint=v.mountpoint, labels=dict(v.labels),
                     options=dict(v.options), size_bytes=v.size_bytes, allocated_bytes=v.allocated_bytes,
                     anonymous=v.anonymous, created_at=v.created_at, used_by=list(v.used_by))


def volume_from_pb(m) -> VolumeInfo:
    return VolumeInfo(name=m.name, driver=m.driver, mountpoint=m.mountpoint, labels=dict(m.labels),
                      options=dict(m.options), size_bytes=m.size_bytes, allocated_bytes=m.allocated_bytes,
                      anonymous=m.anonymous, created_at=m.created_at, used_by=list(m.used_by))


class GrpcVolumes:
    _channel: Any
    _metadata: dict

    async def _unary(self, call, request, deadline) -> Any: ...  # GrpcTransport's

    def _stubs(self):
        from hypr_engine.api._pb.hypr import v1 as pb

        return pb, pb.VolumesStub(self._channel, metadata=self._metadata), \
            pb.SystemSpaceStub(self._channel, metadata=self._metadata)

    async def create_volume(self, name: str | None, *, labels: dict[str, str] | None = None,
                            options: dict[str, str] | None = None) -> VolumeInfo:
        pb, volumes, _ = self._stubs()
        request = pb.CreateVolumeRequest(name=name, labels=dict(labels or {}), options=dict(options or {}))
        return volume_from_pb(await self._unary(volumes.create, request, DEADLINE_SLOW))

    async def list_volumes(self, filters: Iterable[tuple[str, str]] = ()) -> list[VolumeInfo]:
        pb, volumes, _ = self._stubs()
        request = pb.ListVolumesRequest(filters=[pb.VolumeFilter(key=k, value=v) for k, v in filters])
        reply = await self._unary(volumes.list, request, DEADLINE_QUICK)
        return [volume_from_pb(v) for v in reply.volumes]

    async def get_volume(self, name: str) -> VolumeInfo:
        pb, volumes, _ = self._stubs()
        return volume_from_pb(await self._unary(volumes.inspect, pb.VolumeRef(name=name), DEADLINE_QUICK))

    async def remove_volume(self, name: str, *, force: bool = False) -> str:
        pb, volumes, _ = self._stubs()
        reply = await self._unary(volumes.remove, pb.RemoveVolumeRequest(name=name, force=force), DEADLINE_SLOW)
        return reply.name

    async def prune_volumes(self, *, all: bool = False) -> tuple[list[str], int]:
        pb, volumes, _ = self._stubs()
        reply = await self._unary(volumes.prune, pb.PruneVolumesRequest(all=all), DEADLINE_SLOW)
        return list(reply.removed), reply.reclaimed_bytes

    async def system_df(self) -> dict:
        pb, _, space = self._stubs()
        reply = await self._unary(space.df, pb.DfRequest(), DEADLINE_SLOW)
        return json.loads(reply.report_json)

    async def system_prune(self, *, all: bool = False, volumes: bool = False) -> dict:
        pb, _, space = self._stubs()
        reply = await self._unary(space.prune, pb.SystemPruneRequest(all=all, volumes=volumes), DEADLINE_SLOW)
        return json.loads(reply.report_json)
