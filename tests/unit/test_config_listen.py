"""dns.listen: each address once, named by index (QA: a duplicate gave the
misleading "already in use; stop the other DNS server")."""

from __future__ import annotations

import pytest

from totd_faith.cli.common import load_config, overrides_from
from totd_faith.config import load_text
from totd_faith.errors import ConfigError


def test_a_duplicate_dns_listen_address_is_refused_naming_both_entries() -> None:
    text = '[dns]\nlisten = ["127.0.0.1:5353", "[::1]:5353", "127.0.0.1:5353"]\n'
    with pytest.raises(ConfigError) as info:
        load_text(text)
    assert str(info.value) == (
        "dns.listen[2]: 127.0.0.1:5353 is listed twice (also dns.listen[0]); remove one"
    )


def test_the_same_address_written_two_ways_is_a_duplicate() -> None:
    # A bare address takes port 53, and IPv6 text is compared as an address.
    with pytest.raises(ConfigError, match=r"dns.listen\[1\]: \[2001:db8::1\]:53 is listed twice"):
        load_text('[dns]\nlisten = ["2001:db8::1", "[2001:DB8:0::1]:53"]\n')


def test_distinct_addresses_and_ports_are_accepted() -> None:
    config = load_text('[dns]\nlisten = ["127.0.0.1:5353", "127.0.0.1:5354", "[::1]:5353"]\n')
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:5353", "127.0.0.1:5354", "[::1]:5353"]


def test_a_duplicate_listen_flag_names_the_flag() -> None:
    flags = overrides_from({"listen": ("127.0.0.1:5300", "127.0.0.1:5300")})
    with pytest.raises(ConfigError) as info:
        load_config(None, flags)
    assert str(info.value) == (
        "--listen (dns.listen[1]): 127.0.0.1:5300 is listed twice (also dns.listen[0]); remove one"
    )
