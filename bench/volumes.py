"""Volume benchmark: what a named volume (ext4 disk) and a bind mount (9p) cost against the
VM's own writable layer (the floor: the overlay upper on the per-VM ext4 disk), and what
mounts add to a boot.

    .venv/bin/python bench/volumes.py [-n 5]

One VM (`hypr run -d -v benchvol:/vol -v HOSTDIR:/share hypr/busybox sleep 3600`); each
round, interleaved, in /root (upper), /vol and /share: write 32 MiB and sync; create 200
small files and sync. Times are the guest's own (/proc/uptime around the work, 10 ms
resolution), so the CLI and the agent are not in them. Then `hypr run --rm ... true` with no
mount against the same with 19 volumes (the most the device plan allows), interleaved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HYPR_CMD,
    IMAGE,
    Sandbox,
    add_common_args,
    header,
    ratio_row,
    stats_row,
)

SCRIPT = (
    "d=$0; rm -rf $d/b; mkdir $d/b; "
    "s=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of=$d/b/big bs=1M count=32 2>/dev/null; sync; "
    "e=$(cut -d' ' -f1 /proc/uptime); echo $s $e; "
    "s=$(cut -d' ' -f1 /proc/uptime); n=0; while [ $n -lt 200 ]; do echo x > $d/b/s$n; n=$((n+1)); done; sync; "
    "e=$(cut -d' ' -f1 /proc/uptime); echo $s $e"
)
PLACES = {"upper (floor)": "/root", "ext4 volume": "/vol", "9p bind": "/share"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="rounds (default 5)")
    add_common_args(ap)
    args = ap.parse_args()
    with Sandbox("volumes", pyc_cache=not args.no_pyc_cache) as sb:
        header("volumes: ext4 volume and 9p bind vs the writable layer", sb)
        sb.load_busybox()
        share = Path(tempfile.mkdtemp(prefix="hb-share-", dir="/tmp"))
        big: dict[str, list[float]] = {k: [] for k in PLACES}
        small: dict[str, list[float]] = {k: [] for k in PLACES}
        try:
            sb.hypr("run", "-d", "--name", "bench", "-v", "benchvol:/vol", "-v", f"{share}:/share",
                    IMAGE, "sleep", "3600")
            for _ in range(args.n):
                for name, path in PLACES.items():
                    out = sb.hypr("exec", "bench", "sh", "-c", SCRIPT, path).stdout.decode().split()
                    t = [float(x) for x in out]
                    big[name].append(t[1] - t[0])
                    small[name].append(t[3] - t[2])
            sb.hypr("rm", "-f", "bench")
            print("write 32 MiB + sync (guest time)")
            for name in PLACES:
                print(stats_row(name, big[name]))
            for name in list(PLACES)[1:]:
                print(ratio_row(f"{name} / upper", big[name], big["upper (floor)"]))
            print("\n200 small files + sync (guest time)")
            for name in PLACES:
                print(stats_row(name, small[name]))
            for name in list(PLACES)[1:]:
                print(ratio_row(f"{name} / upper", small[name], small["upper (floor)"]))
            volumes = [a for i in range(19) for a in ("-v", f"b{i}:/m/{i}")]
            sb.hypr("run", "--rm", *volumes, IMAGE, "true")   # creates the volumes, untimed
            plain, mounted = [], []
            for _ in range(args.n):
                t, proc = sb.timed([*HYPR_CMD, "run", "--rm", IMAGE, "true"])
                assert proc.returncode == 0, proc.stderr
                plain.append(t)
                t, proc = sb.timed([*HYPR_CMD, "run", "--rm", *volumes, IMAGE, "true"])
                assert proc.returncode == 0, proc.stderr
                mounted.append(t)
            print("\nhypr run --rm true (spawn to exit)")
            print(stats_row("no mounts (floor)", plain))
            print(stats_row("19 volumes", mounted))
            print(ratio_row("19 volumes / none", mounted, plain))
        finally:
            import shutil

            shutil.rmtree(share, ignore_errors=True)


if __name__ == "__main__":
    main()
