"""Per-blob file locks: two pulls of the same blob download it once.

Embedded engines (each `hypr` without a daemon) share the data directory, so the lock
must work across processes: `flock` on `<store>/locks/<hex>.lock`. flock locks belong to
an open file description, so two tasks of one process (hyprd) exclude each other too.
A pull takes the locks of every blob it may fetch, in digest order (so two pulls never
wait on each other in a circle), then re-checks the store: a blob another pull has just
published is not fetched again. Lock files stay (empty) so no process ever locks an
unlinked file while another creates a new one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

from hypr_engine.errors import Timeout
from hypr_engine.oci.digest import digest_hex

LOCK_TIMEOUT = 1800.0     # a pull waits this long for another pull of the same blob
POLL = 0.05


class BlobLocks:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fds: list[int] = []

    async def acquire(self, digests: list[str], *, timeout: float = LOCK_TIMEOUT,
                      on_wait=None) -> None:  # noqa: ANN001 - callable(digest)
        """Lock every digest (sorted, deduplicated); `on_wait(digest)` once per lock that must wait."""
        deadline = time.monotonic() + timeout
        try:
            for digest in sorted(set(digests)):
                fd = os.open(self.dir / f"{digest_hex(digest)}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._fds.append(fd)
                waited = False
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if not waited and on_wait is not None:
                            on_wait(digest)
                        waited = True
                        if time.monotonic() > deadline:
                            raise Timeout(f"another pull has been fetching blob {digest} for more than "
                                          f"{timeout:.0f} s") from None
                        await asyncio.sleep(POLL)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)   # closing drops the flock
        self._fds.clear()
