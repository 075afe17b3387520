"""Layers -> squashfs: HYPR's conversion against `tar2sqfs` alone on the same merged tar.

    .venv/bin/python bench/convert.py [-n 5] [--image ~/.cache/hypr/images/debian-nginx.tar]

The image (default: the multi-layer debian-nginx test image, ~94 MB in 3 layers) is loaded
into a scratch content store twice: as its docker-archive holds it (layers uncompressed)
and rewritten as an OCI layout with gzip layers (what a registry pull stores). Then,
interleaved round by round (after one untimed warm-up of each):

- HYPR: `RootfsBuilder.build` into an empty cache, the whole path `hypr run` takes on a
  cache miss: pass 1 (decompress, parse, verify diff_ids, merge whiteouts, opaque dirs and
  hard links), pass 2 (the merged tar streamed into tar2sqfs), fsync, rename;
- floor: the same `tar2sqfs` command line (RootfsBuilder.command: same compressor, level,
  jobs, defaults) reading the merged tar of the same layers from a file, so the floor is the
  squashfs writer alone, with no layer handling at all.

Prints medians, p90, min and the ratio per variant, plus HYPR's own split (plan / write).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, fmt_s, header, median, ratio_row, stats_row  # noqa: E402

from hypr_engine.oci import writer as w  # noqa: E402
from hypr_engine.oci.archive import load_archive  # noqa: E402
from hypr_engine.oci.compression import open_decompressed  # noqa: E402
from hypr_engine.oci.content import ContentStore  # noqa: E402
from hypr_engine.oci.flatten import LayerInput, plan_layers, write_merged  # noqa: E402
from hypr_engine.oci.rootfs import RootfsBuilder  # noqa: E402


def _gzip_layout(store: ContentStore, image, scratch: Path) -> Path:
    """The same image with gzip layers, as an OCI layout (the layers' diff_ids do not change)."""
    tars = []
    for i, layer in enumerate(image.layers):
        path = scratch / f"layer{i}.tar"
        with store.open(layer.digest) as raw, open(path, "wb") as out:
            _, stream = open_decompressed(raw)
            shutil.copyfileobj(stream, out, 1 << 20)
        tars.append(path)
    layout = scratch / "gzip-layout"
    config = json.loads(store.read(image.config_digest))
    w.write_oci_layout(layout, tars, config, ref_name="bench", compression="gzip")
    for p in tars:
        p.unlink()
    return layout


def _merged_tar(store: ContentStore, image, dest: Path) -> None:
    inputs = [LayerInput(open=lambda d=l.digest: store.open(d), name=l.digest, diff_id=diff_id)
              for l, diff_id in zip(image.layers, image.diff_ids)]
    plan = plan_layers(inputs)
    with open(dest, "wb") as out:
        write_merged(plan, inputs, out)


def _hypr_once(store: ContentStore, image, cache: Path) -> tuple[float, float, float, int]:
    shutil.rmtree(cache, ignore_errors=True)
    builder = RootfsBuilder(cache, store)
    t0 = time.monotonic()
    path = builder.build(image.layers, image.diff_ids)
    elapsed = time.monotonic() - t0
    assert builder.last_stats is not None
    return elapsed, builder.last_stats.plan_s, builder.last_stats.write_s, path.stat().st_size


def _floor_once(merged: Path, out: Path, command: list[str]) -> tuple[float, int]:
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    with open(merged, "rb") as stdin:
        subprocess.run(command, stdin=stdin, stdout=subprocess.DEVNULL, check=True, timeout=600)
    elapsed = time.monotonic() - t0
    return elapsed, out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="timed rounds per variant (default 5)")
    ap.add_argument("--image", type=Path, default=CACHE / "images" / "debian-nginx.tar")
    args = ap.parse_args()
    if not args.image.exists():
        sys.exit(f"{args.image} is missing: run ./dev setup (scripts/build_test_images.py)")
    if shutil.which("tar2sqfs") is None:
        sys.exit("tar2sqfs not found: install squashfs-tools-ng")

    header(f"convert: {args.image.name} -> squashfs, HYPR vs tar2sqfs on the merged tar")
    scratch = Path(tempfile.mkdtemp(prefix="hypr-bench-convert-"))
    try:
        store = ContentStore(scratch / "blobs")
        [plain] = load_archive(args.image, store)
        [gz] = load_archive(_gzip_layout(store, plain, scratch), store)
        merged = scratch / "merged.tar"
        _merged_tar(store, plain, merged)
        floor_out = scratch / "floor.squashfs"
        command = RootfsBuilder(scratch / "probe", store).command(floor_out)
        print(f"   layers: {len(plain.layers)}, stored {sum(l.size for l in plain.layers) / 1e6:.1f} MB uncompressed, "
              f"{sum(l.size for l in gz.layers) / 1e6:.1f} MB gzip; merged tar {merged.stat().st_size / 1e6:.1f} MB")
        print(f"   floor: {' '.join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))} < merged.tar")
        print()

        variants = {"uncompressed layers": plain, "gzip layers": gz}
        results: dict[str, dict[str, list[float]]] = {}
        sizes: dict[str, int] = {}
        for name, image in variants.items():  # untimed warm-up (page cache, tar2sqfs binary)
            _hypr_once(store, image, scratch / "cache")
        _floor_once(merged, floor_out, command)
        for _ in range(args.n):
            for name, image in variants.items():
                r = results.setdefault(name, {"hypr": [], "plan": [], "write": [], "floor": []})
                total, plan_s, write_s, size = _hypr_once(store, image, scratch / "cache")
                r["hypr"].append(total)
                r["plan"].append(plan_s)
                r["write"].append(write_s)
                sizes[name] = size
                floor, sizes["floor"] = _floor_once(merged, floor_out, command)
                r["floor"].append(floor)
        for name, r in results.items():
            print(f"-- {name}")
            print(stats_row("HYPR RootfsBuilder.build (cache miss)", r["hypr"]))
            print(stats_row("  pass 1: plan (read, verify, merge)", r["plan"]))
            print(stats_row("  pass 2: merged stream into tar2sqfs", r["write"]))
            print(stats_row("floor: tar2sqfs < merged.tar", r["floor"]))
            print(ratio_row("HYPR / floor", r["hypr"], r["floor"]))
            print(f"  squashfs: HYPR {sizes[name] / 1e6:.1f} MB, floor {sizes['floor'] / 1e6:.1f} MB")
            print()
        plain_r = results["uncompressed layers"]
        print(f"   summary: HYPR {fmt_s(median(plain_r['hypr']))} vs tar2sqfs {fmt_s(median(plain_r['floor']))} "
              f"(uncompressed layers); gzip layers {fmt_s(median(results['gzip layers']['hypr']))}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
