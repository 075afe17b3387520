#!/usr/bin/env python3
"""Write a newc cpio archive (the initramfs format) from a list of entries.

    mkcpio.py OUT ENTRY...
      dir  PATH MODE
      file PATH MODE SOURCE
      nod  PATH MODE c|b MAJOR MINOR

Every entry is owned by 0:0 with mtime 0, so the archive is reproducible
and needs no root to build (device nodes included).  The archive ends with
the TRAILER!!! entry, padded to 512 bytes, so another archive (the per-VM
/hypr/config segment) can be appended to it.
"""
import stat
import sys


def header(ino, mode, size, name, rmaj=0, rmin=0):
    name_b = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, rmaj, rmin, len(name_b), 0]
    h = b"070701" + b"".join(b"%08X" % f for f in fields) + name_b
    return h + b"\0" * (-len(h) % 4)


def main(argv):
    out, args = argv[1], argv[2:]
    data = bytearray()
    ino = 1
    while args:
        kind, path, mode = args[0], args[1], int(args[2], 8)
        if kind == "dir":
            data += header(ino, stat.S_IFDIR | mode, 0, path)
            args = args[3:]
        elif kind == "file":
            with open(args[3], "rb") as f:
                body = f.read()
            data += header(ino, stat.S_IFREG | mode, len(body), path)
            data += body + b"\0" * (-len(body) % 4)
            args = args[4:]
        elif kind == "nod":
            ftype = stat.S_IFCHR if args[3] == "c" else stat.S_IFBLK
            data += header(ino, ftype | mode, 0, path, int(args[4]), int(args[5]))
            args = args[6:]
        else:
            sys.exit("mkcpio.py: unknown entry kind %r" % kind)
        ino += 1
    data += header(ino, 0, 0, "TRAILER!!!")
    data += b"\0" * (-len(data) % 512)
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main(sys.argv)
