"""hyprd's Registry service (proto/hypr/v1/registry.proto): pull, push, login, logout.

Pulls and pushes run detached from the call (a client that goes away does not leave a
half-staged pull behind: it finishes, or fails cleanly, on its own), and their progress
is relayed as a server stream.
"""

from __future__ import annotations

from typing import AsyncIterator

from hypr_engine.api import convert
from hypr_engine.api._pb.hypr import v1 as pb


class RegistryService(pb.RegistryBase):
    def __init__(self, state) -> None:  # noqa: ANN001 - server.DaemonState
        self.s = state

    async def pull(self, message: pb.PullRequest) -> AsyncIterator[pb.TransferProgress]:
        from hypr_engine.api.server import _detached_stream

        stream = self.s.local.pull_image(message.ref, platform=message.platform or None)
        async for event in _detached_stream(self.s, stream):
            yield convert.progress_to_pb(event)

    async def push(self, message: pb.PushRequest) -> AsyncIterator[pb.TransferProgress]:
        from hypr_engine.api.server import _detached_stream

        async for event in _detached_stream(self.s, self.s.local.push_image(message.ref)):
            yield convert.progress_to_pb(event)

    async def login(self, message: pb.LoginRequest) -> pb.LoginResponse:
        return pb.LoginResponse(message=await self.s.local.login(message.server, message.username, message.password))

    async def logout(self, message: pb.LogoutRequest) -> pb.LogoutResponse:
        return pb.LogoutResponse(message=await self.s.local.logout(message.server))
