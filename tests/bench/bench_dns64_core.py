"""Cost of the sans-IO DNS64 core per query path, next to dnspython's own message costs.

Run from the repository root:  python tests/bench/bench_dns64_core.py [--count N]

It times Dns64.resolve() driven with pre-parsed upstream replies (no sockets,
no wire parsing), so the figures are the core's own share of a cache miss.
dnspython's make_query / from_wire / to_wire of the same messages are printed
beside them as the yardstick: the core should cost about as much as building
one small message per upstream query it asks.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dns.message  # noqa: E402

from tests.unit.dns64_support import dns64, host, query, upstream  # noqa: E402

CLIENT = ipaddress.ip_address("::1")
SOA = "example. 3600 IN SOA ns.example. admin.example. 1 3600 600 86400 300"


def finish(gen: object) -> dns.message.Message:
    try:
        next(gen)  # type: ignore[call-overload]
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("expected a local answer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    count = parser.parse_args().count

    resolver = dns64(hosts=(host("192.0.2.10", "cvsup.example."),))
    aaaa_nodata = upstream(authority=SOA)(dns.message.make_query("v4.example.", "AAAA"))
    a_reply = upstream(answer="v4.example. 900 IN A 192.0.2.33")(
        dns.message.make_query("v4.example.", "A")
    )
    aaaa_real = upstream(answer="dual.example. 300 IN AAAA 2001:db8::1")(
        dns.message.make_query("dual.example.", "AAAA")
    )
    q_syn, q_real, q_fwd = query("v4.example."), query("dual.example."), query("v4.example.", "A")
    q_local, q_host = query("ipv4only.arpa."), query("cvsup.example.")
    wire_a = a_reply.to_wire()

    def synthesis() -> None:
        gen = resolver.resolve(q_syn, CLIENT)
        next(gen)
        gen.send(aaaa_nodata)
        try:
            gen.send(a_reply)
        except StopIteration:
            return

    def real_aaaa() -> None:
        gen = resolver.resolve(q_real, CLIENT)
        next(gen)
        try:
            gen.send(aaaa_real)
        except StopIteration:
            return

    def forward() -> None:
        gen = resolver.resolve(q_fwd, CLIENT)
        next(gen)
        try:
            gen.send(a_reply)
        except StopIteration:
            return

    cases: list[tuple[str, Callable[[], object]]] = [
        ("core: AAAA synthesized (2 upstream queries)", synthesis),
        ("core: AAAA real (1 upstream query)", real_aaaa),
        ("core: A forwarded (1 upstream query)", forward),
        ("core: ipv4only.arpa AAAA (local)", lambda: finish(resolver.resolve(q_local, CLIENT))),
        ("core: hosts AAAA (local)", lambda: finish(resolver.resolve(q_host, CLIENT))),
        ("dnspython: make_query", lambda: dns.message.make_query("v4.example.", "A")),
        ("dnspython: from_wire (A reply)", lambda: dns.message.from_wire(wire_a)),
        ("dnspython: to_wire (A reply)", a_reply.to_wire),
    ]
    for label, fn in cases:
        for _ in range(min(1000, count)):
            fn()
        start = time.perf_counter()
        for _ in range(count):
            fn()
        elapsed = time.perf_counter() - start
        print(f"{label:48s} {elapsed / count * 1e6:8.1f} us  {count / elapsed:10.0f} /s")


if __name__ == "__main__":
    main()
