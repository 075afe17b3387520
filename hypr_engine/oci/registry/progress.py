"""What a pull or push reports while it runs (streamed to the CLI, the dashboard and over gRPC)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from hypr_engine.models import ImageInfo

# stage: "resolved" (the manifest is known: message says what is pulled/pushed),
#        "blob" (one blob's state: `id` is its digest), "done" (the end: message is
#        the manifest digest, `image` the image pulled).
# status of a blob: waiting, exists, downloading, retrying, complete, uploading,
#        pushed, mounted, locked (another pull is fetching it).


@dataclass
class Progress:
    stage: str
    id: str = ""
    status: str = ""
    current: int = 0
    total: int = 0
    message: str = ""
    image: "ImageInfo | None" = None

    @property
    def short_id(self) -> str:
        return self.id.partition(":")[2][:12] or self.id


Emit = Callable[[Progress], None]


class Throttle:
    """Byte-count updates for one blob at most every `interval` seconds (the first and last always)."""

    def __init__(self, emit: Emit, digest: str, total: int, status: str, interval: float = 0.1) -> None:
        self._emit = emit
        self._digest = digest
        self._total = total
        self._status = status
        self._interval = interval
        self._last = 0.0

    def update(self, current: int) -> None:
        now = time.monotonic()
        if current >= self._total or now - self._last >= self._interval:
            self._last = now
            self._emit(Progress("blob", self._digest, self._status, current, self._total))
