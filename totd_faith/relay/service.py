"""The relay as one :class:`~totd_faith.runtime.Service`: listeners, reload, drain.

It binds a TCP listener per prefix-mode port (``[relay.listen_address]:N``) and
per TCP port map, accepts on them from the event loop, and hands every
accepted socket to the shared :class:`~totd_faith.relay.tcp.TcpRelay`.  UDP
and all-ports mode come from :mod:`totd_faith.relay.udp` and
:mod:`totd_faith.relay.tproxy`.

Reload (SIGHUP) adopts new access rules, limits, prefixes, ports and maps:
listeners that stay keep their socket (no gap, no lost backlog), new ones
are bound, removed ones stop accepting; established connections are never
dropped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from dataclasses import dataclass
from typing import Any

from totd_faith.config import Config
from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError, TotdFaithError
from totd_faith.policy import RelayAccess
from totd_faith.relay.ownaddrs import own_ipv4_addresses
from totd_faith.relay.stats import RelayStats
from totd_faith.relay.tcp import TcpRelay
from totd_faith.relay.tproxy import TproxyRelay
from totd_faith.relay.udp import UdpRelay

log = logging.getLogger("totd_faith.relay")

#: Connections taken from one listener per readiness event, so a flood on one
#: port cannot starve the others.
_ACCEPT_BATCH = 64
#: How long accepting pauses when the process is out of file descriptors.
_EMFILE_PAUSE = 0.1
#: How often the host's own IPv4 addresses are read again (DHCP, new interfaces).
_OWN_ADDRESS_REFRESH = 30.0


class BindError(OperatorError):
    """A listener could not be bound; the message says what to do."""


@dataclass(slots=True)
class Listener:
    sock: socket.socket
    endpoint: Endpoint
    #: None in prefix mode: the destination comes from the dialled address.
    target: Endpoint | None
    proxy_protocol: str
    paused: bool = False


def bind_error(endpoint: Endpoint, exc: OSError) -> BindError:
    if exc.errno == errno.EADDRINUSE:
        hint = "another process is listening there; stop it or choose another port"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "that address is not configured on this host"
    else:
        hint = "check the address"
    return BindError(f"cannot listen on {endpoint} (TCP): {exc.strerror}; {hint}")


def tcp_listener(
    endpoint: Endpoint, *, reuse_port: bool = False, backlog: int = 4096
) -> socket.socket:
    """A non-blocking TCP listening socket; IPv6 sockets accept IPv6 only."""
    family = socket.AF_INET6 if endpoint.host.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY: one system call per listener
        # instead of one per connection (relayed protocols are often interactive).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reuse_port:
            # Several worker processes share the port (service.workers > 1).
            # Only then: SO_REUSEPORT would also let a second relay bind the
            # same port silently instead of failing with "address in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # The relay is for IPv6 clients; IPv4 on [::] would be v4-mapped noise.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise bind_error(endpoint, exc) from None
    return sock


def wanted_listeners(config: Config) -> dict[Endpoint, tuple[Endpoint | None, str]]:
    """Every TCP listener the configuration asks for: endpoint -> (target, proxy protocol)."""
    relay = config.relay
    wanted: dict[Endpoint, tuple[Endpoint | None, str]] = {}
    for port in relay.ports:
        if "tcp" in port.protocols:
            wanted[Endpoint(relay.listen_address, port.port)] = (None, port.proxy_protocol)
    for i, relay_map in enumerate(relay.maps):
        if relay_map.protocol == "tcp":
            if relay_map.listen in wanted:
                # One socket per address: silently serving only the map (or only
                # the port) would send clients somewhere they did not ask for.
                raise OperatorError(
                    f"relay.maps[{i}]: {relay_map.listen} (tcp) is also the listener of "
                    f"prefix-mode port {relay_map.listen.port} on relay.listen_address; "
                    "remove that port from relay.ports or map another listen address"
                )
            wanted[relay_map.listen] = (relay_map.target, relay_map.proxy_protocol)
    return wanted


def raise_fd_limit() -> int:
    """Use the hard limit on open files: each relayed connection needs 2 to 6."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class RelayService:
    """TCP (and, when present, UDP and all-ports) relaying for one configuration."""

    name = "relay"

    def __init__(self, config: Config, stats: RelayStats | None = None) -> None:
        self.config = config
        self.stats = stats or RelayStats()
        self.own_addresses = own_ipv4_addresses()
        self.access = RelayAccess.from_config(config, self.own_addresses)
        self.tcp = TcpRelay(config, self.access, self.stats)
        self.listeners: dict[Endpoint, Listener] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.extras: list[UdpRelay | TproxyRelay] = []
        self._routes: list[Any] = []  # hostsetup.Step applied at start
        self._refresher: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()

    # -- start / reload / stop -----------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        raise_fd_limit()
        self._sync_routes(self.config)
        try:
            self._adopt_listeners(self.config)
            for extra in self._make_extras(self.config):
                await extra.start()
                self.extras.append(extra)
        except BaseException:
            self._close_listeners(list(self.listeners))
            for extra in self.extras:
                await extra.stop()
            self._undo_routes()
            raise
        self._refresher = self._loop.call_later(_OWN_ADDRESS_REFRESH, self._refresh_own)

    async def reload(self, config: Config) -> None:
        """Adopt ``config``: access and limits at once, then routes, listeners, UDP, all-ports.

        Every part is attempted even when an earlier one fails (a port that
        cannot be bound must not keep new access rules from applying); the
        failures are raised together at the end.
        """
        self.own_addresses = own_ipv4_addresses()
        access = RelayAccess.from_config(config, self.own_addresses)
        self.config = config
        self.access = access
        self.tcp.reload(config, access)
        problems: list[str] = []
        try:
            # Before the listeners: a new prefix is routed when they serve it.
            self._sync_routes(config)
        except TotdFaithError as exc:
            problems.append(str(exc))
        try:
            self._adopt_listeners(config)
        except TotdFaithError as exc:
            problems.append(str(exc))
        await self._sync_extras(config, access, problems)
        if problems:
            raise OperatorError("; ".join(problems))

    async def stop(self, drain_timeout: float) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        self._close_listeners(list(self.listeners))
        # The UDP and all-ports parts stop accepting now too and drain alongside the
        # prefix/map connections: one drain period in all, not one after the other.
        extras = [asyncio.ensure_future(extra.stop(drain_timeout)) for extra in self.extras]
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=drain_timeout)
            if pending:
                log.info("drain period over: resetting %d relayed connections", len(pending))
                self.tcp.abort_all("shutdown")
                await asyncio.wait(pending, timeout=1.0)
                for task in pending:
                    task.cancel()
        for result in await asyncio.gather(*extras, return_exceptions=True):
            if isinstance(result, TotdFaithError):
                log.error("%s", result)
            elif isinstance(result, Exception):
                log.error("relay part failed to stop: %r", result)
        self.tcp.close()
        self._undo_routes()

    # -- pieces ------------------------------------------------------------

    @staticmethod
    def _wants(config: Config) -> tuple[bool, bool]:
        """Whether ``config`` needs the UDP relay and the all-ports relay."""
        relay = config.relay
        wants_udp = any("udp" in p.protocols for p in relay.ports) or any(
            m.protocol == "udp" for m in relay.maps
        )
        return wants_udp, relay.all_ports

    def _make_extras(self, config: Config) -> list[UdpRelay | TproxyRelay]:
        """The UDP relay and the all-ports relay, when the configuration asks for them."""
        wants_udp, wants_tproxy = self._wants(config)
        extras: list[UdpRelay | TproxyRelay] = []
        if wants_udp:
            extras.append(UdpRelay(config, self.access, self.stats))
        if wants_tproxy:
            extras.append(TproxyRelay(config, self.access, self.tcp, self.stats))
        return extras

    async def _sync_extras(self, config: Config, access: RelayAccess, problems: list[str]) -> None:
        """Reload the parts that stay, stop the ones no longer wanted, start new ones."""
        wants_udp, wants_tproxy = self._wants(config)
        kept: list[UdpRelay | TproxyRelay] = []
        for extra in self.extras:
            wanted = wants_udp if isinstance(extra, UdpRelay) else wants_tproxy
            try:
                if wanted:
                    await extra.reload(config, access)
                else:
                    await extra.stop(0.0)
            except TotdFaithError as exc:
                problems.append(str(exc))
            if wanted:
                kept.append(extra)
        self.extras = kept
        for fresh in self._make_extras(config):
            if any(type(extra) is type(fresh) for extra in self.extras):
                continue
            try:
                await fresh.start()
            except TotdFaithError as exc:
                problems.append(str(exc))
            else:
                self.extras.append(fresh)

    def _adopt_listeners(self, config: Config) -> None:
        """Bind what is new, keep what stays, close what went; all or nothing for binds."""
        wanted = wanted_listeners(config)
        fresh: dict[Endpoint, socket.socket] = {}
        try:
            for endpoint in wanted:
                if endpoint not in self.listeners:
                    fresh[endpoint] = tcp_listener(endpoint, reuse_port=config.service.workers > 1)
        except BindError:
            for sock in fresh.values():
                sock.close()
            raise
        self._close_listeners([e for e in self.listeners if e not in wanted])
        for endpoint, (target, proxy_protocol) in wanted.items():
            existing = self.listeners.get(endpoint)
            if existing is not None:
                existing.target = target
                existing.proxy_protocol = proxy_protocol
                continue
            listener = Listener(fresh[endpoint], endpoint, target, proxy_protocol)
            self.listeners[endpoint] = listener
            self._watch(listener)
            log.debug("listening on %s (TCP)%s", endpoint, f" -> {target}" if target else "")

    def _watch(self, listener: Listener) -> None:
        assert self._loop is not None
        self._loop.add_reader(listener.sock.fileno(), self._accept, listener)

    def _close_listeners(self, endpoints: list[Endpoint]) -> None:
        for endpoint in endpoints:
            listener = self.listeners.pop(endpoint)
            if self._loop is not None and not listener.paused:
                self._loop.remove_reader(listener.sock.fileno())
            listener.sock.close()

    def _accept(self, listener: Listener) -> None:
        assert self._loop is not None
        loop = self._loop
        for _ in range(_ACCEPT_BATCH):
            try:
                client, peer = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: pause this listener briefly rather
                    # than spin on a readiness event we cannot serve.
                    self.stats.errors["accept: " + (exc.strerror or str(exc))] += 1
                    log.warning("accept on %s: %s; pausing", listener.endpoint, exc.strerror)
                    listener.paused = True
                    loop.remove_reader(listener.sock.fileno())
                    loop.call_later(_EMFILE_PAUSE, self._resume, listener)
                    return
                # ECONNABORTED and friends: that client gave up; carry on.
                continue
            client.setblocking(False)
            task = loop.create_task(
                self.tcp.handle(
                    client,
                    target=listener.target,
                    proxy_protocol=listener.proxy_protocol,
                    peer=peer,
                    nodelay=True,
                )
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self, listener: Listener) -> None:
        if self.listeners.get(listener.endpoint) is listener and listener.paused:
            listener.paused = False
            self._watch(listener)

    def _refresh_own(self) -> None:
        own = own_ipv4_addresses()
        if own != self.own_addresses:
            log.info("own IPv4 addresses changed: %s", ", ".join(sorted(map(str, own))))
            self.own_addresses = own
            self.access = RelayAccess.from_config(self.config, own)
            self.tcp.reload(self.config, self.access)
            for extra in self.extras:
                task = asyncio.ensure_future(extra.reload(self.config, self.access))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        assert self._loop is not None
        self._refresher = self._loop.call_later(_OWN_ADDRESS_REFRESH, self._refresh_own)

    def _sync_routes(self, config: Config) -> None:
        """With relay.manage_routes: an AnyIP route for every prefix, and none left over.

        Only routes this relay added are removed (hostexec.apply skips and does
        not report routes that were already in place).
        """
        if not (config.relay.manage_routes or self._routes):
            return
        # Imported here: only route management needs the host set-up modules.
        from totd_faith import hostexec, hostsetup

        wanted = hostsetup.anyip_steps(config.prefixes) if config.relay.manage_routes else []
        gone = [step for step in self._routes if step not in wanted]
        if gone:
            hostexec.undo(gone)
        kept = [step for step in self._routes if step in wanted]
        self._routes = kept + hostexec.apply([step for step in wanted if step not in kept])

    def _undo_routes(self) -> None:
        if self._routes:
            from totd_faith import hostexec

            try:
                hostexec.undo(self._routes)
            except TotdFaithError as exc:
                log.error("%s", exc)
            self._routes = []
