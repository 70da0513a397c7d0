"""totd.conf and faithd.conf migration (totd_faith.legacy): directives, notices, output."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith import legacy
from totd_faith.config import Config, load_text
from totd_faith.legacy import Migration, MigrationError, Notice
from totd_faith.policy import LOCAL_NETWORKS, NetworkSet, RelayAccess
from totd_faith.prefix import Nat64Prefix

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "legacy"


def totd(text: str) -> Migration:
    return legacy.parse_totd(text, "totd.conf")


def faithd(text: str, **kwargs: object) -> Migration:
    return legacy.parse_faithd(text, "faithd.conf", **kwargs)  # type: ignore[arg-type]


def messages(m: Migration, line: int, severity: str = "warning") -> list[str]:
    return [n.message for n in m.notices if n.line == line and n.severity == severity]


# -- totd.conf ---------------------------------------------------------------------


def test_forwarders_keep_their_order_and_ports() -> None:
    m = totd("forwarder 192.0.2.1\nforwarder 2001:db8::53 port 5300\nFORWARDER 192.0.2.2 PORT 53\n")
    config = legacy.build(m)
    assert [str(e) for e in config.dns.upstreams] == [
        "192.0.2.1:53",
        "[2001:db8::53]:5300",
        "192.0.2.2:53",
    ]
    assert m.origins["dns.upstreams[1]"] == ("totd.conf", 2)


def test_duplicate_forwarder_is_kept_once_with_a_warning() -> None:
    m = totd("forwarder 192.0.2.1\nforwarder 192.0.2.1 port 53\n")
    assert [str(e) for e in legacy.build(m).dns.upstreams] == ["192.0.2.1:53"]
    assert "listed twice" in messages(m, 2)[0]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("forwarder ns.example.net", "is not an IP address"),
        ("forwarder 192.0.2.1 port", "expected 'forwarder ADDRESS [port N]'"),
        ("forwarder 192.0.2.1 via 53", "expected 'forwarder ADDRESS [port N]'"),
        ("forwarder 192.0.2.1 port 0", "is not a port number"),
        ("forwarder", "expected 'forwarder ADDRESS [port N]'"),
    ],
)
def test_bad_forwarder_is_an_error_naming_the_line(line: str, expected: str) -> None:
    m = totd(f"# comment\n{line}\n")
    assert any(expected in text for text in messages(m, 2, "error"))
    with pytest.raises(MigrationError) as info:
        legacy.build(m)
    assert "totd.conf: 1 error;" in str(info.value)
    assert any(str(n).startswith("totd.conf:2: error: ") for n in info.value.notices)


def test_prefix_without_length_is_the_rfc6052_96_format() -> None:
    m = totd("prefix 2001:db8:5999::\n")
    config = legacy.build(m)
    assert [str(p) for p in config.prefixes] == ["2001:db8:5999::/96"]
    # totd built the address from the prefix's first 12 bytes and the IPv4
    # address: the /96 prefix gives the very same address.
    v4 = ipaddress.IPv4Address("192.168.1.2")
    assert str(config.prefixes[0].embed(v4)) == "2001:db8:5999::c0a8:102"


@given(
    high=st.integers(min_value=0, max_value=2**64 - 1),
    middle=st.integers(min_value=0, max_value=2**24 - 1),
    v4=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_imported_prefix_synthesizes_what_totd_synthesized(high: int, middle: int, v4: int) -> None:
    # Any totd prefix with a zero u-octet (bits 64-71): totd kept the first
    # 96 bits and put the IPv4 address in the last 32.
    address = ipaddress.IPv6Address((high << 64) | (middle << 32))
    m = totd(f"prefix {address}\n")
    (prefix,) = legacy.build(m).prefixes
    totd_bytes = address.packed[:12] + ipaddress.IPv4Address(v4).packed
    assert prefix.embed(ipaddress.IPv4Address(v4), check_global=False).packed == totd_bytes


def test_prefix_with_slash_96_is_accepted() -> None:
    assert [str(p) for p in legacy.build(totd("prefix 2001:db8:64::/96\n")).prefixes] == [
        "2001:db8:64::/96"
    ]


def test_prefix_with_another_length_is_an_error_explaining_the_96_format() -> None:
    m = totd("forwarder 192.0.2.1\nprefix 2001:db8:64::/64\n")
    (error,) = messages(m, 2, "error")
    assert "RFC 6052 /96 format" in error and "/64" in error


def test_prefix_with_nonzero_u_octet_is_an_rfc6052_error() -> None:
    m = totd("prefix 2001:db8:64:0:ff00::\n")
    (error,) = messages(m, 1, "error")
    assert "u-octet" in error and "RFC 6052 section 2.2" in error


def test_prefix_low_bits_are_dropped_with_a_warning() -> None:
    m = totd("prefix 2001:db8:64::c000:201\n")
    assert [str(p) for p in legacy.build(m).prefixes] == ["2001:db8:64::/96"]
    assert "last 32 bits" in messages(m, 1)[0]


def test_sixbone_prefix_is_kept_with_a_warning() -> None:
    m = totd("prefix 3ffe:501:4819:ffff::\n")
    assert [str(p) for p in legacy.build(m).prefixes] == ["3ffe:501:4819:ffff::/96"]
    assert "RFC 3701" in messages(m, 1)[0]


def test_not_a_prefix_is_an_error() -> None:
    m = totd("prefix 192.0.2.0\n")
    assert "is not an IPv6 prefix" in messages(m, 1, "error")[0]


def test_several_prefixes_keep_order_and_warn_about_round_robin() -> None:
    m = totd("prefix 2001:db8:64::\nprefix 2001:db8:65::\nprefix 2001:db8:64::\n")
    assert [str(p) for p in legacy.build(m).prefixes] == ["2001:db8:64::/96", "2001:db8:65::/96"]
    assert "listed twice" in messages(m, 3)[0]
    assert any("round robin" in text for text in messages(m, 0))


def test_port_moves_to_loopback_listeners_with_a_warning() -> None:
    m = totd("port 5300\n")
    config = legacy.build(m)
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:5300", "[::1]:5300"]
    (warning,) = messages(m, 1)
    assert "every interface" in warning and "127.0.0.1:5300" in warning


def test_without_port_totd_listened_on_53() -> None:
    config = legacy.build(totd("forwarder 192.0.2.1\n"))
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:53", "[::1]:53"]


@pytest.mark.parametrize("value", ["0", "70000", "dns", ""])
def test_bad_port_is_an_error(value: str) -> None:
    assert messages(totd(f"port {value}\n"), 1, "error")


def test_retry_and_pidfile() -> None:
    config = legacy.build(totd("retry 120\npidfile /var/run/totd.pid\n"))
    assert config.dns.upstream_retry == 120.0
    assert config.service.pidfile == "/var/run/totd.pid"


@pytest.mark.parametrize("line", ["retry 0", "retry soon", "retry", "pidfile", "pidfile a b"])
def test_bad_retry_or_pidfile_is_an_error(line: str) -> None:
    assert messages(totd(line + "\n"), 1, "error")


def test_interfaces_cannot_be_mapped_and_leave_a_comment() -> None:
    m = totd("\ninterfaces em0 em1\n")
    (warning,) = messages(m, 2)
    assert "em0 em1" in warning and "loopback" in warning
    assert any("em0 em1" in line for line in m.comments["dns.listen"])
    assert "em0 em1" in legacy.render(m, legacy.build(m))


def test_wildcard_interfaces_is_the_listen_everywhere_warning() -> None:
    m = totd("port 53\ninterfaces *\n")
    assert "every interface" in messages(m, 1)[0]
    assert messages(m, 2) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("stf", "RFC 7526"),
        ("scoped 2001:db8:1:: fec0:: 48", "RFC 3879"),
        ("allow 192.0.2.7", "HTTP control interface"),
        ("dnssec yes", "unknown keyword 'dnssec'"),
    ],
)
def test_unsupported_lines_are_warnings_naming_the_line(line: str, expected: str) -> None:
    m = totd(f"forwarder 192.0.2.1\n\n{line}\n")
    (warning,) = messages(m, 3)
    assert expected in warning
    assert str(next(n for n in m.notices if n.line == 3)).startswith("totd.conf:3: warning: ")
    legacy.build(m)  # warnings do not stop the import


def test_comments_and_blank_lines_are_ignored() -> None:
    m = totd("# hash\n; semicolon\n   \nforwarder 192.0.2.1 # trailing\nretry 30 ; trailing\n")
    config = legacy.build(m)
    assert [str(e) for e in config.dns.upstreams] == ["192.0.2.1:53"]
    assert config.dns.upstream_retry == 30.0
    assert m.errors == []


def test_missing_forwarder_and_prefix_are_warned() -> None:
    m = totd("")
    whole_file = " ".join(messages(m, 0))
    assert "no forwarder" in whole_file and "no prefix" in whole_file
    assert legacy.build(m).prefixes == Config().prefixes


# -- faithd.conf ----------------------------------------------------------------------


def test_rules_keep_their_order_and_end_with_faithds_implicit_deny() -> None:
    m = faithd(
        "2001:db8:1::/48 deny 10.0.0.0/8\n"
        "2001:db8:1::/48 permit 0.0.0.0/0\n"
        "fd00::/8 DENY 192.0.2.0/24\n"
        "fd00::/8 Permit 192.0.2.1\n"
    )
    relay = legacy.build(m).relay
    assert [str(r) for r in relay.rules] == [
        "2001:db8:1::/48 deny 10.0.0.0/8",
        "2001:db8:1::/48 permit 0.0.0.0/0",
        "fd00::/8 deny 192.0.2.0/24",
        "fd00::/8 permit 192.0.2.1/32",
        "::/0 deny 0.0.0.0/0",
    ]
    assert [str(n) for n in relay.clients.networks] == ["2001:db8:1::/48", "fd00::/8"]


def test_no_catch_all_is_added_after_one() -> None:
    m = faithd("fd00::/8 deny 10.0.0.0/8\n::/0 permit 0.0.0.0/0\n")
    relay = legacy.build(m).relay
    assert [str(r) for r in relay.rules][-1] == "::/0 permit 0.0.0.0/0"
    assert len(relay.rules) == 2
    assert any("::/0" in text for text in messages(m, 0))


def test_no_rules_warns_and_keeps_the_local_default() -> None:
    m = faithd("# nothing here\n\n")
    relay = legacy.build(m).relay
    assert relay.rules == ()
    assert relay.clients == NetworkSet.parse(LOCAL_NETWORKS)
    warning = " ".join(messages(m, 0))
    assert "relayed for every client" in warning and "NOT copy" in warning
    rendered = legacy.render(m, legacy.build(m))
    assert "\nrules = " not in rendered and "\nclients = " not in rendered


def test_unknown_action_is_deny_like_faithd() -> None:
    m = faithd("fd00::/8 allow 192.0.2.0/24\n")
    assert [str(r) for r in legacy.build(m).relay.rules][0] == "fd00::/8 deny 192.0.2.0/24"
    assert "treated it as deny" in messages(m, 1)[0]
    assert any("refuses every client" in text for text in messages(m, 0))


def test_bind_address_is_dropped_with_a_warning() -> None:
    m = faithd("fd00::/8 permit 192.0.2.0/24 198.51.100.1\n")
    assert [str(r) for r in legacy.build(m).relay.rules][0] == "fd00::/8 permit 192.0.2.0/24"
    assert "bind address 198.51.100.1" in messages(m, 1)[0]


@pytest.mark.parametrize(
    "line",
    [
        "fd00::/8 permit",
        "fd00::/8 permit 192.0.2.0/24 198.51.100.1 extra",
        "fd00::/8 permit 192.0.2.0/24 not-an-address",
        "fd00::/8 permit 192.0.2.0/33",
        "office permit 192.0.2.0/24",
    ],
)
def test_lines_faithd_ignored_are_not_carried_over(line: str) -> None:
    m = faithd(line + "\n")
    assert "faithd ignored this line" in messages(m, 1)[0]
    assert legacy.build(m).relay.rules == ()


def test_host_bits_are_masked_like_faithd() -> None:
    m = faithd("2001:db8:1::1/48 permit 192.0.2.7/24\n")
    assert str(legacy.build(m).relay.rules[0]) == "2001:db8:1::/48 permit 192.0.2.0/24"
    assert len(messages(m, 1)) == 2


def test_rules_that_never_matched_in_faithd_are_dropped() -> None:
    m = faithd("192.0.2.0/24 permit 0.0.0.0/0\nfd00::/8 permit 2001:db8::/32\n")
    assert "clients are IPv6" in messages(m, 1)[0]
    assert "only relayed to IPv4" in messages(m, 2)[0]
    assert legacy.build(m).relay.rules == ()


def test_unterminated_last_line_is_carried_with_a_warning() -> None:
    m = faithd("fd00::/8 deny 10.0.0.0/8\nfd00::/8 permit 0.0.0.0/0")
    assert len(legacy.build(m).relay.rules) == 3
    assert "never read it" in messages(m, 2)[0]
    assert messages(m, 1) == []


def test_prefix_and_ports_come_from_the_command_line() -> None:
    m = faithd("", prefixes=["2001:db8:5999::/96"], ports=[5999, 22])
    config = legacy.build(m)
    assert [str(p) for p in config.prefixes] == ["2001:db8:5999::/96"]
    assert [(p.port, p.protocols) for p in config.relay.ports] == [
        (5999, ("tcp",)),
        (22, ("tcp",)),
    ]
    assert not any("prefix" in text or "--port" in text for text in messages(m, 0)[1:])


def test_missing_prefix_and_ports_are_warned() -> None:
    text = " ".join(messages(faithd(""), 0))
    assert "--prefix" in text and "--port" in text
    assert "--prefix" not in " ".join(messages(faithd("", prefix_known=True), 0))


def _faithd_reference(rules: list[tuple[str, bool, str]], client: str, dest: str) -> bool:
    """faithd(8): rules in order, first match wins, no match denies, no rules permit."""
    if not rules:
        return True
    for src, permit, dst in rules:
        if ipaddress.ip_address(client) in ipaddress.ip_network(src) and ipaddress.ip_address(
            dest
        ) in ipaddress.ip_network(dst):
            return permit
    return False


def test_imported_rules_decide_like_faithd() -> None:
    raw = [
        ("2001:db8:1::/48", False, "198.51.100.0/24"),
        ("2001:db8:1::/48", True, "0.0.0.0/0"),
        ("2001:db8:2::/48", True, "203.0.113.0/24"),
        ("2001:db8:2:5::/64", True, "0.0.0.0/0"),
    ]
    text = "".join(f"{s} {'permit' if p else 'deny'} {d}\n" for s, p, d in raw)
    config = legacy.build(faithd(text, prefixes=["2001:db8:64::/96"]))
    access = RelayAccess.from_config(config, frozenset())
    prefix = Nat64Prefix.parse("2001:db8:64::/96")
    clients = ["2001:db8:1::7", "2001:db8:2::7", "2001:db8:2:5::7", "2001:db8:3::7", "fd00::1"]
    destinations = ["198.51.100.9", "203.0.113.9", "192.0.2.9", "8.8.8.8"]
    for client in clients:
        for dest in destinations:
            expected = _faithd_reference(raw, client, dest)
            verdict = access.check(
                ipaddress.ip_address(client), ipaddress.IPv4Address(dest), prefix
            )
            assert verdict.permit is expected, (client, dest, verdict)


# -- combining and output -----------------------------------------------------------------


def test_merge_takes_dns_from_totd_and_relay_from_faithd() -> None:
    m = legacy.merge(
        totd("forwarder 192.0.2.1\nprefix 2001:db8:5999::\n"),
        faithd("2001:db8:1::/48 permit 192.0.2.0/24\n", ports=[5999], prefix_known=True),
    )
    config = legacy.build(m)
    assert [str(p) for p in config.prefixes] == ["2001:db8:5999::/96"]
    assert [str(e) for e in config.dns.upstreams] == ["192.0.2.1:53"]
    assert config.relay.ports[0].port == 5999
    assert m.sources == ["totd.conf", "faithd.conf"]


def test_config_errors_name_the_line_they_came_from() -> None:
    # The same prefix from the file and the command line trips config.validate.
    m = legacy.merge(
        totd("forwarder 192.0.2.1\nprefix 2001:db8:5999::\n"),
        faithd("", prefixes=["2001:db8:64::/96"]),
    )
    m.table["dns"]["upstream_retry"] = 0  # a value only config.from_table rejects
    m.origins["dns.upstream_retry"] = ("totd.conf", 7)
    with pytest.raises(MigrationError) as info:
        legacy.build(m)
    errors = [str(n) for n in info.value.notices if n.severity == "error"]
    assert errors == [
        "totd.conf:7: error: dns.upstream_retry: 0.0 is not a duration >= 1.0 seconds"
    ]


def test_notices_are_sorted_by_file_and_line() -> None:
    m = totd("interfaces em0\nstf\n")
    lines = [n.line for n in m.sorted_notices()]
    assert lines == sorted(lines, key=lambda n: n or 1 << 30)
    assert str(Notice("a.conf", 0, "warning", "x")) == "a.conf: warning: x"


def test_output_has_only_the_imported_keys_and_loads_back() -> None:
    m = totd("forwarder 192.0.2.1\nprefix 2001:db8:5999::\nretry 60\n")
    config = legacy.build(m)
    text = legacy.render(m, config)
    assert load_text(text) == config
    keys = {line.split(" = ")[0] for line in text.splitlines() if " = " in line and line[0] != "#"}
    assert keys == {"prefixes", "listen", "upstreams", "upstream_retry"}
    assert legacy.defaults_differ(config) == {
        "prefixes",
        "dns.listen",
        "dns.upstreams",
        "dns.upstream_retry",
    }
    assert text.startswith("# totd-faith configuration imported from totd.conf\n")


GOLDEN_CASES = [
    ("totd-classic", "totd", {}),
    ("totd-full", "totd", {}),
    ("faithd-site", "faithd", {"prefixes": ["2001:db8:5999::/96"], "ports": [5999]}),
    ("faithd-empty", "faithd", {"prefixes": ["2001:db8:5999::/96"], "ports": [5999]}),
    ("faithd-open", "faithd", {"prefixes": ["2001:db8:5999::/96"], "ports": [5999]}),
]


@pytest.mark.parametrize(("name", "tool", "options"), GOLDEN_CASES)
def test_golden_output(name: str, tool: str, options: dict[str, object]) -> None:
    source = f"{name}.conf"
    text = (GOLDEN / source).read_text()
    if tool == "totd":
        m = legacy.parse_totd(text, source)
    else:
        m = legacy.parse_faithd(text, source, **options)  # type: ignore[arg-type]
    config = legacy.build(m)
    assert legacy.render(m, config) == (GOLDEN / f"{name}.toml").read_text()
    assert [str(n) for n in m.sorted_notices()] == (
        (GOLDEN / f"{name}.stderr").read_text().splitlines()
    )
    assert load_text((GOLDEN / f"{name}.toml").read_text()) == config


def test_golden_errors() -> None:
    m = legacy.parse_totd((GOLDEN / "totd-bad.conf").read_text(), "totd-bad.conf")
    with pytest.raises(MigrationError) as info:
        legacy.build(m)
    expected = (GOLDEN / "totd-bad.stderr").read_text().splitlines()
    assert [str(n) for n in info.value.notices] + [f"Error: {info.value}"] == expected
    assert len(m.errors) == 6
