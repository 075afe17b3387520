"""Layer and archive compression: detect by magic bytes, decompress as a stream.

Media types are hints written by whoever pushed the image; the bytes are the truth.
Like containerd and Docker, HYPR sniffs the first bytes and decompresses on the fly,
so no layer is ever held in memory or unpacked to disk just to read it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import queue
import threading
import zlib
from typing import BinaryIO, Literal

import zstandard

from hypr_engine.errors import CorruptData

Compression = Literal["gzip", "zstd", "xz", "bzip2"]

_MAGIC: list[tuple[bytes, Compression]] = [
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
]

# Errors the decompressors raise on bad input; all mean "the bytes are corrupt".
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zstandard.ZstdError,
    zlib.error,
    OSError,  # bz2 reports bad data as OSError (and gzip.BadGzipFile is one)
)


def detect(head: bytes) -> Compression | None:
    """Compression of a stream from its first bytes (at least 6), or None for plain data."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class _Prefixed(io.RawIOBase):
    """Re-attach bytes already read (the sniffed magic) in front of the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001 - buffer protocol
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def sniff(stream: BinaryIO) -> tuple[Compression | None, BinaryIO]:
    """Detect the compression of `stream` without losing the bytes read to detect it."""
    head = _read_exact(stream, 6)
    return detect(head), io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def decompressed(stream: BinaryIO, compression: Compression | None) -> BinaryIO:
    """A readable stream of the decompressed bytes of `stream`."""
    if compression is None:
        return stream
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        return io.BufferedReader(_ZstdReader(stream), buffer_size=1 << 20)  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(stream, mode="rb")  # type: ignore[return-value]
    if compression == "bzip2":
        return bz2.BZ2File(stream, mode="rb")  # type: ignore[return-value]
    raise CorruptData(f"unsupported compression {compression!r}")


def open_decompressed(stream: BinaryIO) -> tuple[Compression | None, BinaryIO]:
    """Sniff `stream` and return (compression, decompressed stream)."""
    compression, rewound = sniff(stream)
    return compression, decompressed(rewound, compression)


class _ZstdReader(io.RawIOBase):
    """Streaming zstd decoder that, unlike zstandard's stream_reader, reports truncation.

    zstandard's `stream_reader` returns a silent EOF on a cut-off frame; this feeds the
    decoder small input chunks (4 KiB: at zstd's worst ratio about 128 MiB of output, so
    a decompression bomb cannot balloon memory) and fails if the input ends mid-frame.
    Concatenated frames are decoded in sequence, as `zstd -d` does.
    """

    _IN_CHUNK = 4096

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001 - buffer protocol
        while not self._pending:
            data = self._stream.read(self._IN_CHUNK)
            if not data:
                if self._in_frame:
                    raise CorruptData("corrupt compressed data: zstd stream is truncated")
                return 0
            self._feed(data)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _feed(self, data: bytes) -> None:
        out = []
        while data:
            self._in_frame = True
            out.append(self._obj.decompress(data))
            if not self._obj.eof:
                break
            # Frame finished: anything after it starts the next frame.
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._in_frame = False
        self._pending = memoryview(b"".join(out))


def read_all_checked(stream: BinaryIO, sink=None, chunk: int = 1 << 20) -> int:  # noqa: ANN001
    """Read a decompressing stream to its end, passing chunks to `sink`; bad data -> CorruptData."""
    total = 0
    try:
        while True:
            data = stream.read(chunk)
            if not data:
                return total
            total += len(data)
            if sink is not None:
                sink(data)
    except DECOMPRESS_ERRORS as exc:
        raise CorruptData(f"corrupt compressed data: {exc}") from None


class PrefetchReader(io.RawIOBase):
    """Reads (and decompresses) `stream` ahead in a background thread, 1 MiB at a time.

    zlib, zstd, lzma and hashlib release the GIL while they work, so decompressing and
    hashing a layer overlaps with tar parsing in the caller's thread. Memory is bounded
    (a few chunks in flight). Errors of the producer are re-raised on the reader's side.
    `close()` stops the producer early (pass 2 of the rootfs build stops reading a
    layer once it has what it needs). `hasher`, if given, sees every byte in order.
    """

    _CHUNK = 1 << 20
    _DEPTH = 4

    def __init__(self, stream: BinaryIO, hasher=None) -> None:  # noqa: ANN001 - hashlib object
        super().__init__()
        self._queue: queue.Queue = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._current = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(stream, hasher), daemon=True)
        self._thread.start()

    def _produce(self, stream: BinaryIO, hasher) -> None:  # noqa: ANN001
        def put(item: object) -> bool:
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            while not self._stop.is_set():
                data = stream.read(self._CHUNK)
                if hasher is not None and data:
                    hasher.update(data)
                if not put(data) or not data:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001 - buffer protocol
        while not self._current:
            if self._done:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._current = memoryview(item)
        n = min(len(buf), len(self._current))
        buf[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
        super().close()
