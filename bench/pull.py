"""Pull benchmark: `hypr pull` against `skopeo copy docker://... oci:DIR` of the same image.

    .venv/bin/python bench/pull.py [-n 7] [--layers 6] [--layer-mib 10] [--no-pyc-cache]

A local docker-registry (plain HTTP on 127.0.0.1, storage in the sandbox) serves an
image the benchmark builds: `--layers` layers of `--layer-mib` MiB of random (so
incompressible) data each, gzip-compressed by hypr_engine/oci/writer.py, pushed with
skopeo. Then, interleaved round by round after an untimed warm-up of each:

- `hypr pull REF` into a data directory that does not have the image (after each run,
  an untimed `hypr rmi` removes it and its blobs again): resolve, fetch every blob (4
  at a time), verify sizes and digests while streaming, publish, record;
- the floor: `skopeo copy docker://REF oci:DIR` into a fresh directory (Go, parallel
  layer downloads, digests verified).

Both are whole processes, spawn to exit. Prints medians, p90, min and the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HYPR_CMD, ROOT, Sandbox, add_common_args, header, loadavg, ratio_row, stats_row  # noqa: E402

sys.path.insert(0, str(ROOT))
from hypr_engine.oci import writer as w  # noqa: E402
from tests.registry.peers import Registry, skopeo_copy  # noqa: E402


def build_image(layout: Path, layers: int, layer_mib: int) -> w.WrittenImage:
    rnd = random.Random(42)
    tars = []
    for i in range(layers):
        data = rnd.randbytes(layer_mib << 20)
        tars.append(w.layer_tar([w.directory(f"data{i}"), w.file(f"data{i}/blob.bin", data)]))
    config = {"created": "2024-01-01T00:00:00Z", "config": {"Cmd": ["true"]}}
    return w.write_oci_layout(layout, tars, config, "bench", "gzip")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=7, help="timed runs of each")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--layer-mib", type=int, default=10)
    add_common_args(ap)
    args = ap.parse_args()

    with Sandbox("pull", pyc_cache=not args.no_pyc_cache) as sb:
        header("pull: hypr pull vs skopeo copy docker:// -> oci:", sb)
        registry = Registry(sb.scratch / "registry")
        try:
            layout = sb.scratch / "layout"
            image = build_image(layout, args.layers, args.layer_mib)
            size = sum(d.size for d in image.layers)
            ref = f"{registry.host}/bench/pull:1"
            skopeo_copy(f"oci:{layout}:bench", f"docker://{ref}", fmt="oci")
            print(f"   image: {len(image.layers)} layers, {size / (1 << 20):.1f} MiB compressed "
                  f"(random data, gzip), served by docker-registry on {registry.host}")
            print(f"   load average before: {loadavg()}\n")

            hypr_times: list[float] = []
            skopeo_times: list[float] = []
            data = sb.data
            for i in range(args.n + 1):
                t, proc = sb.timed([*HYPR_CMD, "pull", "-q", ref], timeout=600)
                if proc.returncode != 0 or proc.stdout.decode().strip() != ref:
                    raise SystemExit(f"hypr pull failed: {proc.stderr.decode(errors='replace')[-1000:]}")
                dest = sb.scratch / f"oci-{i}"
                t2, proc2 = sb.timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                      f"docker://{ref}", f"oci:{dest}:bench"], timeout=600)
                if proc2.returncode != 0:
                    raise SystemExit(f"skopeo copy failed: {proc2.stderr.decode(errors='replace')[-1000:]}")
                if i > 0:   # run 0 is the warm-up
                    hypr_times.append(t)
                    skopeo_times.append(t2)
                stored = sum(f.stat().st_size for f in (data / "blobs" / "sha256").iterdir())
                assert stored >= size, (stored, size)
                sb.hypr("rmi", ref)
                assert not list((data / "blobs" / "sha256").iterdir()), "rmi left blobs behind"

            print(stats_row("hypr pull", hypr_times))
            print(stats_row("skopeo copy docker:// oci: (floor)", skopeo_times))
            print(ratio_row("hypr pull / skopeo copy", hypr_times, skopeo_times))
            mib = size / (1 << 20)
            print(f"\n   throughput (median): hypr {mib / sorted(hypr_times)[len(hypr_times) // 2]:.0f} MiB/s, "
                  f"skopeo {mib / sorted(skopeo_times)[len(skopeo_times) // 2]:.0f} MiB/s")
            print(f"   load average after: {loadavg()}")
        finally:
            registry.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
