"""The UDP relay: prefix mode and port maps over non-blocking sockets.

Prefix mode: one socket on ``[relay.listen_address]:N`` per ``relay.ports``
entry with ``udp``.  With the AnyIP route every address of the prefix reaches
it; ``IPV6_RECVPKTINFO`` tells which address the client dialled, and the IPv4
destination is the one embedded in it (RFC 6052 section 2.2), same port.
Port maps (``relay.maps`` with protocol ``udp``) send everything to their
fixed target.

Each (client, dialled address) pair is a session with its own socket
connected to the backend; replies leave the listener with ``IPV6_PKTINFO``
naming the dialled address as the source, so the client sees the answer come
from the address it sent to.  :class:`UdpSessions` is shared with the
all-ports relay (:mod:`totd_faith.relay.tproxy`), which brings its own way of
receiving datagrams and of replying.

Sockets are driven with ``loop.add_reader`` and ``recvmsg``: asyncio's
datagram transports do not expose ancillary data.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from totd_faith.config import Config, RelayMap
from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError
from totd_faith.policy import RelayAccess, Verdict, unmap
from totd_faith.prefix import Nat64Prefix
from totd_faith.relay import sockopts
from totd_faith.relay.stats import RelayStats
from totd_faith.relay.udp_sessions import (
    Session,
    SessionKey,
    SessionLimitReached,
    SessionTable,
    decode_destination,
)

log = logging.getLogger("totd_faith.relay.udp")

#: Datagrams read per readiness callback, so one busy socket cannot starve the rest.
BATCH = 64
MAX_DATAGRAM = 65_535
#: Upper bound on the sweeper's sleep, so a session opened while it sleeps
#: expires at most this late.
_SWEEP_MAX = 1.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Sockaddr = Any  # (host, port) or (host, port, flowinfo, scope_id)
#: Where a new session goes: its target and the prefix it was decoded from
#: (None for a port map), or a string saying why it goes nowhere.
Route = tuple[Endpoint, Nat64Prefix | None] | str
#: Makes the reply path of a new session: a function that sends one datagram
#: to the client, and optionally a socket on which the client's later
#: datagrams arrive (all-ports mode) and which ends with the session.
ReplyPath = tuple[Callable[[bytes], object], socket.socket | None]


def endpoint_of(sockaddr: Sockaddr) -> Endpoint:
    """An :class:`Endpoint` from a socket address (scope ids dropped, v4-mapped unmapped)."""
    host = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
    return Endpoint(unmap(host), int(sockaddr[1]))


def check_access(
    access: RelayAccess, client: Endpoint, target: Endpoint, prefix: Nat64Prefix | None
) -> Verdict:
    """The access decision for a new session (a port map may name an IPv6 target)."""
    if isinstance(target.host, ipaddress.IPv4Address):
        return access.check(client.host, target.host, prefix)
    # Only explicit maps can have an IPv6 target; for them only relay.clients applies.
    if unmap(client.host) in access.clients:
        return Verdict(True, "relay.maps target")
    return Verdict(False, "client not in relay.clients")


@dataclass(eq=False)
class Flow:
    """The shell's half of a session: its backend socket and the way back to the client."""

    backend: socket.socket
    reply: Callable[[bytes], object]
    #: All-ports mode: the transparent socket bound to the original destination.
    client_side: socket.socket | None = None
    #: What received the first datagram (a listener), so closing it ends its sessions.
    owner: object = None
    prefix: Nat64Prefix | None = None
    closed: bool = False
    #: Raw-address lookup entries that point at this session (see
    #: :attr:`Listener.fast`), removed when it ends.
    aliases: list[tuple[dict[Any, Any], Any]] = field(default_factory=list)


class UdpSessions:
    """Session bookkeeping and datagram copying, shared by every UDP front end."""

    def __init__(self, config: Config, access: RelayAccess, stats: RelayStats) -> None:
        self.access = access
        self.stats = stats
        self.log_sessions = config.log.connections
        self.table: SessionTable[Flow] = SessionTable(
            config.relay.udp_idle_timeout, config.relay.max_udp_sessions
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep_forever(), name="udp-sweeper")

    def configure(self, config: Config, access: RelayAccess) -> None:
        """Adopt new limits and policy; sessions the new policy refuses end now."""
        self.access = access
        self.log_sessions = config.log.connections
        self.table.idle_timeout = config.relay.udp_idle_timeout
        self.table.limit = config.relay.max_udp_sessions
        for session in self.table:
            prefix = session.handle.prefix
            if prefix is not None and prefix not in config.prefixes:
                self.end(session, f"prefix {prefix} removed by reload")
                continue
            verdict = check_access(
                access, session.key.client, session.target, session.handle.prefix
            )
            if not verdict.permit:
                self.end(session, f"denied after reload ({verdict.reason})")

    # -- client to backend --------------------------------------------------------

    def forward(self, session: Session[Flow], data: bytes) -> None:
        """Relay a datagram of an open session (the fast path: no parsing, no policy)."""
        self._send_backend(session, data, self.loop.time())

    def from_client(
        self,
        key: SessionKey,
        data: bytes,
        route: Callable[[], Route],
        reply_path: Callable[[], ReplyPath],
        owner: object = None,
    ) -> Session[Flow] | None:
        """Relay one datagram the client sent to ``key.destination``, opening a session.

        Returns the session (None when the datagram was refused or dropped).
        """
        now = self.loop.time()
        session = self.table.get(key)
        if session is None:
            session = self._open(key, route, reply_path, owner, now)
            if session is None:
                return None
        self._send_backend(session, data, now)
        return session

    def _deny(self, key: SessionKey, reason: str, now: float) -> None:
        # Count and log a refused key once, not once per datagram.
        if self.table.note_denied(key, now):
            self.stats.udp_sessions_denied[reason] += 1
            log.warning("udp %s -> %s denied: %s", key.client, key.destination, reason)

    def _open(
        self,
        key: SessionKey,
        route: Callable[[], Route],
        reply_path: Callable[[], ReplyPath],
        owner: object,
        now: float,
    ) -> Session[Flow] | None:
        routed = route()
        if isinstance(routed, str):
            self._deny(key, routed, now)
            return None
        target, prefix = routed
        verdict = check_access(self.access, key.client, target, prefix)
        if not verdict.permit:
            self._deny(key, verdict.reason, now)
            return None
        if self.table.full:
            self._deny(key, "relay.max_udp_sessions", now)
            return None
        backend = reply_sock = None
        try:
            backend = _backend_socket(target)
            reply, reply_sock = reply_path()
        except OSError as exc:
            for sock in (backend, reply_sock):
                if sock is not None:
                    sock.close()
            self.stats.errors["udp session set-up"] += 1
            log.error(
                "udp %s -> %s (%s): cannot open: %s",
                *(key.client, key.destination, target, exc.strerror or exc),
            )
            return None
        try:
            session = self.table.open(
                key, target, Flow(backend, reply, reply_sock, owner, prefix), now
            )
        except SessionLimitReached:  # pragma: no cover - checked just above
            backend.close()
            return None
        self.stats.udp_sessions_created += 1
        self.stats.udp_sessions_active = len(self.table)
        self.loop.add_reader(backend.fileno(), self._backend_readable, session)
        if reply_sock is not None:
            self.loop.add_reader(reply_sock.fileno(), self._client_side_readable, session)
        return session

    def _send_backend(self, session: Session[Flow], data: bytes, now: float) -> None:
        try:
            session.handle.backend.send(data)
        except BlockingIOError:
            self.stats.errors["udp backend send buffer full"] += 1
            return
        except ConnectionRefusedError:
            # The ICMP port unreachable of an earlier datagram, reported now.
            self.end(session, "backend refused (port unreachable)")
            return
        except OSError as exc:
            self.end(session, f"backend error: {exc.strerror or exc}")
            return
        self.table.from_client(session, len(data), now)
        self.stats.udp_datagrams_client_to_backend += 1
        self.stats.udp_bytes_client_to_backend += len(data)

    def _client_side_readable(self, session: Session[Flow]) -> None:
        sock = session.handle.client_side
        assert sock is not None
        for _ in range(BATCH):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:
                self.end(session, f"client unreachable: {exc.strerror or exc}")
                return
            self._send_backend(session, data, self.loop.time())
            if session.handle.closed:
                return

    # -- backend to client --------------------------------------------------------

    def _backend_readable(self, session: Session[Flow]) -> None:
        flow = session.handle
        recv = flow.backend.recv
        reply = flow.reply
        count = size = 0
        reason = None
        for _ in range(BATCH):
            try:
                data = recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                reason = "backend refused (port unreachable)"
                break
            except OSError as exc:
                reason = f"backend error: {exc.strerror or exc}"
                break
            try:
                reply(data)
            except BlockingIOError:
                self.stats.errors["udp client send buffer full"] += 1
                continue
            except OSError as exc:
                reason = f"client unreachable: {exc.strerror or exc}"
                break
            count += 1
            size += len(data)
        if count:
            # Counted once per batch: the clock and the LRU order need no finer grain.
            self.table.from_backend(session, size, self.loop.time(), count)
            self.stats.udp_datagrams_backend_to_client += count
            self.stats.udp_bytes_backend_to_client += size
        if reason is not None:
            self.end(session, reason)

    # -- ending ---------------------------------------------------------------------

    def end(self, session: Session[Flow], reason: str) -> None:
        """Close ``session``'s sockets and write its one log line."""
        flow = session.handle
        if flow.closed:
            return
        flow.closed = True
        if self.table.get(session.key) is session:
            self.table.remove(session.key)
        for sock in (flow.backend, flow.client_side):
            if sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(sock.fileno())
                sock.close()
        for index, alias in flow.aliases:
            if index.get(alias) is session:
                del index[alias]
        self.stats.udp_sessions_active = len(self.table)
        if self.log_sessions:
            log.info("%s", session.summary(self.loop.time(), reason))

    def end_owned_by(self, owner: object, reason: str) -> None:
        for session in self.table:
            if session.handle.owner is owner:
                self.end(session, reason)

    def close(self, reason: str) -> None:
        """End every session and stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for session in self.table:
            self.end(session, reason)

    def sweep(self) -> None:
        """End the sessions idle for ``relay.udp_idle_timeout``."""
        now = self.loop.time()
        for session in self.table.expire(now):
            self.end(session, f"idle for {self.table.idle_timeout:g} s")

    async def _sweep_forever(self) -> None:
        while True:
            self.sweep()
            due = self.table.next_expiry()
            delay = _SWEEP_MAX if due is None else due - self.loop.time()
            await asyncio.sleep(min(max(delay, 0.01), _SWEEP_MAX))


def _backend_socket(target: Endpoint) -> socket.socket:
    family = socket.AF_INET if target.host.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # A connected socket: the kernel drops datagrams from anyone but the
        # backend, and reports its ICMP port unreachable as ECONNREFUSED.
        sock.connect(target.sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


# -- prefix-mode and port-map listeners ------------------------------------------------


@dataclass(eq=False)
class Listener:
    """One UDP socket clients send to: a prefix-mode port or a port map."""

    bind: Endpoint
    map: RelayMap | None
    sock: socket.socket = field(repr=False)
    #: (raw client sockaddr, raw PKTINFO bytes) -> open session: the next
    #: datagram of a session skips address parsing, routing and policy.
    fast: dict[Any, Session[Flow]] = field(default_factory=dict, repr=False)

    @property
    def identity(self) -> tuple[Endpoint, Endpoint | None]:
        return (self.bind, None if self.map is None else self.map.target)


def open_udp_listener(bind: Endpoint) -> socket.socket:
    """A non-blocking UDP socket on ``bind`` that reports each datagram's dialled address."""
    family = socket.AF_INET6 if bind.host.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # Worker processes (service.workers) each bind the port; the kernel
        # hashes each client's flow to one of them, so a session stays in one.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # [::] means IPv6 here; IPv4 clients have IPv4 listeners of their own.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sockopts.enable_pktinfo(sock)
        sock.setblocking(False)
        sock.bind(bind.sockaddr)
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EACCES:
            hint = " (port below 1024: run as root or grant CAP_NET_BIND_SERVICE)"
        raise OperatorError(
            f"cannot listen for UDP on {bind}: {exc.strerror or exc}{hint}"
        ) from None
    return sock


def wanted_listeners(config: Config) -> list[tuple[Endpoint, RelayMap | None]]:
    """The UDP listeners ``config`` asks for, prefix-mode ports first.

    In all-ports mode nftables steers every datagram for the prefixes to the
    transparent socket before routing, so a prefix-mode listener would never
    receive one; only the port maps are opened then.
    """
    relay = config.relay
    wanted: list[tuple[Endpoint, RelayMap | None]] = []
    if not relay.all_ports:
        for entry in relay.ports:
            if "udp" in entry.protocols:
                wanted.append((Endpoint(relay.listen_address, entry.port), None))
    for i, m in enumerate(relay.maps):
        if m.protocol == "udp":
            if any(bind == m.listen for bind, _ in wanted):
                # Both sockets would bind (SO_REUSEADDR) and the kernel would hand
                # each datagram to one of them: refuse instead of guessing.
                raise OperatorError(
                    f"relay.maps[{i}]: {m.listen} (udp) is also the listener of prefix-mode "
                    f"port {m.listen.port} on relay.listen_address; remove that port from "
                    "relay.ports or map another listen address"
                )
            wanted.append((m.listen, m))
    return wanted


class UdpRelay:
    """Prefix-mode and port-map UDP relaying (a service part; see the module docstring)."""

    name = "udp relay"

    def __init__(self, config: Config, access: RelayAccess, stats: RelayStats) -> None:
        self.config = config
        self.sessions = UdpSessions(config, access, stats)
        self.stats = stats
        self.listeners: list[Listener] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.sessions.loop

    async def start(self) -> None:
        try:
            for bind, relay_map in wanted_listeners(self.config):
                self._add_listener(bind, relay_map)
        except OperatorError:
            self._close_listeners(list(self.listeners))
            raise
        self.sessions.start()

    def _add_listener(self, bind: Endpoint, relay_map: RelayMap | None) -> None:
        listener = Listener(bind, relay_map, open_udp_listener(bind))
        self.listeners.append(listener)
        self.loop.add_reader(listener.sock.fileno(), self._readable, listener)
        what = f"to {relay_map.target}" if relay_map else "by prefix"
        log.info("relaying UDP on %s %s", bind, what)

    def _close_listeners(self, listeners: list[Listener]) -> None:
        for listener in listeners:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
            self.listeners.remove(listener)
            self.sessions.end_owned_by(listener, "listener closed")

    async def reload(self, config: Config, access: RelayAccess) -> None:
        """Adopt ``config``: unchanged listeners keep their sessions; others open or close."""
        self.config = config
        self.sessions.configure(config, access)
        wanted = wanted_listeners(config)
        keys = {(bind, None if m is None else m.target) for bind, m in wanted}
        self._close_listeners([lst for lst in self.listeners if lst.identity not in keys])
        have = {lst.identity for lst in self.listeners}
        failures = []
        for bind, relay_map in wanted:
            if (bind, None if relay_map is None else relay_map.target) in have:
                continue
            try:
                self._add_listener(bind, relay_map)
            except OperatorError as exc:
                failures.append(str(exc))
        if failures:
            raise OperatorError("; ".join(failures))

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Close the listeners and end every session (UDP has nothing to drain)."""
        del drain_timeout
        self.sessions.close("relay stopped")
        self._close_listeners(list(self.listeners))

    # -- datagrams ---------------------------------------------------------------------

    def _readable(self, listener: Listener) -> None:
        recvmsg = listener.sock.recvmsg
        fast = listener.fast
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, sockaddr = recvmsg(MAX_DATAGRAM, sockopts.CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.stats.errors[f"udp receive: {exc.strerror or exc}"] += 1
                return
            alias = (sockaddr, ancdata[0][2] if ancdata else b"")
            session = fast.get(alias)
            if session is not None:
                self.sessions.forward(session, data)
                continue
            try:
                session = self._datagram(listener, data, ancdata, sockaddr)
            except Exception:  # a bad datagram must never stop the relay
                self.stats.errors["udp datagram handling"] += 1
                log.exception("udp: datagram from %s dropped", sockaddr)
                continue
            if session is not None and not session.handle.closed:
                fast[alias] = session
                session.handle.aliases.append((fast, alias))

    def _datagram(
        self, listener: Listener, data: bytes, ancdata: sockopts.Ancillary, sockaddr: Sockaddr
    ) -> Session[Flow] | None:
        client = endpoint_of(sockaddr)
        dialled = sockopts.dialled_address(ancdata) or listener.bind.host
        key = SessionKey(client, Endpoint(dialled, listener.bind.port))
        family = listener.sock.family
        prefixes = self.config.prefixes

        def route() -> Route:
            if listener.map is not None:
                return listener.map.target, None
            if not isinstance(dialled, ipaddress.IPv6Address):
                return "destination is not an IPv6 address"
            found = decode_destination(prefixes, dialled)
            if found is None:
                return "destination outside the relay prefixes"
            prefix, v4 = found
            return Endpoint(v4, listener.bind.port), prefix

        def reply_path() -> ReplyPath:
            sock = listener.sock
            if not listener.bind.host.is_unspecified:
                # Bound to one address: replies leave from it anyway.
                return lambda payload: sock.sendto(payload, sockaddr), None
            # Replies leave from the address the client dialled (IPV6_PKTINFO).
            source = sockopts.source_cmsg(dialled, family)

            def reply(payload: bytes) -> None:
                sock.sendmsg([payload], source, 0, sockaddr)

            return reply, None

        return self.sessions.from_client(key, data, route, reply_path, owner=listener)
