"""UdpRelay over loopback: port maps [::1] -> 127.0.0.1, reply source, idle expiry, limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast

import pytest

from tests.support.ports import free_port
from totd_faith.config import Config, load_text
from totd_faith.endpoints import parse_endpoint
from totd_faith.policy import RelayAccess
from totd_faith.relay.stats import RelayStats
from totd_faith.relay.udp import UdpRelay, UdpSessions
from totd_faith.relay.udp_sessions import SessionKey


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


def config(listen_port: int, echo_port: int, extra: str = "") -> Config:
    return load_text(
        f"""
        [relay]
        {extra}
        [[relay.maps]]
        listen = "[::1]:{listen_port}"
        target = "127.0.0.1:{echo_port}"
        protocol = "udp"
        """
    )


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("::1", 0))
    yield sock
    sock.close()


async def exchange(sock: socket.socket, payload: bytes, port: int) -> tuple[bytes, object]:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, payload, ("::1", port))
    return await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5.0)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    port = free_port()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    try:
        yield port
    finally:
        transport.close()


def run(body: Callable[[int], Awaitable[None]]) -> None:
    """Run ``body(echo_port)`` on a fresh event loop with a UDP echo on 127.0.0.1."""

    async def main() -> None:
        async with echo_server() as port:
            await body(port)

    asyncio.run(main())


def test_map_relays_and_replies_from_listen_address(
    client: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(echo_port: int) -> None:
        port = free_port("::1")
        stats = RelayStats()
        cfg = config(port, echo_port)
        relay = UdpRelay(cfg, RelayAccess.from_config(cfg, frozenset()), stats)
        await relay.start()
        try:
            for i in range(3):
                data, source = await exchange(client, b"ping%d" % i, port)
                assert data == b"echo:ping%d" % i
                assert source[:2] == ("::1", port)  # type: ignore[index]
            assert stats.udp_sessions_created == 1 and stats.udp_sessions_active == 1
            assert stats.udp_datagrams_client_to_backend == 3
            assert stats.udp_bytes_backend_to_client == 3 * len(b"echo:ping0")
        finally:
            with caplog.at_level(logging.INFO, logger="totd_faith"):
                await relay.stop()
        assert stats.udp_sessions_active == 0
        (line,) = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
        assert f"-> [::1]:{port} (127.0.0.1:{echo_port})" in line
        assert "3 datagrams/15 bytes out, 3 datagrams/30 bytes in" in line
        assert line.endswith("ended: relay stopped")

    run(body)


def test_idle_session_expires(client: socket.socket) -> None:
    async def body(echo_port: int) -> None:
        port = free_port("::1")
        stats = RelayStats()
        cfg = config(port, echo_port, "udp_idle_timeout = 1.0")
        relay = UdpRelay(cfg, RelayAccess.from_config(cfg, frozenset()), stats)
        await relay.start()
        try:
            assert (await exchange(client, b"a", port))[0] == b"echo:a"
            assert stats.udp_sessions_active == 1
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5.0
            while stats.udp_sessions_active and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert stats.udp_sessions_active == 0
            # A new datagram opens a new session.
            assert (await exchange(client, b"b", port))[0] == b"echo:b"
            assert stats.udp_sessions_created == 2
        finally:
            await relay.stop()

    run(body)


def test_session_limit_and_denied_client() -> None:
    async def body(echo_port: int) -> None:
        port = free_port("::1")
        stats = RelayStats()
        cfg = config(port, echo_port, "max_udp_sessions = 1")
        relay = UdpRelay(cfg, RelayAccess.from_config(cfg, frozenset()), stats)
        await relay.start()
        socks = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for s in socks:
                s.setblocking(False)
                s.bind(("::1", 0))
            assert (await exchange(socks[0], b"1", port))[0] == b"echo:1"
            loop = asyncio.get_running_loop()
            for _ in range(3):
                await loop.sock_sendto(socks[1], b"2", ("::1", port))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loop.sock_recvfrom(socks[1], 100), 0.5)
            assert stats.udp_sessions_denied == {"relay.max_udp_sessions": 1}
            # Reload with clients that exclude ::1: the open session ends.
            strict = config(port, echo_port, 'clients = ["fd00::/8"]')
            await relay.reload(strict, RelayAccess.from_config(strict, frozenset()))
            assert stats.udp_sessions_active == 0
            await loop.sock_sendto(socks[0], b"3", ("::1", port))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loop.sock_recvfrom(socks[0], 100), 0.5)
            assert stats.udp_sessions_denied["client not in relay.clients"] == 1
        finally:
            for s in socks:
                s.close()
            await relay.stop()

    run(body)


def test_bind_failure_is_an_operator_error() -> None:
    async def body(echo_port: int) -> None:
        from totd_faith.errors import OperatorError

        blocker = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        blocker.bind(("::1", 0))
        port = blocker.getsockname()[1]
        cfg = config(port, echo_port)
        relay = UdpRelay(cfg, RelayAccess.from_config(cfg, frozenset()), RelayStats())
        try:
            with pytest.raises(OperatorError, match=rf"cannot listen for UDP on \[::1\]:{port}"):
                await relay.start()
        finally:
            blocker.close()

    run(body)


def test_reload_keeps_unchanged_listeners_and_swaps_the_rest() -> None:
    async def body(echo_port: int) -> None:
        keep, gone, new = free_port("::1"), free_port("::1"), free_port("::1")

        def two_maps(a: int, b: int) -> Config:
            return load_text(
                "\n".join(
                    f'[[relay.maps]]\nlisten = "[::1]:{p}"\ntarget = "127.0.0.1:{echo_port}"\n'
                    'protocol = "udp"'
                    for p in (a, b)
                )
            )

        stats = RelayStats()
        first = two_maps(keep, gone)
        relay = UdpRelay(first, RelayAccess.from_config(first, frozenset()), stats)
        await relay.start()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("::1", 0))
        try:
            assert (await exchange(sock, b"k", keep))[0] == b"echo:k"
            kept_socket = relay.listeners[0].sock
            second = two_maps(keep, new)
            await relay.reload(second, RelayAccess.from_config(second, frozenset()))
            assert relay.listeners[0].sock is kept_socket
            assert stats.udp_sessions_active == 1  # the session on the kept listener stays
            assert (await exchange(sock, b"k2", keep))[0] == b"echo:k2"
            assert stats.udp_sessions_created == 1
            assert (await exchange(sock, b"n", new))[0] == b"echo:n"
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                probe.bind(("::1", gone))  # the removed listener's port is free again
            finally:
                probe.close()
        finally:
            sock.close()
            await relay.stop()

    run(body)


def test_garbage_and_bursts_never_stop_the_relay() -> None:
    """Empty, maximum-size and many datagrams at once: every one is relayed."""

    async def body(echo_port: int) -> None:
        port = free_port("::1")
        stats = RelayStats()
        cfg = config(port, echo_port)
        relay = UdpRelay(cfg, RelayAccess.from_config(cfg, frozenset()), stats)
        await relay.start()
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("::1", 0))
        try:
            assert (await exchange(sock, b"", port))[0] == b"echo:"
            big = bytes(range(256)) * 200  # 51200 bytes
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, big, ("::1", port))
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5.0)
            assert data == b"echo:" + big
            for i in range(100):
                await loop.sock_sendto(sock, b"%d" % i, ("::1", port))
            got = set()
            while len(got) < 100:
                got.add(await asyncio.wait_for(loop.sock_recv(sock, 100), 5.0))
            assert got == {b"echo:%d" % i for i in range(100)}
            assert stats.udp_sessions_created == 1
        finally:
            sock.close()
            await relay.stop()

    run(body)


def test_sessions_of_a_prefix_removed_by_reload_end() -> None:
    """UdpSessions on its own: a prefix-mode session ends when its prefix goes away."""

    async def body(echo_port: int) -> None:
        text = 'prefixes = [{p}]\n[relay]\nrules = ["::1/128 permit 127.0.0.1/32"]\n'
        cfg = load_text(text.format(p='"2001:db8:64::/96"'))
        stats = RelayStats()
        sessions = UdpSessions(cfg, RelayAccess.from_config(cfg, frozenset()), stats)
        replies: list[bytes] = []
        got_reply = asyncio.Event()

        def reply(data: bytes) -> None:
            replies.append(data)
            got_reply.set()

        key = SessionKey(parse_endpoint("[::1]:4000"), parse_endpoint("[2001:db8:64::7f00:1]:7"))
        target = parse_endpoint(f"127.0.0.1:{echo_port}")
        session = sessions.from_client(
            key, b"hi", lambda: (target, cfg.prefixes[0]), lambda: (reply, None)
        )
        assert session is not None
        await asyncio.wait_for(got_reply.wait(), 5.0)
        assert replies == [b"echo:hi"]
        # Same prefix, other rules: the session stays.
        same = load_text(text.format(p='"2001:db8:64::/96", "2001:db8:1::/48"'))
        sessions.configure(same, RelayAccess.from_config(same, frozenset()))
        assert sessions.table.get(key) is session
        other = load_text(text.format(p='"2001:db8:65::/96"'))
        sessions.configure(other, RelayAccess.from_config(other, frozenset()))
        assert sessions.table.get(key) is None and session.handle.closed
        assert stats.udp_sessions_active == 0
        sessions.close("test over")

    run(body)
