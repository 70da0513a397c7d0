"""Zone building from hosts entries: placement, synthesis, PTR choice, formats, determinism."""

from __future__ import annotations

import ipaddress
import random

import dns.name
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totd_faith.errors import HostsFileError, OperatorError
from totd_faith.hosts import HostEntry, parse_hosts
from totd_faith.prefix import Nat64Prefix
from totd_faith.zones import (
    ZoneSettings,
    build_table,
    dns_order,
    export,
    forward_zone,
    place_name,
    reverse_zone,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
NSP = Nat64Prefix.parse("2001:db8:5999::/96")
NSP48 = Nat64Prefix.parse("2001:db8:64::/48")
WKP = Nat64Prefix.parse("64:ff9b::/96")
ORIGIN = dns.name.from_text("example.org.")

CLASSIC = """\
192.168.1.2 cvsup.example.org cvsup
192.168.1.3 www WWW ftp.example.org
192.168.1.4 www
"""


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def entries_of(text: str, filename: str = "hosts") -> list[HostEntry]:
    entries, _ = parse_hosts(text, filename)
    return entries


def rrs(zone: dns.zone.Zone, rdtype: dns.rdatatype.RdataType) -> set[tuple[str, str]]:
    """Every (absolute owner, rdata) of one type, read back through dnspython."""
    assert zone.origin is not None
    return {
        (
            name.derelativize(zone.origin).to_text(),
            rdata.to_text(origin=zone.origin, relativize=False),
        )
        for name, _ttl, rdata in zone.iterate_rdatas(rdtype)
    }


def reparse(text: str, origin: dns.name.Name) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=origin, relativize=True)


# -- placement


@pytest.mark.parametrize(
    ("written", "placed"),
    [
        ("cvsup.", "cvsup.example.org."),
        ("CVSup.", "cvsup.example.org."),
        ("cvsup.example.org.", "cvsup.example.org."),
        ("a.b.example.org.", "a.b.example.org."),
        ("www.example.net.", "www.example.net."),
        ("example.org.", "example.org."),
    ],
)
def test_single_labels_go_under_the_origin_dotted_names_stay(written: str, placed: str) -> None:
    assert place_name(n(written), ORIGIN).to_text() == placed


# -- the host table


def test_classic_table_synthesizes_dedups_and_sorts() -> None:
    table, warnings = build_table(entries_of(CLASSIC), NSP, ORIGIN)
    assert warnings == []
    assert [(r.name.to_text(), str(r.ipv6)) for r in table.records] == [
        ("cvsup.example.org.", "2001:db8:5999::c0a8:102"),
        ("ftp.example.org.", "2001:db8:5999::c0a8:103"),
        ("www.example.org.", "2001:db8:5999::c0a8:103"),
        ("www.example.org.", "2001:db8:5999::c0a8:104"),
    ]
    assert [(str(a), [x.to_text() for x in names]) for a, names in table.addresses] == [
        ("2001:db8:5999::c0a8:102", ["cvsup.example.org."]),
        ("2001:db8:5999::c0a8:103", ["www.example.org.", "ftp.example.org."]),
        ("2001:db8:5999::c0a8:104", ["www.example.org."]),
    ]


def test_canonical_name_is_the_first_name_of_the_first_line_with_the_address() -> None:
    text = "192.0.2.1 zeta alpha\n192.0.2.1 beta\n"
    table, _ = build_table(entries_of(text), NSP, ORIGIN)
    assert [x.to_text() for x in table.addresses[0][1]] == [
        "zeta.example.org.",
        "alpha.example.org.",
        "beta.example.org.",
    ]


def test_files_count_in_the_order_given() -> None:
    first = entries_of("192.0.2.1 from-one\n", "one")
    second = entries_of("192.0.2.1 from-two\n", "two")
    table, _ = build_table(second + first, NSP, ORIGIN)
    assert table.addresses[0][1][0] == n("from-two.example.org.")


def test_name_outside_the_origin_is_an_error_naming_the_line() -> None:
    text = "192.0.2.1 ok\n# c\n192.0.2.2 www.example.net\n"
    with pytest.raises(HostsFileError) as caught:
        build_table(entries_of(text, "zones/hosts"), NSP, ORIGIN)
    assert str(caught.value) == (
        "zones/hosts:3: www.example.net. is outside the origin example.org. (export it with "
        "its own --origin, or use --skip-foreign to leave such names out)"
    )


def test_skip_foreign_leaves_them_out_with_one_summary_warning() -> None:
    text = "192.0.2.1 ok\n192.0.2.2 www.example.net mirror.example.com\n"
    table, warnings = build_table(entries_of(text, "h"), NSP, ORIGIN, skip_foreign=True)
    assert [r.name.to_text() for r in table.records] == ["ok.example.org."]
    assert warnings == [
        "left out 2 name(s) outside the origin example.org., the first www.example.net. at h:2"
    ]


def test_well_known_prefix_refuses_private_addresses_with_file_and_line() -> None:
    text = "192.0.2.33 doc\n192.168.1.2 cvsup\n"
    with pytest.raises(HostsFileError) as caught:
        build_table(entries_of(text, "zones/hosts"), WKP, ORIGIN)
    message = str(caught.value)
    assert message.startswith("zones/hosts:1: 192.0.2.33 is not a global IPv4 address")
    assert "RFC 6052 section 3.1" in message


def test_well_known_prefix_takes_global_addresses() -> None:
    table, _ = build_table(entries_of("8.8.8.8 dns\n"), WKP, ORIGIN)
    assert [str(r.ipv6) for r in table.records] == ["64:ff9b::808:808"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.1.2.3", "a loopback address"),
        ("0.0.0.0", "a 'this network' address"),
        ("224.0.0.251", "a multicast address"),
        ("255.255.255.255", "a reserved or broadcast address"),
        ("240.0.0.1", "a reserved or broadcast address"),
    ],
)
def test_unreachable_addresses_are_skipped_with_a_warning(address: str, reason: str) -> None:
    text = f"8.8.8.8 real\n{address} localhost\n"
    table, warnings = build_table(entries_of(text, "etc/hosts"), WKP, ORIGIN)
    assert [r.name.to_text() for r in table.records] == ["real.example.org."]
    assert warnings == [
        f"etc/hosts:2: skipped localhost: {address} is {reason}, which no translator can reach"
    ]


def test_case_variants_are_one_name() -> None:
    table, _ = build_table(entries_of("192.0.2.1 Host\n192.0.2.1 HOST host\n"), NSP, ORIGIN)
    assert len(table.records) == 1
    assert table.records[0].name.to_text() == "host.example.org."


def test_records_remember_the_first_line() -> None:
    table, _ = build_table(entries_of("192.0.2.1 a\n192.0.2.1 a\n", "f"), NSP, ORIGIN)
    assert (table.records[0].entry.filename, table.records[0].entry.lineno) == ("f", 1)


# -- zones


def test_forward_zone_has_soa_ns_and_one_aaaa_per_pair() -> None:
    table, _ = build_table(entries_of(CLASSIC), NSP, ORIGIN)
    zone = forward_zone(table, ZoneSettings(serial=2026112401, ttl=600))
    soa = zone.get_soa()
    assert (soa.serial, soa.mname.to_text(), soa.rname.to_text()) == (
        2026112401,
        "localhost.",
        "hostmaster.example.org.",
    )
    assert rrs(zone, dns.rdatatype.NS) == {("example.org.", "localhost.")}
    assert rrs(zone, dns.rdatatype.AAAA) == {
        ("cvsup.example.org.", "2001:db8:5999::c0a8:102"),
        ("ftp.example.org.", "2001:db8:5999::c0a8:103"),
        ("www.example.org.", "2001:db8:5999::c0a8:103"),
        ("www.example.org.", "2001:db8:5999::c0a8:104"),
    }
    assert {ttl for _, ttl, _ in zone.iterate_rdatas()} == {600}


def test_reverse_zone_of_a_96_has_one_ptr_per_address() -> None:
    table, _ = build_table(entries_of(CLASSIC), NSP, ORIGIN)
    zone = reverse_zone(table, ZoneSettings())
    assert zone.origin == n("0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa.")
    assert rrs(zone, dns.rdatatype.PTR) == {
        (
            "2.0.1.0.8.a.0.c.0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa.",
            "cvsup.example.org.",
        ),
        (
            "3.0.1.0.8.a.0.c.0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa.",
            "www.example.org.",
        ),
        (
            "4.0.1.0.8.a.0.c.0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa.",
            "www.example.org.",
        ),
    }


def test_reverse_zone_of_a_48_skips_the_u_octet() -> None:
    # RFC 6052 section 2.2: /48 puts 16 bits before bits 64-71 and 16 after.
    table, _ = build_table(entries_of("192.168.1.2 cvsup\n"), NSP48, ORIGIN)
    assert str(table.records[0].ipv6) == "2001:db8:64:c0a8:1:200::"
    zone = reverse_zone(table, ZoneSettings())
    assert zone.origin == n("4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa.")
    ((owner, target),) = rrs(zone, dns.rdatatype.PTR)
    assert target == "cvsup.example.org."
    assert NSP48.address_from_reverse(n(owner)) == V6("2001:db8:64:c0a8:1:200::")


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([32, 40, 48, 56, 64, 96]),
    st.lists(st.ip_addresses(v=4), min_size=1, max_size=10, unique=True),
)
def test_every_ptr_decodes_to_its_hosts_address(length: int, addresses: list[V4]) -> None:
    prefix = Nat64Prefix.parse(f"2001:db8::/{length}")
    addresses = [a for a in addresses if a.packed[0] not in (0, 127) and a.packed[0] < 224]
    text = "".join(f"{a} h{i}\n" for i, a in enumerate(addresses))
    table, _ = build_table(entries_of(text), prefix, ORIGIN)
    zone = reverse_zone(table, ZoneSettings())
    decoded = {}
    for owner, target in rrs(zone, dns.rdatatype.PTR):
        v6 = prefix.address_from_reverse(n(owner))
        assert v6 is not None
        decoded[str(prefix.extract(v6))] = target
    assert decoded == {str(a): f"h{i}.example.org." for i, a in enumerate(addresses)}


def test_name_server_inside_the_zone_needs_an_address() -> None:
    table, _ = build_table(entries_of("192.0.2.1 www\n"), NSP, ORIGIN)
    with pytest.raises(OperatorError, match="ns.example.org. is inside example.org. but no"):
        forward_zone(table, ZoneSettings(ns=n("ns.example.org.")))
    table, _ = build_table(entries_of("192.0.2.1 www\n192.0.2.53 ns\n"), NSP, ORIGIN)
    zone = forward_zone(table, ZoneSettings(ns=n("ns.example.org.")))
    assert zone.get_soa().mname == n("ns.example.org.")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serial": 2**32}, "serial 4294967296 is out of range"),
        ({"serial": -1}, "serial -1 is out of range"),
        ({"ttl": 2**31}, "TTL 2147483648 is out of range"),
        ({"ns": dns.name.Name(("ns",))}, "must be an absolute name"),
    ],
)
def test_zone_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OperatorError, match=message):
        ZoneSettings(**kwargs)  # type: ignore[arg-type]


# -- text formats


def test_bind_text_reads_back_as_the_same_zone() -> None:
    text, _ = export(entries_of(CLASSIC), NSP, ORIGIN, settings=ZoneSettings(serial=7))
    assert "$ORIGIN example.org.\n" in text
    back = reparse(text, ORIGIN)
    table, _ = build_table(entries_of(CLASSIC), NSP, ORIGIN)
    original = forward_zone(table, ZoneSettings(serial=7))
    for rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.AAAA):
        assert rrs(back, rdtype) == rrs(original, rdtype)


def test_bind_reverse_text_reads_back() -> None:
    text, _ = export(entries_of(CLASSIC), NSP, ORIGIN, reverse=True)
    back = reparse(text, NSP.reverse_origin)
    assert len(rrs(back, dns.rdatatype.PTR)) == 3


def test_hosts_format_lines() -> None:
    text, _ = export(entries_of(CLASSIC), NSP, ORIGIN, form="hosts")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "2001:db8:5999::c0a8:102 cvsup.example.org  # 192.168.1.2",
        "2001:db8:5999::c0a8:103 www.example.org ftp.example.org  # 192.168.1.3",
        "2001:db8:5999::c0a8:104 www.example.org  # 192.168.1.4",
    ]


def test_unbound_format_lines() -> None:
    text, _ = export(
        entries_of(CLASSIC), NSP, ORIGIN, form="unbound", settings=ZoneSettings(ttl=60)
    )
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "server:",
        '    local-zone: "example.org." typetransparent',
        '    local-data: "cvsup.example.org. 60 IN AAAA 2001:db8:5999::c0a8:102"',
        '    local-data: "ftp.example.org. 60 IN AAAA 2001:db8:5999::c0a8:103"',
        '    local-data: "www.example.org. 60 IN AAAA 2001:db8:5999::c0a8:103"',
        '    local-data: "www.example.org. 60 IN AAAA 2001:db8:5999::c0a8:104"',
        '    local-data-ptr: "2001:db8:5999::c0a8:102 60 cvsup.example.org."',
        '    local-data-ptr: "2001:db8:5999::c0a8:103 60 www.example.org."',
        '    local-data-ptr: "2001:db8:5999::c0a8:104 60 www.example.org."',
    ]


@pytest.mark.parametrize("form", ["hosts", "unbound"])
def test_reverse_is_for_bind_only(form: str) -> None:
    with pytest.raises(OperatorError, match="--reverse applies to the bind format only"):
        export(entries_of(CLASSIC), NSP, ORIGIN, form=form, reverse=True)


def test_nothing_to_export_is_a_warning() -> None:
    text, warnings = export(entries_of("127.0.0.1 localhost\n"), NSP, ORIGIN)
    assert warnings[-1] == "the hosts files give no names to export; the output has none"
    assert "AAAA" not in text and "SOA" in text


# -- determinism


_lines = st.lists(
    st.tuples(
        st.integers(1, 2**24),
        st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True), min_size=1),
    ),
    min_size=1,
    max_size=15,
    unique_by=lambda line: line[0],
)


def _render(lines: list[tuple[int, list[str]]]) -> str:
    return "".join(f"{V4(0x0A000000 + a)} {' '.join(names)}\n" for a, names in lines)


def _all_formats(text: str) -> list[str]:
    out = []
    for form, reverse in (("bind", False), ("bind", True), ("hosts", False), ("unbound", False)):
        out.append(export(entries_of(text), NSP48, ORIGIN, form=form, reverse=reverse)[0])
    return out


@settings(max_examples=60, deadline=None)
@given(_lines, st.randoms(use_true_random=False))
def test_line_order_does_not_change_any_output(
    lines: list[tuple[int, list[str]]], rng: random.Random
) -> None:
    """One line per address: reordering lines is meaningless, output is byte-identical."""
    shuffled = list(lines)
    rng.shuffle(shuffled)
    assert _all_formats(_render(shuffled)) == _all_formats(_render(lines))


@settings(max_examples=60, deadline=None)
@given(_lines, st.randoms(use_true_random=False))
def test_forward_zone_ignores_all_order(
    lines: list[tuple[int, list[str]]], rng: random.Random
) -> None:
    """The forward zone is a set of (name, address): any entry order gives the same text."""
    entries = entries_of(_render(lines))
    shuffled = list(entries)
    rng.shuffle(shuffled)
    assert export(shuffled, NSP, ORIGIN)[0] == export(entries, NSP, ORIGIN)[0]


def test_shared_address_order_changes_only_the_canonical_name() -> None:
    one = "192.0.2.1 alpha\n192.0.2.1 beta\n"
    two = "192.0.2.1 beta\n192.0.2.1 alpha\n"
    assert export(entries_of(one), NSP, ORIGIN)[0] == export(entries_of(two), NSP, ORIGIN)[0]
    rev_one = export(entries_of(one), NSP, ORIGIN, reverse=True)[0]
    rev_two = export(entries_of(two), NSP, ORIGIN, reverse=True)[0]
    assert "PTR alpha.example.org." in rev_one
    assert "PTR beta.example.org." in rev_two


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?", fullmatch=True)
_deep_lines = st.lists(
    st.tuples(
        st.integers(1, 2**24),
        st.lists(
            st.lists(_label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example.org"])),
            min_size=1,
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=40, deadline=None)
@given(_deep_lines, st.sampled_from([32, 48, 64, 96]))
def test_zones_are_built_in_dns_canonical_order(
    lines: list[tuple[int, list[str]]], length: int
) -> None:
    """bind_text prints nodes in insertion order; that must equal dnspython's own sort."""
    prefix = Nat64Prefix.parse(f"2001:db8::/{length}")
    table, _ = build_table(entries_of(_render(lines)), prefix, ORIGIN)
    for zone in (forward_zone(table, ZoneSettings()), reverse_zone(table, ZoneSettings())):
        assert zone.to_text(sorted=False) == zone.to_text(sorted=True)


def test_dns_order_puts_parents_first_and_compares_from_the_root() -> None:
    names = [
        n(t) for t in ["b.example.org.", "example.org.", "a.b.example.org.", "z.a.example.org."]
    ]
    assert sorted(names, key=dns_order) == sorted(names)
