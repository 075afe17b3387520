"""Content digests: validation, hashing while streaming, and the OCI ChainID.

Every blob HYPR stores or reads is named by its digest, so a malformed digest must be
rejected before it becomes a path (a digest with `/` or `..` in it would escape the
store). One validator serves references (user input, InvalidArgument) and manifests
(archive/registry input, CorruptData); the caller picks the error class.
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from hypr_engine.errors import CorruptData, HyprError, InvalidArgument

# go-digest: algorithm grammar and the encodings of the registered algorithms.
_ALGORITHM_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$")
_ENCODED_RE = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha384": re.compile(r"^[a-f0-9]{96}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}

_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}

CHUNK = 1 << 20


def validate_digest(
    digest: object,
    *,
    error: type[HyprError] = InvalidArgument,
    what: str = "digest",
    sha256_only: bool = False,
) -> str:
    """Return `digest` if it is `algorithm:hex` with a known algorithm, else raise `error`."""
    if not isinstance(digest, str):
        raise error(f"invalid {what}: expected a string like sha256:<64 hex>, got {type(digest).__name__}")
    alg, sep, encoded = digest.partition(":")
    if not sep or not _ALGORITHM_RE.match(alg) or not encoded:
        raise error(f"invalid {what} {digest!r}: expected algorithm:hex")
    pattern = _ENCODED_RE.get(alg)
    if pattern is None or (sha256_only and alg != "sha256"):
        raise error(f"unsupported digest algorithm {alg!r} in {what} {digest!r}")
    if not pattern.match(encoded):
        raise error(f"invalid {what} {digest!r}: {alg} needs {_HEX_LEN[alg]} lowercase hex digits")
    return digest


def digest_hex(digest: str) -> str:
    """The encoded part of a (validated) digest: `sha256:abc` -> `abc`."""
    return digest.partition(":")[2]


def sha256_digest(data: bytes | bytearray | memoryview) -> str:
    """`sha256:<hex>` of a byte string."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(diff_ids: list[str]) -> str:
    """OCI ChainID of a layer stack: ChainID(L0)=DiffID(L0), ChainID(..Ln)=sha256(ChainID(..Ln-1) + " " + DiffID(Ln)).

    It names a stack of applied layers independently of how the layers were compressed
    or which image they came from, so two images sharing a base share its rootfs cache.
    """
    if not diff_ids:
        raise InvalidArgument("cannot compute a chain ID of zero layers")
    chain = validate_digest(diff_ids[0], error=CorruptData, what="diff_id")
    for diff_id in diff_ids[1:]:
        validate_digest(diff_id, error=CorruptData, what="diff_id")
        chain = sha256_digest(f"{chain} {diff_id}".encode())
    return chain


class HashingReader:
    """A read-only stream wrapper that hashes (sha256) and counts everything read through it.

    Used to compute a layer's diff_id while tarfile parses the decompressed stream, so the
    check costs no extra pass over the data.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def readinto(self, buf) -> int:  # noqa: ANN001 - buffer protocol
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) the rest of the stream: tar padding after the end marker counts too."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()
