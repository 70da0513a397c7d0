"""Relay counters shared by the TCP, UDP and all-ports relays (read by the metrics issue).

Plain integers updated in place on the event loop thread: no locks, no
allocation on the hot path.  Counters only grow, except the ``*_active`` gauges.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class RelayStats:
    """What the relay has done since start."""

    # TCP
    connections_accepted: int = 0
    connections_active: int = 0
    #: Connections refused before touching the backend, by reason
    #: ('client not in relay.clients', 'relay.rules[2]', 'max_connections', ...).
    connections_denied: Counter[str] = field(default_factory=Counter)
    #: Relayed connections that ended, by why they ended ('closed', 'backend refused', ...).
    connections_ended: Counter[str] = field(default_factory=Counter)
    #: Connections that went zero-copy (os.splice) in at least one direction.
    connections_spliced: int = 0
    bytes_client_to_backend: int = 0
    bytes_backend_to_client: int = 0
    # UDP
    udp_sessions_created: int = 0
    udp_sessions_active: int = 0
    udp_sessions_denied: Counter[str] = field(default_factory=Counter)
    udp_datagrams_client_to_backend: int = 0
    udp_datagrams_backend_to_client: int = 0
    udp_bytes_client_to_backend: int = 0
    udp_bytes_backend_to_client: int = 0
    #: Unexpected local failures (accept errors, EMFILE, socket set-up), by kind.
    errors: Counter[str] = field(default_factory=Counter)
