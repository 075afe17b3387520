"""OCI images: references, content store, image configs, archives, root filesystems.

Modules (import them directly; this package imports nothing, so `hypr ps` stays fast):

- `reference`     parse and normalise image references like Docker (`busybox` -> docker.io/library/busybox:latest)
- `digest`        digest validation, ChainID
- `descriptor`    descriptors and media types
- `content`       content-addressed blob store with atomic, verified ingest and all-or-nothing staging
- `image_config`  the image config (entrypoint, cmd, env, ...), validated
- `manifest`      manifests and indexes: parse, build, pick a platform
- `compression`   sniff and stream-decompress gzip/zstd/xz/bzip2
- `tarstream`     fast, strict tar reading/writing over streams
- `archive`       `hypr load` (docker-archive, oci-archive, OCI layout) and `hypr import`
- `writer`        write layer tars, OCI layouts, oci-archives and docker-archives
- `flatten`       merge layers (whiteouts, opaque dirs, hard links, safety checks) into one tar stream
- `rootfs`        layers -> squashfs via tar2sqfs, cached by ChainID
- `squashfs`      read a built rootfs from the host (listing, one file)
- `busybox_image` a small deterministic busybox image from the host's busybox-static
"""
