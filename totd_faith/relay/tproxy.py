"""All-ports mode: every TCP and UDP port of the prefixes, via nftables tproxy.

At start the relay opens one transparent TCP listener and one transparent UDP
socket on ``[::]:relay.tproxy_port`` (``IPV6_TRANSPARENT``), then installs the
nft table and policy route of :func:`totd_faith.hostsetup.tproxy_steps`: the
tproxy rule hands each packet for a prefix address to those sockets without
rewriting it, so

* an accepted TCP socket's ``getsockname()`` is the address and port the
  client dialled, and :meth:`TcpRelay.handle` decodes it as in prefix mode;
* a UDP datagram's original destination arrives as ``IPV6_ORIGDSTADDR``
  ancillary data.  Each UDP session gets a transparent socket bound to that
  original destination and connected to the client: replies leave from the
  address and port the client sent to, and the kernel's tproxy socket lookup
  hands the client's later datagrams straight to that socket.

At stop it removes exactly the steps it applied.  Locally generated traffic
does not pass prerouting, so a client on the relay host itself is not caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

from totd_faith import hostexec, hostsetup
from totd_faith.config import Config
from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError
from totd_faith.policy import RelayAccess
from totd_faith.relay import sockopts
from totd_faith.relay.stats import RelayStats
from totd_faith.relay.tcp import TcpRelay
from totd_faith.relay.udp import (
    BATCH,
    MAX_DATAGRAM,
    ReplyPath,
    Route,
    Sockaddr,
    UdpSessions,
    endpoint_of,
)
from totd_faith.relay.udp_sessions import SessionKey, decode_destination

log = logging.getLogger("totd_faith.relay.tproxy")

NEEDS_PRIVILEGE = (
    "all-ports mode needs root or CAP_NET_ADMIN (transparent sockets, nftables tproxy "
    "and a policy route); run as root or grant the capability "
    "(systemd: AmbientCapabilities=CAP_NET_ADMIN)"
)
_EMFILE_PAUSE = 0.1


def _transparent_socket(
    kind: int, bind: tuple[str, int], *, reuse: bool, reuse_port: bool = False
) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Worker processes (service.workers) share the tproxy port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sockopts.enable_transparent(sock)
        sock.setblocking(False)
        sock.bind(bind)
    except OSError:
        sock.close()
        raise
    return sock


def open_tproxy_sockets(port: int) -> tuple[socket.socket, socket.socket]:
    """The transparent TCP listener and UDP socket on ``[::]:port``."""
    tcp = udp = None
    try:
        tcp = _transparent_socket(socket.SOCK_STREAM, ("::", port), reuse=True, reuse_port=True)
        tcp.listen(4096)
        udp = _transparent_socket(socket.SOCK_DGRAM, ("::", port), reuse=False, reuse_port=True)
        sockopts.enable_origdstaddr(udp)
    except PermissionError:
        for sock in (tcp, udp):
            if sock is not None:
                sock.close()
        raise OperatorError(NEEDS_PRIVILEGE) from None
    except OSError as exc:
        for sock in (tcp, udp):
            if sock is not None:
                sock.close()
        hint = "; set relay.tproxy_port to a free port" if exc.errno == errno.EADDRINUSE else ""
        raise OperatorError(
            f"cannot open the all-ports sockets on [::]:{port}: {exc.strerror or exc}{hint}"
        ) from None
    return tcp, udp


def reply_socket(source: Endpoint, client: Sockaddr) -> socket.socket:
    """A transparent UDP socket bound to ``source`` (the original destination), connected
    to ``client``.  SO_REUSEADDR lets sessions of several clients share one source."""
    sock = _transparent_socket(socket.SOCK_DGRAM, source.sockaddr, reuse=True)
    try:
        sock.connect(client)
    except OSError:
        sock.close()
        raise
    return sock


class TproxyRelay:
    """All-ports relaying for TCP and UDP (a service part; see the module docstring)."""

    name = "all-ports relay"

    def __init__(
        self, config: Config, access: RelayAccess, tcp_relay: TcpRelay, stats: RelayStats
    ) -> None:
        self.config = config
        self.tcp_relay = tcp_relay
        self.stats = stats
        self.sessions = UdpSessions(config, access, stats)
        self.port = config.relay.tproxy_port
        self.installed: list[hostsetup.Step] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def steps(self, config: Config) -> list[hostsetup.Step]:
        return hostsetup.tproxy_steps(config.prefixes, self.port)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Sockets first: without the privilege this fails before the host is touched.
        self._tcp, self._udp = open_tproxy_sockets(self.port)
        try:
            self.installed = hostexec.apply(self.steps(self.config))
        except OperatorError:
            self._close_sockets()
            raise
        self.loop.add_reader(self._tcp.fileno(), self._accept)
        self.loop.add_reader(self._udp.fileno(), self._udp_readable)
        self.sessions.start()
        log.info(
            "relaying every TCP and UDP port of %s (tproxy to [::]:%d)",
            ", ".join(map(str, self.config.prefixes)),
            self.port,
        )

    async def reload(self, config: Config, access: RelayAccess) -> None:
        """New policy and limits at once; new prefixes rewrite the nft table in one step."""
        old = self.config
        self.config = config
        self.sessions.configure(config, access)
        if config.relay.tproxy_port != self.port:
            log.warning("relay.tproxy_port changes take effect at the next restart")
        if config.prefixes != old.prefixes:
            nft = self.steps(config)[0]
            if any(step.apply == nft.apply for step in self.installed):
                status, output = hostexec.run_command(nft.apply, nft.stdin)
                if status != 0:
                    raise OperatorError(f"could not update the nft table: {output}")
                self.installed = [nft if s.apply == nft.apply else s for s in self.installed]
            else:
                log.warning("the nft table was not installed by this relay; left unchanged")

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, drain TCP, end UDP sessions, then remove what start installed."""
        if drain_timeout is None:
            drain_timeout = self.config.service.drain_timeout
        self._close_sockets()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self.sessions.close("relay stopped")
        # Only now: established connections need the rules until they end.
        if self.installed:
            hostexec.undo(self.installed)
            self.installed = []

    def _close_sockets(self) -> None:
        for sock in (self._tcp, self._udp):
            if sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(sock.fileno())
                sock.close()
        self._tcp = self._udp = None

    # -- TCP ------------------------------------------------------------------------

    def _proxy_protocol(self, port: int) -> str:
        # A port also listed in relay.ports keeps its PROXY protocol setting.
        for entry in self.config.relay.ports:
            if entry.port == port and "tcp" in entry.protocols:
                return entry.proxy_protocol
        return "none"

    def _accept(self) -> None:
        listener = self._tcp
        assert listener is not None
        for _ in range(BATCH):
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.stats.errors["accept: " + (exc.strerror or str(exc))] += 1
                    log.warning("all-ports accept: %s; pausing", exc.strerror)
                    self.loop.remove_reader(listener.fileno())
                    self.loop.call_later(_EMFILE_PAUSE, self._resume, listener)
                    return
                continue
            client.setblocking(False)
            try:
                port = client.getsockname()[1]
            except OSError:
                client.close()
                continue
            task = self.loop.create_task(
                self.tcp_relay.handle(
                    client, target=None, proxy_protocol=self._proxy_protocol(port)
                )
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self, listener: socket.socket) -> None:
        if self._tcp is listener:
            self.loop.add_reader(listener.fileno(), self._accept)

    # -- UDP ------------------------------------------------------------------------

    def _udp_readable(self) -> None:
        sock = self._udp
        assert sock is not None
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, sockaddr = sock.recvmsg(MAX_DATAGRAM, sockopts.CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.stats.errors[f"udp receive: {exc.strerror or exc}"] += 1
                return
            try:
                self._datagram(data, ancdata, sockaddr)
            except Exception:  # a bad datagram must never stop the relay
                self.stats.errors["udp datagram handling"] += 1
                log.exception("all-ports udp: datagram from %s dropped", sockaddr)

    def _datagram(self, data: bytes, ancdata: sockopts.Ancillary, sockaddr: Sockaddr) -> None:
        original = sockopts.original_destination(ancdata)
        if original is None:
            # Sent to the tproxy port directly, not steered by the nft rule.
            self.stats.errors["udp datagram without original destination"] += 1
            return
        address, port = original
        destination = Endpoint(address, port)
        key = SessionKey(endpoint_of(sockaddr), destination)
        prefixes = self.config.prefixes

        def route() -> Route:
            found = decode_destination(prefixes, address)
            if found is None:
                return "destination outside the relay prefixes"
            prefix, v4 = found
            return Endpoint(v4, port), prefix

        def reply_path() -> ReplyPath:
            sock = reply_socket(destination, sockaddr)
            return sock.send, sock

        self.sessions.from_client(key, data, route, reply_path, owner=self)


__all__ = ["TproxyRelay", "open_tproxy_sockets", "reply_socket"]
