"""Python work per query of the DNS proxy's UDP paths, in process, without system calls.

Run from the repository root:  python tests/bench/bench_miss_cpu.py [--names N] [--profile]

The real DnsService, UdpListener, UpstreamPool and wire-level DNS64 run on a
uvloop loop, but every socket is a fake: the client's datagrams are handed to
the listener directly, and the upstream sockets answer at once with what NSD
sends in bench_dns.py (AAAA: NODATA with the SOA; A: one A record, the zone's
NS and its glue; both with an OPT).  So the figures are the Python share of a
cold miss (AAAA + A upstream, synthesis, cache store) and of a scanned cache
hit, without the kernel's share: the steadier figure to optimise against on a
busy machine, beside bench_dns.py's end-to-end rates.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import types
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rrset  # noqa: E402
import uvloop  # noqa: E402

from totd_faith import upstream as upstream_module  # noqa: E402
from totd_faith.config import load_text  # noqa: E402
from totd_faith.dnsserver import DnsService  # noqa: E402
from totd_faith.dnsudp import UdpListener  # noqa: E402

ZONE = "bench.example."
SOA = f"{ZONE} 3600 IN SOA ns.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 300"


def replies_for(name: str, index: int) -> dict[bytes, bytes]:
    """Upstream replies by (lowercased question bytes): what NSD sends for an A-only name."""
    out = {}
    for rdtype in ("AAAA", "A"):
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if rdtype == "A":
            address = f"192.0.2.{1 + index % 254}"
            reply.answer.append(dns.rrset.from_text(name, 3600, "IN", "A", address))
            # NSD adds the zone's NS and its glue (minimal-responses: no, its default).
            reply.authority.append(dns.rrset.from_text(ZONE, 3600, "IN", "NS", f"ns.{ZONE}"))
            reply.additional.append(
                dns.rrset.from_text(f"ns.{ZONE}", 3600, "IN", "A", "192.0.2.53")
            )
        else:
            reply.authority.append(
                dns.rrset.from_text(ZONE, 3600, "IN", "SOA", " ".join(SOA.split()[4:]))
            )
        wire = reply.to_wire()
        end = 12 + len(dns.name.from_text(name).to_wire()) + 4
        out[wire[12:end].lower()] = wire
    return out


class FakeSocket:
    """Stands in for an upstream UDP socket: answers each query at once."""

    replies: dict[bytes, bytes] = {}
    ready: list[FakeSocket] = []

    def __init__(self, *args: Any) -> None:
        self.queue: deque[bytes] = deque()
        self._fd = os.eventfd(0)  # something add_reader accepts; never readable

    def connect(self, address: Any) -> None:
        pass

    def fileno(self) -> int:
        return self._fd

    def send(self, data: bytes) -> int:
        end = data.index(b"\x00", 12) + 5
        reply = self.replies[data[12:end].lower()]
        if not self.queue:
            # Readable now: one callback, which reads until EAGAIN, as an event
            # loop makes it (not one per datagram).
            FakeSocket.ready.append(self)
        self.queue.append(data[:2] + reply[2:])
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.queue:
            raise BlockingIOError
        return self.queue.popleft()

    def close(self) -> None:
        os.close(self._fd)


class FakeClientSocket:
    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent += 1
        return len(data)


async def run(names: int, profile: bool, queries: list[bytes]) -> list[tuple[str, float]]:
    config = load_text(
        'prefixes = ["2001:db8:64::/96"]\n'
        '[dns]\nlisten = ["127.0.0.1:5399"]\nupstreams = ["127.0.0.1:5398"]\n'
    )
    service = DnsService(config)
    from totd_faith.dns64 import Dns64

    service.resolver = Dns64(config, [])
    service.fast = DnsService._new_fast(config, [], service.resolver)
    service.upstreams = service._new_upstreams(config)
    client = FakeClientSocket()
    listener = UdpListener(service, client)  # type: ignore[arg-type]
    other = listener.other

    addr = ("127.0.0.1", 40000)
    ready = FakeSocket.ready

    pool = service.upstreams
    assert pool is not None
    channels = {}

    def pump() -> None:
        # What the event loop does after a batch of client datagrams: send the
        # queued upstream queries, read the replies (which queue more queries
        # or answers), until done; then send the answers.
        while pool._outbox or ready:
            if pool._outbox:
                pool._flush()
            while ready:
                sock = ready.pop()
                channel = channels.get(sock)
                if channel is None:
                    for upstream in pool.upstreams:
                        for candidate in upstream.channels:
                            if candidate is not None:
                                channels[candidate.sock] = candidate
                    channel = channels[sock]
                channel._readable()
        listener._flush()

    def cold() -> None:
        now = service.clock()
        for start in range(0, len(queries), 32):
            for query in queries[start : start + 32]:
                other(query, addr, now)
            pump()

    # Hot: the same queries again, now answered from the cache by the scanned
    # look-up; replay: the same bytes again within the second.
    def hot() -> None:
        now = service.clock()
        for start in range(0, len(queries), 32):
            for query in queries[start : start + 32]:
                other(query, addr, now)
            listener._flush()

    results = []
    for label, fn in (("cold miss (AAAA+A upstream, synthesis)", cold), ("cache hit", hot)):
        if profile and label.startswith("cold"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            continue
        # CPU time of this thread: time taken by other processes is not counted.
        start = time.thread_time()
        fn()
        elapsed = time.thread_time() - start
        results.append((label, elapsed / len(queries) * 1e6))
    assert client.sent >= len(queries), "answers were not sent"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the cold misses")
    parser.add_argument("--repeat", type=int, default=5, help="runs, each on a fresh server")
    args = parser.parse_args()
    qnames = [f"c{i}.{ZONE}" for i in range(args.names)]
    for i, name in enumerate(qnames):
        FakeSocket.replies.update(replies_for(name, i))
    queries = [
        dns.message.make_query(name, "AAAA", use_edns=0, payload=1232).to_wire() for name in qnames
    ]
    # Only the upstream module's sockets are fakes (uvloop needs real ones).
    fake = types.SimpleNamespace(**{k: getattr(socket, k) for k in dir(socket) if k.isupper()})
    fake.socket = FakeSocket
    upstream_module.socket = fake  # type: ignore[assignment]
    runs: dict[str, list[float]] = {}
    for _ in range(1 if args.profile else args.repeat):
        for label, micros in uvloop.run(run(args.names, args.profile, queries)):
            runs.setdefault(label, []).append(micros)
    print(
        f"# {args.names} names x {args.repeat} runs, python {sys.version.split()[0]}, "
        f"uvloop {uvloop.__version__}; CPU us per query: best / median"
    )
    for label, values in runs.items():
        print(f"{label:45s} {min(values):7.2f} / {statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
