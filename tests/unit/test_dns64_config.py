"""The dns64 settings the core relies on are validated with the right address family."""

from __future__ import annotations

import pytest

from totd_faith.config import from_table
from totd_faith.errors import ConfigError


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"exclude": ["0.0.0.0/0"]}, "dns64.exclude[0]: '0.0.0.0/0' is not an IPv6 network"),
        ({"mapped": ["::/0"]}, "dns64.mapped[0]: '::/0' is not an IPv4 network"),
    ],
)
def test_exclude_is_ipv6_and_mapped_is_ipv4(table: dict[str, list[str]], message: str) -> None:
    # An IPv4 exclusion network would otherwise match IPv6 addresses by their low bits.
    with pytest.raises(ConfigError) as info:
        from_table({"dns64": table})
    assert str(info.value) == message


def test_family_checked_networks_still_parse() -> None:
    config = from_table({"dns64": {"exclude": ["2001:db8::/32"], "mapped": ["10.0.0.0/8"]}})
    assert [str(n) for n in config.dns64.exclude] == ["2001:db8::/32"]
    assert [str(n) for n in config.dns64.mapped] == ["10.0.0.0/8"]
