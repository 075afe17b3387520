"""Content-addressed blob store: `root/sha256/<hex>`.

A blob only ever appears under its final name once its bytes have been hashed and
found to be what was expected: writes go to a temporary file in the same directory,
are fsynced, and are then linked into place atomically. A reader therefore never sees
a partial or wrong blob, a crash leaves at most a `.tmp-*` file (swept by
`remove_stale_temp`), and two writers of the same digest race harmlessly: the second
finds the blob present and drops its copy.

`stage()` groups several ingests (a whole archive) so that they become visible
together or not at all: a corrupt archive leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Union

from hypr_engine.errors import CorruptData, InvalidArgument, NotFound, Timeout
from hypr_engine.oci.descriptor import OCTET_STREAM, Descriptor
from hypr_engine.oci.digest import CHUNK, digest_hex, validate_digest

Source = Union[bytes, bytearray, memoryview, os.PathLike, BinaryIO, Iterable[bytes]]

_TMP_PREFIX = ".tmp-"


class BlobWriter:
    """Streams one blob into a temp file, hashing as it goes; `commit` verifies and publishes it.

    Usable directly by producers that push chunks (a registry download) instead of
    handing over a stream. Always end with `commit()` or `abort()` (or use `with`).
    """

    def __init__(
        self,
        store: "ContentStore",
        *,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        media_type: str = OCTET_STREAM,
        staging: "Staging | None" = None,
        fsync: bool = True,
    ) -> None:
        if expected_digest is not None:
            store.check_digest(expected_digest)
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"invalid expected size {expected_size}")
        self._store = store
        self._expected_digest = expected_digest
        self._expected_size = expected_size
        self._media_type = media_type
        self._staging = staging
        self._fsync = fsync
        self._hash = hashlib.sha256()
        self.size = 0
        fd, name = tempfile.mkstemp(dir=store.blob_dir, prefix=_TMP_PREFIX)
        self._tmp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes; more bytes than `expected_size` is corruption, reported at once."""
        assert self._file is not None, "write after commit/abort"
        if self._expected_size is not None and self.size + len(data) > self._expected_size:
            self.abort()
            name = self._expected_digest or "blob"
            raise CorruptData(f"{name} is larger than its expected {self._expected_size} bytes")
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> Descriptor:
        """Verify size and digest, then make the blob visible (or hand it to the staging area)."""
        assert self._file is not None, "commit after commit/abort"
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected_size is not None and self.size != self._expected_size:
            self._unlink()
            raise CorruptData(
                f"blob {self._expected_digest or digest} is truncated: got {self.size} of {self._expected_size} bytes"
            )
        if self._expected_digest is not None and digest != self._expected_digest:
            self._unlink()
            raise CorruptData(f"blob digest mismatch: expected {self._expected_digest}, got {digest}")
        os.chmod(self._tmp, 0o444)
        desc = Descriptor(self._media_type, digest, self.size)
        if self._staging is not None:
            self._staging._adopt(digest, self._tmp)
        else:
            self._store._publish(digest, self._tmp)
        return desc

    def abort(self) -> None:
        """Drop the partial blob. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._unlink()

    def _unlink(self) -> None:
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self.abort()


class ContentStore:
    """Blobs named by sha256 digest under `root/sha256/`. Safe for concurrent use by threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)

    # -- reading -----------------------------------------------------------------------

    @staticmethod
    def check_digest(digest: str) -> str:
        """Validate a digest for use as a blob name (sha256 only: that is what the store keeps)."""
        return validate_digest(digest, sha256_only=True)

    def blob_path(self, digest: str) -> Path:
        """Where the blob for `digest` lives (whether or not it exists)."""
        return self.blob_dir / digest_hex(self.check_digest(digest))

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def path(self, digest: str) -> Path:
        """Path of a present blob (NotFound otherwise). Never write to it."""
        p = self.blob_path(digest)
        if not p.is_file():
            raise NotFound(f"blob {digest} not found in the content store")
        return p

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def read(self, digest: str, *, max_size: int = 64 << 20) -> bytes:
        """Whole small blob (manifests, configs); refuses blobs over `max_size`."""
        if self.size(digest) > max_size:
            raise CorruptData(f"blob {digest} is larger than {max_size} bytes")
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def digests(self) -> Iterator[str]:
        """Digests of all present blobs (temp files excluded)."""
        for entry in os.scandir(self.blob_dir):
            if not entry.name.startswith(".") and entry.is_file():
                yield "sha256:" + entry.name

    # -- writing -----------------------------------------------------------------------

    def delete(self, digest: str) -> bool:
        """Remove a blob; returns False if it was not there (idempotent)."""
        try:
            self.blob_path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def writer(
        self,
        *,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        media_type: str = OCTET_STREAM,
    ) -> BlobWriter:
        """A BlobWriter publishing straight into the store."""
        return BlobWriter(self, expected_digest=expected_digest, expected_size=expected_size, media_type=media_type)

    def ingest(
        self,
        source: Source,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        *,
        media_type: str = OCTET_STREAM,
    ) -> Descriptor:
        """Store bytes / a file path / a readable stream / an iterable of chunks; return its descriptor.

        With `expected_digest` the bytes must hash to it (and with `expected_size`, have
        that length), else CorruptData and nothing is stored. If the blob is already
        present, a stream is not read at all.
        """
        return _ingest(self, source, expected_digest, expected_size, media_type, staging=None)

    # -- garbage collection guard --------------------------------------------------------
    #
    # The store keeps no reference counts of its own: the images table is the root set,
    # and a sweep deletes every blob no image row names (images.py). A blob that a load
    # or a pull has published but whose image row is not committed yet is unnamed for a
    # moment; `adding()` (shared) spans that moment and `sweeping()` (exclusive) waits
    # for it, so a concurrent `rmi` or prune in another process never takes it.

    @contextlib.contextmanager
    def adding(self, timeout: float = 120.0) -> Iterator[None]:
        """Hold while publishing blobs that no image row names yet, until the row is committed."""
        with self._gc_lock(fcntl.LOCK_SH, timeout) as held:
            if not held:
                raise Timeout(f"the content store {self.root} is being swept for over {timeout:.0f} s")
            yield

    @contextlib.contextmanager
    def sweeping(self, timeout: float = 30.0) -> Iterator[bool]:
        """Exclusive against `adding()`; yields False (sweep nothing) if loads kept it busy past `timeout`."""
        with self._gc_lock(fcntl.LOCK_EX, timeout) as held:
            yield held

    @contextlib.contextmanager
    def _gc_lock(self, mode: int, timeout: float) -> Iterator[bool]:
        # The lock is on the blob directory itself: no lock file to show up among the blobs.
        fd = os.open(self.blob_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            delay = 0.005
            held = False
            while not held:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    held = True
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
            yield held
        finally:
            os.close(fd)  # closing the only descriptor releases the lock

    def stage(self) -> "Staging":
        """A staging area whose blobs become visible together on `commit()`, or vanish."""
        return Staging(self)

    def remove_stale_temp(self, older_than: float = 3600.0) -> int:
        """Delete temp files left by crashed writers (older than `older_than` seconds)."""
        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.blob_dir):
            if entry.name.startswith(_TMP_PREFIX):
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def _publish(self, digest: str, tmp: Path) -> bool:
        """Link a verified temp file into place; True if this call created the blob."""
        final = self.blob_path(digest)
        try:
            os.link(tmp, final)
            created = True
        except FileExistsError:
            created = False  # a concurrent writer (or an earlier ingest) got there first
        except OSError:
            # File systems without hard links: rename is atomic too (replacing identical bytes).
            created = not final.exists()
            os.replace(tmp, final)
            return created
        tmp.unlink()
        return created


class Staging:
    """Blobs verified but not yet visible in the store; `commit` publishes, `abort` deletes.

    Reads (`has`, `open`, `path`) see staged blobs and store blobs alike, so a loader can
    parse what it staged before deciding to commit. Used as a context manager, anything
    not committed is aborted on exit.
    """

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self._pending: dict[str, Path] = {}
        self._closed = False

    def writer(
        self, *, expected_digest: str | None = None, expected_size: int | None = None, media_type: str = OCTET_STREAM
    ) -> BlobWriter:
        return BlobWriter(
            self.store,
            expected_digest=expected_digest,
            expected_size=expected_size,
            media_type=media_type,
            staging=self,
        )

    def ingest(
        self,
        source: Source,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        *,
        media_type: str = OCTET_STREAM,
    ) -> Descriptor:
        return _ingest(self.store, source, expected_digest, expected_size, media_type, staging=self)

    def has(self, digest: str) -> bool:
        return digest in self._pending or self.store.has(digest)

    def path(self, digest: str) -> Path:
        if digest in self._pending:
            return self._pending[digest]
        return self.store.path(digest)

    def open(self, digest: str) -> BinaryIO:
        return open(self.path(digest), "rb")

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def read(self, digest: str, *, max_size: int = 64 << 20) -> bytes:
        if self.size(digest) > max_size:
            raise CorruptData(f"blob {digest} is larger than {max_size} bytes")
        with self.open(digest) as f:
            return f.read()

    def _adopt(self, digest: str, tmp: Path) -> None:
        if self._closed:
            tmp.unlink(missing_ok=True)
            raise RuntimeError("staging area already closed")
        if digest in self._pending or self.store.has(digest):
            tmp.unlink(missing_ok=True)  # identical bytes already staged or stored
        else:
            self._pending[digest] = tmp

    def commit(self, only: Iterable[str] | None = None) -> list[str]:
        """Publish staged blobs (all, or just those in `only`); drop the rest.

        If publishing fails half-way, the blobs this commit created are removed again,
        so the store ends as it was. Returns the digests this commit added.
        """
        wanted = set(self._pending) if only is None else set(only) & set(self._pending)
        created: list[str] = []
        try:
            for digest in sorted(wanted):
                if self.store._publish(digest, self._pending[digest]):
                    created.append(digest)
                del self._pending[digest]
        except BaseException:
            for digest in created:
                self.store.delete(digest)
            raise
        finally:
            self.abort()
        return created

    def abort(self) -> None:
        """Delete every staged blob not yet published. Idempotent."""
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()
        self._closed = True

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _ingest(
    store: ContentStore,
    source: Source,
    expected_digest: str | None,
    expected_size: int | None,
    media_type: str,
    *,
    staging: Staging | None,
) -> Descriptor:
    if expected_digest is not None:
        store.check_digest(expected_digest)
        present = staging.has(expected_digest) if staging is not None else store.has(expected_digest)
        if present:
            size = staging.size(expected_digest) if staging is not None else store.size(expected_digest)
            if expected_size is not None and size != expected_size:
                raise CorruptData(f"blob {expected_digest} is {size} bytes, expected {expected_size}")
            return Descriptor(media_type, expected_digest, size)
    writer = BlobWriter(
        store, expected_digest=expected_digest, expected_size=expected_size, media_type=media_type, staging=staging
    )
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            writer.write(source)
        elif isinstance(source, os.PathLike):
            with open(source, "rb") as f:
                _copy(f, writer)
        elif hasattr(source, "read"):
            _copy(source, writer)  # type: ignore[arg-type]
        else:
            for chunk in source:
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _copy(stream: BinaryIO, writer: BlobWriter) -> None:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        writer.write(chunk)
