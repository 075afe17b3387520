"""The HYPR API, `hypr.v1`: gRPC over hyprd's Unix socket.

- `proto/hypr/v1/*.proto`: the API, one service per area (Vms, Images, System, Events);
- `_pb/`: the code betterproto2 generates from it (`proto/generate.sh`; never edit);
- `convert.py`: the engine's models to messages and back, and errors to statuses and back;
- `server.py`: the services hyprd serves (hypr_engine/daemon.py runs them).

The client side is `hypr_engine/_grpc.py`, one of HyprClient's two transports.

Versioning: a client and hyprd whose API major versions differ refuse each other at
connect (`System.Hello`, and the `hypr-api-version` metadata on every call); minor
versions only add (new calls, new fields), so any minor of a major works with any other.
This module stays free of heavy imports: the CLI reads it before deciding on a transport.
"""

from __future__ import annotations

API_MAJOR = 1
API_MINOR = 0
METADATA_KEY = "hypr-api-version"
SOCKET_NAME = "hyprd.sock"


def api_version() -> str:
    return f"{API_MAJOR}.{API_MINOR}"


def parse_version(text: str) -> tuple[int, int] | None:
    major, _, minor = text.strip().partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        return None
    return int(major), int(minor or 0)


def incompatibility(client_major: int, client_minor: int, daemon_major: int, daemon_minor: int) -> str | None:
    """None when the two can talk; otherwise the sentence both sides show."""
    if client_major == daemon_major:
        return None
    newer = "hypr" if client_major > daemon_major else "hyprd"
    return (
        f"incompatible API versions: this hypr speaks hypr.v{client_major} (API {client_major}.{client_minor}) "
        f"and hyprd speaks hypr.v{daemon_major} (API {daemon_major}.{daemon_minor}); "
        f"{newer} is newer: install matching versions of hypr and hyprd"
    )
