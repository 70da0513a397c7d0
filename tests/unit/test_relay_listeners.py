"""The relay's TCP listeners: a port map may not silently take a prefix-mode port's socket."""

from __future__ import annotations

import pytest

from totd_faith.config import load_text
from totd_faith.endpoints import parse_endpoint
from totd_faith.errors import OperatorError
from totd_faith.relay.service import wanted_listeners
from totd_faith.relay.udp import wanted_listeners as udp_wanted_listeners


def test_a_map_on_a_prefix_mode_listener_is_refused() -> None:
    config = load_text('[relay]\nports = [80, 443]\nmaps = ["[::]:443=192.0.2.10:443"]\n')
    with pytest.raises(OperatorError) as info:
        wanted_listeners(config)
    assert str(info.value) == (
        "relay.maps[0]: [::]:443 (tcp) is also the listener of prefix-mode port 443 on "
        "relay.listen_address; remove that port from relay.ports or map another listen address"
    )


def test_maps_beside_prefix_mode_ports_are_kept() -> None:
    config = load_text(
        '[relay]\nports = [80, {port = 443, protocols = ["udp"]}]\n'
        'maps = ["[::]:443=192.0.2.10:443", "[::1]:80=192.0.2.10:80"]\n'
    )
    wanted = wanted_listeners(config)
    assert wanted == {
        parse_endpoint("[::]:80"): (None, "none"),
        parse_endpoint("[::]:443"): (parse_endpoint("192.0.2.10:443"), "none"),
        parse_endpoint("[::1]:80"): (parse_endpoint("192.0.2.10:80"), "none"),
    }


def test_a_udp_map_on_a_prefix_mode_udp_listener_is_refused() -> None:
    config = load_text(
        '[relay]\nports = [{ port = 5399, protocols = ["udp"] }]\nlisten_address = "::1"\n'
        'maps = [{ listen = "[::1]:5399", target = "192.0.2.1:53", protocol = "udp" }]\n'
    )
    with pytest.raises(OperatorError) as info:
        udp_wanted_listeners(config)
    assert str(info.value) == (
        "relay.maps[0]: [::1]:5399 (udp) is also the listener of prefix-mode port 5399 on "
        "relay.listen_address; remove that port from relay.ports or map another listen address"
    )
    # The TCP side has no such conflict: the port relays UDP only.
    assert list(wanted_listeners(config)) == []


def test_in_all_ports_mode_a_udp_map_may_use_a_prefix_port() -> None:
    # nftables steers prefix traffic to the tproxy socket, so no prefix-mode UDP listener exists.
    config = load_text(
        '[relay]\nall_ports = true\nports = [{ port = 5399, protocols = ["udp"] }]\n'
        'listen_address = "::1"\n'
        'maps = [{ listen = "[::1]:5399", target = "192.0.2.1:53", protocol = "udp" }]\n'
    )
    assert [str(bind) for bind, _ in udp_wanted_listeners(config)] == ["[::1]:5399"]
