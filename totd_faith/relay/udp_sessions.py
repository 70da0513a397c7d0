"""The UDP relay's session table: keys, limits, idle expiry, counters.  No I/O.

A UDP "session" is what a connection is for TCP: the datagrams between one
client address and one destination it dialled.  Each session owns the shell's
handle (its IPv4 socket); this module only decides when a session starts,
whether there is room for it, and when it has been idle long enough to end.
Time is always a parameter (``now``), so the decisions are unit-tested
without clocks.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from totd_faith.endpoints import Endpoint
from totd_faith.errors import PrefixError
from totd_faith.prefix import Nat64Prefix

H = TypeVar("H")


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Who sent (``client``) and what they dialled (``destination``, the original address)."""

    client: Endpoint
    destination: Endpoint


@dataclass(slots=True)
class Session(Generic[H]):
    """One relayed UDP flow and its counters ("out" is client to backend)."""

    key: SessionKey
    target: Endpoint
    handle: H
    started: float
    last_active: float
    datagrams_out: int = 0
    bytes_out: int = 0
    datagrams_in: int = 0
    bytes_in: int = 0

    def summary(self, now: float, reason: str) -> str:
        """The one log line written when the session ends."""
        return (
            f"udp {self.key.client} -> {self.key.destination} ({self.target}): "
            f"{self.datagrams_out} datagrams/{self.bytes_out} bytes out, "
            f"{self.datagrams_in} datagrams/{self.bytes_in} bytes in, "
            f"{now - self.started:.1f} s, ended: {reason}"
        )


class SessionLimitReached(Exception):
    """No room for a new session (``relay.max_udp_sessions``)."""


@dataclass
class SessionTable(Generic[H]):
    """Sessions in least-recently-active order, so expiry looks only at the oldest."""

    idle_timeout: float
    limit: int
    _sessions: OrderedDict[SessionKey, Session[H]] = field(default_factory=OrderedDict)
    #: Keys refused by the access policy, to log a denial once per key rather
    #: than once per datagram; forgotten after ``idle_timeout`` of silence.
    _denied: OrderedDict[SessionKey, float] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session[H]]:
        return iter(list(self._sessions.values()))

    def get(self, key: SessionKey) -> Session[H] | None:
        return self._sessions.get(key)

    @property
    def full(self) -> bool:
        return len(self._sessions) >= self.limit

    def open(self, key: SessionKey, target: Endpoint, handle: H, now: float) -> Session[H]:
        """Add a session for ``key`` (which must not have one); raise when the table is full."""
        if key in self._sessions:
            raise KeyError(f"{key} already has a session")
        if self.full:
            raise SessionLimitReached(f"{self.limit} UDP sessions open (relay.max_udp_sessions)")
        self._denied.pop(key, None)
        session = Session(key, target, handle, now, now)
        self._sessions[key] = session
        return session

    def from_client(self, session: Session[H], size: int, now: float) -> None:
        """Count a datagram the client sent; it keeps the session alive."""
        session.datagrams_out += 1
        session.bytes_out += size
        self._touch(session, now)

    def from_backend(self, session: Session[H], size: int, now: float, datagrams: int = 1) -> None:
        """Count replies from the backend (``size`` bytes in all); they keep it alive too."""
        session.datagrams_in += datagrams
        session.bytes_in += size
        self._touch(session, now)

    def _touch(self, session: Session[H], now: float) -> None:
        session.last_active = now
        self._sessions.move_to_end(session.key)

    def remove(self, key: SessionKey) -> Session[H] | None:
        return self._sessions.pop(key, None)

    def expire(self, now: float) -> list[Session[H]]:
        """Remove and return the sessions idle for ``idle_timeout`` or longer."""
        expired: list[Session[H]] = []
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_active < self.idle_timeout:
                break
            expired.append(self._sessions.popitem(last=False)[1])
        while self._denied:
            key, seen = next(iter(self._denied.items()))
            if now - seen < self.idle_timeout:
                break
            self._denied.popitem(last=False)
        return expired

    def next_expiry(self) -> float | None:
        """When the oldest session or denial memory runs out, if anything is held."""
        times = []
        if self._sessions:
            times.append(next(iter(self._sessions.values())).last_active + self.idle_timeout)
        if self._denied:
            times.append(next(iter(self._denied.values())) + self.idle_timeout)
        return min(times) if times else None

    def note_denied(self, key: SessionKey, now: float) -> bool:
        """Remember a refused key; True the first time (log it), False while it repeats."""
        first = key not in self._denied
        self._denied[key] = now
        self._denied.move_to_end(key)
        # Bounded like the sessions: a flood of spoofed sources cannot grow it.
        while len(self._denied) > self.limit:
            self._denied.popitem(last=False)
        return first


def decode_destination(
    prefixes: Sequence[Nat64Prefix], dialled: ipaddress.IPv6Address
) -> tuple[Nat64Prefix, ipaddress.IPv4Address] | None:
    """The prefix holding ``dialled`` and the IPv4 address embedded in it (RFC 6052 2.2).

    None when the address is in no prefix or breaks the u-octet rule: the
    datagram is not for the relay.
    """
    for prefix in prefixes:
        if dialled in prefix:
            try:
                return prefix, prefix.extract(dialled)
            except PrefixError:
                return None
    return None
