"""The least a Python DNS cache can do per query: the hot-load reference for bench_dns.py.

Issue 3 measured "a minimal uvloop UDP cache in Python" at about 0.9x Unbound's
hot rate.  This is such a cache, so the benchmark can show that floor in the
same run as totd-faith and Unbound:

* one UDP socket read with ``add_reader`` on uvloop, up to 64 datagrams per
  wake-up with ``recvfrom``, the answers sent with ``sendto`` at the end of the
  batch (what totd-faith's listener does);
* a dictionary from the query's bytes after the ID to the answer's bytes
  after the ID: a hit costs one slice, one look-up and one concatenation;
* a miss is forwarded as it came to ``--upstream`` and its answer stored
  forever.  No TTLs, no EDNS sizes, no access control, no DNS64, no
  validation of anything: not a server anyone should run, only a floor.

Run as ``python tests/bench/floor_server.py --listen PORT --upstream HOST:PORT``.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import uvloop

BATCH = 64


def serve(port: int, upstream: tuple[str, int]) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", port))
    listener.setblocking(False)
    forwarder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forwarder.connect(upstream)
    forwarder.setblocking(False)
    answers: dict[bytes, bytes] = {}
    #: Forwarded queries by ID: (the query after its ID, the client).
    waiting: dict[bytes, tuple[bytes, Any]] = {}
    recvfrom, sendto = listener.recvfrom, listener.sendto
    outbox: list[tuple[bytes, Any]] = []

    def flush() -> None:
        for wire, addr in outbox:
            try:
                sendto(wire, addr)
            except OSError:
                pass
        outbox.clear()

    def from_clients() -> None:
        try:
            for _ in range(BATCH):
                try:
                    data, addr = recvfrom(65_535)
                except (BlockingIOError, InterruptedError):
                    return
                found = answers.get(data[2:])
                if found is not None:
                    outbox.append((data[:2] + found, addr))
                elif len(data) > 12:
                    waiting[data[:2]] = (data[2:], addr)
                    forwarder.send(data)
        finally:
            if outbox:
                flush()

    def from_upstream() -> None:
        for _ in range(BATCH):
            try:
                data = forwarder.recv(65_535)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                return
            asked = waiting.pop(data[:2], None)
            if asked is not None:
                answers[asked[0]] = data[2:]
                outbox.append((data, asked[1]))
        if outbox:
            flush()

    loop = uvloop.new_event_loop()
    loop.add_reader(listener.fileno(), from_clients)
    loop.add_reader(forwarder.fileno(), from_upstream)
    try:
        loop.run_forever()
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True, help="UDP port on 127.0.0.1")
    parser.add_argument("--upstream", required=True, help="HOST:PORT that answers misses")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    try:
        serve(args.listen, (host, int(port)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
