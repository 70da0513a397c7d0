"""Helpers for the DNS proxy tests: an in-process fake upstream, a pass-through
resolver (stands in for the DNS64 core where only the shell is under test), a
controllable clock and small async clients."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.support.ports import free_port
from totd_faith import config as config_module
from totd_faith.config import Config
from totd_faith.dnsserver import DnsService
from totd_faith.endpoints import Endpoint
from totd_faith.runtime import new_event_loop

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coroutine`` on a fresh uvloop loop with an overall deadline."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    finally:
        loop.close()


class PassThrough:
    """Forwards the question unchanged; REFUSED outside dns.allow."""

    def __init__(self, config: Config, hosts: Any = ()) -> None:
        self.allow = config.dns.allow

    def allowed(self, client: Any) -> bool:
        return client in self.allow

    def synthesis_enabled_for(self, client: Any) -> bool:
        return True

    def resolve(
        self, query: dns.message.Message, client: Any
    ) -> Generator[dns.message.QueryMessage, dns.message.Message | None, dns.message.Message]:
        response = dns.message.make_response(query)
        if not self.allowed(client):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        outgoing = dns.message.make_query(
            question.name, question.rdtype, question.rdclass, use_edns=0, payload=1232
        )
        reply = yield outgoing
        if reply is None:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        response.set_rcode(reply.rcode())
        response.answer = reply.answer
        response.authority = reply.authority
        return response


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def answer_a(query: dns.message.Message, address: str, ttl: int = 300) -> bytes:
    """An A answer (whatever was asked) for the query's name."""
    response = dns.message.make_response(query)
    name = query.question[0].name
    response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", address))
    return response.to_wire()


Behaviour = Callable[[dns.message.Message, bytes], Awaitable[list[bytes]]]


@dataclass
class FakeUpstream:
    """A UDP+TCP DNS server on 127.0.0.1 whose replies a test scripts."""

    behaviour: Behaviour
    tcp_behaviour: Behaviour | None = None
    endpoint: Endpoint = field(init=False)
    udp_queries: int = 0
    tcp_queries: int = 0
    tcp_connections: int = 0
    #: Answer this many queries on a TCP connection, then close it when the
    #: next one arrives, unanswered (a server's idle timeout or query limit
    #: racing with the client's next query).
    tcp_close_after: int | None = None
    transport: asyncio.DatagramTransport | None = None
    server: asyncio.base_events.Server | None = None

    async def start(self, port: int = 0) -> FakeUpstream:
        """Listen on ``port`` (UDP and TCP), or on a free one."""
        loop = asyncio.get_running_loop()
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                fake.udp_queries += 1
                asyncio.ensure_future(fake._reply_udp(data, addr))

        for _ in range(50):
            # UDP on a kernel-chosen port, then TCP on the same number: retry if
            # some other process holds that TCP port.
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))
            bound = transport.get_extra_info("sockname")[1]
            try:
                self.server = await asyncio.start_server(self._tcp, "127.0.0.1", bound)
            except OSError:
                transport.close()
                if port:
                    raise
                continue
            self.transport = cast(asyncio.DatagramTransport, transport)
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.endpoint = Endpoint(ipaddress.ip_address("127.0.0.1"), bound)
        return self

    async def _reply_udp(self, data: bytes, addr: tuple[Any, ...]) -> None:
        query = dns.message.from_wire(data)
        for wire in await self.behaviour(query, data):
            assert self.transport is not None
            self.transport.sendto(wire, addr)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tcp_connections += 1
        answered = 0
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                if answered == self.tcp_close_after:
                    break
                self.tcp_queries += 1
                query = dns.message.from_wire(data)
                behaviour = self.tcp_behaviour or self.behaviour
                for wire in await behaviour(query, data):
                    writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.server is not None:
            self.server.close()


def replies(address: str) -> Behaviour:
    async def behaviour(query: dns.message.Message, wire: bytes) -> list[bytes]:
        return [answer_a(query, address)]

    return behaviour


def make_config(upstreams: list[Endpoint], **dns: Any) -> Config:
    table: dict[str, Any] = {
        "dns": {
            "listen": [f"127.0.0.1:{free_port()}"],
            "upstreams": [str(e) for e in upstreams],
            **dns,
        }
    }
    return config_module.from_table(table)


async def start_service(
    config: Config, clock: Callable[[], float] | None = None, resolver: Any = PassThrough
) -> tuple[DnsService, Endpoint]:
    kwargs: dict[str, Any] = {"resolver_factory": resolver}
    if clock is not None:
        kwargs["clock"] = clock
    service = DnsService(config, **kwargs)
    await service.start()
    udp = next(address for proto, address in service.addresses if proto == "udp")
    return service, Endpoint(ipaddress.ip_address(udp[0]), udp[1])


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait(data)


async def udp_exchange(endpoint: Endpoint, wire: bytes, timeout: float = 3.0) -> bytes | None:
    """Send ``wire`` and return the first datagram back (None on timeout)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Client, remote_addr=endpoint.sockaddr
    )
    try:
        transport.sendto(wire)
        try:
            return await asyncio.wait_for(protocol.queue.get(), timeout)
        except TimeoutError:
            return None
    finally:
        transport.close()


async def udp_query(
    endpoint: Endpoint, query: dns.message.Message, timeout: float = 3.0
) -> dns.message.Message:
    data = await udp_exchange(endpoint, query.to_wire(), timeout)
    assert data is not None, f"no answer from {endpoint}"
    return dns.message.from_wire(data)


async def tcp_exchange(
    endpoint: Endpoint, messages: list[bytes], expect: int, timeout: float = 5.0
) -> list[bytes]:
    """Send framed ``messages`` on one connection (pipelined), read ``expect`` replies."""
    reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
    try:
        writer.write(b"".join(struct.pack("!H", len(m)) + m for m in messages))
        out = []
        async with asyncio.timeout(timeout):
            for _ in range(expect):
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out.append(await reader.readexactly(size))
        return out
    finally:
        writer.close()


def a_query(name: str, rdtype: str = "A", **kwargs: Any) -> dns.message.QueryMessage:
    return dns.message.make_query(name, dns.rdatatype.from_text(rdtype), **kwargs)
