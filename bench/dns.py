"""The user networks' DNS resolver against the floor of any Python DNS answer.

    .venv/bin/python bench/dns.py [--queries N]

No VM and no root: the real resolver process (hypr_engine/net/resolver.py) serves a
scratch hypr.db on 127.0.0.1; the floor is a bare asyncio UDP server in the same
interpreter that answers every query with one fixed A record (no parsing beyond the
header, no database). Sequential round trips from one client, interleaved A, B, A, B:

- `name, db unchanged`: the steady state (PRAGMA data_version per query, no re-read);
- `name, db changed before each query`: a write lands between queries (a VM started
  or stopped), so each answer re-reads the endpoints first (200 VMs on the network).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PY, die_with_parent, header, ratio_row, stats_row  # noqa: E402
from hypr_engine.net import resolver  # noqa: E402
from hypr_engine.state.schema import connect, migrate  # noqa: E402

FLOOR = r"""
import asyncio, socket, struct, sys
class P(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, d, a):
        end = 12
        while d[end]: end += d[end] + 1
        end += 5
        self.t.sendto(d[:2] + b"\x85\x80\x00\x01\x00\x01\x00\x00\x00\x00" + d[12:end]
                      + struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton("10.1.1.2"), a)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", int(sys.argv[1])))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(sock: socket.socket, port: int, name: str) -> float:
    q = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
    t0 = time.perf_counter()
    sock.sendto(q, ("127.0.0.1", port))
    reply = sock.recv(512)
    elapsed = time.perf_counter() - t0
    assert reply[6:8] == b"\x00\x01", "no answer"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    header("bench/dns.py: a user network's resolver vs a bare asyncio UDP answer")
    scratch = Path(tempfile.mkdtemp(prefix="hypr-bench-dns-"))
    conn = connect(scratch / "hypr.db")
    migrate(conn)
    net = "n" * 64
    conn.execute("INSERT INTO networks (id, name, driver, subnet, gateway, created_at) "
                 "VALUES (?, 'bench', 'bridge', '10.1.0.0/16', '10.1.0.1', 0)", (net,))
    for i in range(200):
        vm = f"{i:064x}"
        conn.execute("INSERT INTO vms (id, name, image_id, image_ref, spec_json, state, created_at) "
                     "VALUES (?, ?, 'i', 'i', '{}', 'running', 0)", (vm, f"vm{i}"))
        conn.execute("INSERT INTO endpoints (vm_id, network_id, ip, mac, aliases_json, position) "
                     "VALUES (?, ?, ?, ?, ?, 0)", (vm, net, f"10.1.{i // 250}.{i % 250 + 2}",
                                                   f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", json.dumps([f"a{i}"])))
    record = scratch / "resolver.json"
    port, floor_port = free_port(), free_port()
    floor = subprocess.Popen([PY, "-c", FLOOR, str(floor_port)], stdout=subprocess.PIPE, text=True,
                             preexec_fn=die_with_parent)
    try:
        assert floor.stdout.readline().strip() == "ready"
        resolver.start(record, str(scratch / "hypr.db"), net, "127.0.0.1", port=port, upstream="127.0.0.9:9")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for _ in range(50):  # warm-up, untimed
                query(sock, port, "vm7"), query(sock, floor_port, "vm7")
            hypr, base, changed, base2 = [], [], [], []
            for i in range(args.queries):
                hypr.append(query(sock, port, "vm123"))
                base.append(query(sock, floor_port, "vm123"))
            for i in range(args.queries // 4):
                conn.execute("UPDATE vms SET restart_count = restart_count + 1 WHERE id=?", (f"{i % 200:064x}",))
                changed.append(query(sock, port, "a42"))
                base2.append(query(sock, floor_port, "a42"))
        print(stats_row("resolver: name, db unchanged", hypr))
        print(stats_row("floor: fixed answer", base))
        print(stats_row("resolver: name, db changed before each query", changed))
        print(stats_row("floor: fixed answer (same rounds)", base2))
        print()
        print(ratio_row("resolver / floor, db unchanged", hypr, base))
        print(ratio_row("resolver / floor, db changed each query", changed, base2))
    finally:
        resolver.stop(record)
        floor.kill()
        floor.wait()
        conn.close()
        for p in sorted(scratch.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        scratch.rmdir()


if __name__ == "__main__":
    main()
