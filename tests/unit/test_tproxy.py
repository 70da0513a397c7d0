"""TproxyRelay decisions that need no sockets: its host steps and per-port PROXY settings."""

from __future__ import annotations

from typing import cast

from totd_faith.config import load_text
from totd_faith.hostsetup import tproxy_steps
from totd_faith.policy import RelayAccess
from totd_faith.relay.stats import RelayStats
from totd_faith.relay.tcp import TcpRelay
from totd_faith.relay.tproxy import NEEDS_PRIVILEGE, TproxyRelay

CONFIG = """
prefixes = ["2001:db8:64::/96", "2001:db8:1::/48"]
[relay]
all_ports = true
tproxy_port = 12345
ports = [
  { port = 25, proxy_protocol = "v2" },
  { port = 80, protocols = ["udp"], proxy_protocol = "v1" },
]
"""


def make() -> TproxyRelay:
    config = load_text(CONFIG)
    access = RelayAccess.from_config(config, frozenset())
    return TproxyRelay(config, access, cast(TcpRelay, object()), RelayStats())


def test_steps_follow_the_config() -> None:
    relay = make()
    assert relay.steps(relay.config) == tproxy_steps(relay.config.prefixes, 12345)
    assert relay.installed == []  # nothing is installed before start()


def test_proxy_protocol_of_listed_tcp_ports_only() -> None:
    relay = make()
    assert relay._proxy_protocol(25) == "v2"
    assert relay._proxy_protocol(80) == "none"  # listed for UDP only
    assert relay._proxy_protocol(8080) == "none"


def test_privilege_message_names_the_capability() -> None:
    assert "CAP_NET_ADMIN" in NEEDS_PRIVILEGE and "\n" not in NEEDS_PRIVILEGE
