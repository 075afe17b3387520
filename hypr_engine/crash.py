"""Named crash points for fault tests.

`crash_point("start.after_starting")` ends the process at once with exit status 99
(`os._exit`: no cleanup, no finally blocks, as a SIGKILL or a power cut would) when
the environment variable HYPR_CRASH_AT names that point. The fault tests
(tests/daemon/test_crash.py) set it for hyprd only, run the operation, restart hyprd
and check that the state is consistent and that `rm -f` and cleanup leave nothing.

The points, in call order:

| name                | where                                                             |
|---------------------|-------------------------------------------------------------------|
| create.after_insert | vms.create: the VM's row is inserted, nothing else exists yet     |
| start.after_starting| vms.start: the row says starting, no supervisor spawned yet       |
| start.after_spawn   | vms.start: the supervisor runs, the boot has not been waited for  |
| stop.after_stopping | vms.stop: the row says stopping, the supervisor was not asked yet |
| rm.after_removing   | vms.remove: the row says removing, the VM still runs              |
| rm.after_kill       | vms.remove: the VM's processes are gone, its files and row remain |
| load.after_blobs    | images.load: the blobs are in the store, no image row yet         |
"""

from __future__ import annotations

import os

CRASH_EXIT_STATUS = 99


def crash_point(name: str) -> None:
    if os.environ.get("HYPR_CRASH_AT") == name:
        os._exit(CRASH_EXIT_STATUS)
