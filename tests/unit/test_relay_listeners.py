"""The relay's TCP listeners: a port map may not silently take a prefix-mode port's socket."""

from __future__ import annotations

import pytest

from totd_faith.config import load_text
from totd_faith.endpoints import parse_endpoint
from totd_faith.errors import OperatorError
from totd_faith.relay.service import wanted_listeners


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
