"""One exception hierarchy for all of HYPR.

Every error a user can see is a `HyprError`. Each subclass names the gRPC status
code the daemon answers with and the exit code the CLI exits with, so the same
failure reads the same whether the engine is embedded or behind `hyprd`.
Exit codes follow Docker: 125 means HYPR itself failed; 126 and 127 are the
workload's "cannot invoke" and "not found".
"""

from __future__ import annotations


class HyprError(Exception):
    """Base class: a failure HYPR reports to the user as one clear line."""

    grpc_status = "UNKNOWN"
    exit_code = 125

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Extra lines shown under the message (e.g. the last console lines of a VM).
        self.detail = detail


class InvalidArgument(HyprError):
    """Bad input from the user: a flag, a reference, a file that cannot be parsed."""

    grpc_status = "INVALID_ARGUMENT"


class NotFound(HyprError):
    """A VM, image, volume or network that does not exist."""

    grpc_status = "NOT_FOUND"


class AlreadyExists(HyprError):
    """A name that is already taken."""

    grpc_status = "ALREADY_EXISTS"


class Conflict(HyprError):
    """The operation does not fit the object's current state (e.g. remove a running VM without -f)."""

    grpc_status = "FAILED_PRECONDITION"


class CorruptData(HyprError):
    """An archive, blob or manifest whose bytes are not what they claim to be."""

    grpc_status = "DATA_LOSS"


class Unavailable(HyprError):
    """A needed resource or helper is missing or not answering (QEMU, kernel, daemon)."""

    grpc_status = "UNAVAILABLE"


class Timeout(HyprError):
    """A wait ran past its deadline."""

    grpc_status = "DEADLINE_EXCEEDED"


class Locked(HyprError):
    """Another engine holds the data directory."""

    grpc_status = "UNAVAILABLE"


class ProtocolError(HyprError):
    """The guest agent (or a peer) sent something that breaks the protocol."""

    grpc_status = "INTERNAL"


class CannotInvoke(HyprError):
    """The workload's command exists but cannot be executed (Docker's 126)."""

    grpc_status = "FAILED_PRECONDITION"
    exit_code = 126


class CommandNotFound(HyprError):
    """The workload's command does not exist in the image (Docker's 127)."""

    grpc_status = "NOT_FOUND"
    exit_code = 127


class Unauthenticated(HyprError):
    """A registry refused the credentials (or wants some and none are stored)."""

    grpc_status = "UNAUTHENTICATED"
