"""Hosts-file parsing: entries, warnings, and every error with file:line."""

from __future__ import annotations

import io
import ipaddress
import os
import sys
from pathlib import Path

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.errors import HostsFileError, OperatorError
from totd_faith.hosts import (
    HostEntry,
    is_host_name,
    parse_hosts,
    parse_name,
    read_hosts_files,
)

V4 = ipaddress.IPv4Address


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def pairs(entries: list[HostEntry]) -> list[tuple[str, str, int]]:
    return [(str(e.address), e.name.to_text(), e.lineno) for e in entries]


def test_lines_comments_and_multiple_names() -> None:
    text = (
        "# a whole-line comment\n"
        "\n"
        "192.168.1.2\tcvsup.example.org  cvsup   # trailing comment\n"
        "   \t\n"
        "10.0.5.7 build#no space before the comment\n"
        "192.0.2.1 www.example.org.\n"
    )
    entries, warnings = parse_hosts(text, "zones/hosts")
    assert warnings == []
    assert pairs(entries) == [
        ("192.168.1.2", "cvsup.example.org.", 3),
        ("192.168.1.2", "cvsup.", 3),
        ("10.0.5.7", "build.", 5),
        ("192.0.2.1", "www.example.org.", 6),
    ]
    assert all(e.filename == "zones/hosts" for e in entries)
    assert all(e.name.is_absolute() for e in entries)
    assert entries[0] == HostEntry(V4("192.168.1.2"), n("cvsup.example.org."), "zones/hosts", 3)


def test_relative_names_are_made_absolute_at_the_root() -> None:
    entries, _ = parse_hosts("192.0.2.1 cvsup\n", "h")
    assert entries[0].name == dns.name.Name(("cvsup", ""))


def test_case_is_kept_in_entries() -> None:
    entries, _ = parse_hosts("192.0.2.1 CVSup\n", "h")
    assert entries[0].name.labels[0] == b"CVSup"


@pytest.mark.parametrize(
    "line",
    ["::1 localhost ip6-localhost", "2001:db8::1 v6host", "fe80::1%lo0 link-local"],
)
def test_ipv6_lines_are_skipped_with_a_warning_naming_file_and_line(line: str) -> None:
    entries, warnings = parse_hosts(f"192.0.2.1 a\n{line}\n192.0.2.2 b\n", "etc/hosts")
    assert [e.name.to_text() for e in entries] == ["a.", "b."]
    assert len(warnings) == 1
    address = line.split()[0]
    assert warnings[0].startswith(f"etc/hosts:2: skipped the IPv6 address {address} ")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("192.0.2.300 bad", "192.0.2.300 is not an IPv4 address"),
        (
            "192.0.2 short",
            "192.0.2 is ambiguous: inet_aton(3) reads it as 192.0.0.2 (a short form fills the "
            "missing octets with zeros), glibc's hosts lookups skip the line",
        ),
        (
            "010.0.0.1 octal",
            "010.0.0.1 is ambiguous: inet_aton(3) reads it as 8.0.0.1 (a leading 0 means "
            "octal), glibc's hosts lookups skip the line, other programs read it differently; "
            "write the address you mean as four decimal numbers without leading zeros",
        ),
        ("0x7f.0.0.1 hex", "0x7f.0.0.1 is ambiguous: inet_aton(3) reads it as 127.0.0.1 (0x "),
        ("08.0.0.1 notoctal", "08.0.0.1 is not an IPv4 address"),
        ("192.0.2.0/24 net", "192.0.2.0/24 is not an IPv4 address"),
        ("2001:db8::zz bad6", "2001:db8::zz is not an IPv4 address"),
        ("cvsup 192.0.2.1", "cvsup is not an IPv4 address"),
        ("192.0.2.1", "192.0.2.1 has no host name after it"),
        ("192.0.2.1   # only a comment", "192.0.2.1 has no host name after it"),
        ("192.0.2.1 a..b", "a..b is not a valid host name: it has an empty label"),
        ("192.0.2.1 .lead", ".lead is not a valid host name: it has an empty label"),
        ("192.0.2.1 .", ". (the root) is not a host name"),
        ("192.0.2.1 @", "@ (the root) is not a host name"),
        (
            "192.0.2.1 *.example.org",
            "*.example.org is not a valid host name: a * label is a wildcard in DNS zones "
            "(RFC 4592); list each host by its name",
        ),
        (
            "192.0.2.1 a\\.b",
            "a\\.b is not a valid host name: hosts files have no escapes; write the name "
            "without a backslash",
        ),
        (
            "192.0.2.1 " + "a" * 64,
            "a" * 64 + " is not a valid host name: the label aaaaaaaaaaaaaaaaaaaa... is 64 "
            "characters long, more than the 63 a DNS label may have (RFC 1035 section 2.3.4)",
        ),
        (
            "192.0.2.1 a(b);c",
            "a(b);c is not a valid host name: ( ) ; would need escaping in zone files; use "
            "letters, digits, '-' and '_'",
        ),
        ("192.0.2.1 a\x7fb", "'a\\x7fb' is not a valid host name: it has a control character"),
        ("192.0.2.1 bücher.example", "bücher.example is not a valid host name: write"),
        ("192.0.2.1 192.0.2.2", "192.0.2.2 is an address, not a host name"),
        (
            "192.0.2.1 " + ".".join(["a" * 63] * 4),
            ".".join(["a" * 63] * 4) + " is not a valid host name: a DNS name may have at "
            "most 255 octets (RFC 1035 section 2.3.4)",
        ),
    ],
)
def test_bad_lines_name_file_line_and_problem(line: str, problem: str) -> None:
    text = f"# header\n192.0.2.10 good\n{line}\n192.0.2.11 after\n"
    with pytest.raises(HostsFileError) as caught:
        parse_hosts(text, "zones/hosts")
    assert str(caught.value).startswith(f"zones/hosts:3: {problem}")
    assert caught.value.filename == "zones/hosts"
    assert caught.value.lineno == 3
    assert "\n" not in str(caught.value)


def test_a_63_octet_label_and_a_255_octet_name_are_fine() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 chars + root = 255
    entries, _ = parse_hosts(f"192.0.2.1 {longest}\n", "h")
    wire = entries[0].name.to_wire()
    assert wire is not None and len(wire) == 255


def test_name_parser_accepts_digits_and_hyphens() -> None:
    assert parse_name("3com-router.example") == n("3com-router.example.")
    assert parse_name("x") == n("x.")


@pytest.mark.parametrize(
    "text",
    # RFC 2181 section 11: any label is a valid DNS label; glibc accepts these in
    # /etc/hosts and Docker writes project_db_1 there (QA: one such line stopped start-up).
    ["project_db_1", "bad_name.lan", "-dash.lan", "trail-.example", "_srv._tcp.example", "w*x"],
)
def test_dns_names_that_are_not_host_names_are_accepted(text: str) -> None:
    entries, warnings = parse_hosts(f"192.0.2.1 good\n192.0.2.2 {text} other\n", "h")
    assert warnings == []
    assert [(str(e.address), e.name, e.lineno) for e in entries] == [
        ("192.0.2.1", n("good."), 1),
        ("192.0.2.2", dns.name.from_text(text, dns.name.root), 2),
        ("192.0.2.2", n("other."), 2),
    ]
    assert not is_host_name(entries[1].name)
    assert is_host_name(entries[0].name)


def test_is_host_name_is_rfc_1123_syntax() -> None:
    assert is_host_name(n("3com-router.example."))
    assert is_host_name(n("a.b-c.d."))
    for bad in ("a_b.example.", "-a.example.", "a-.example.", "a b.example."):
        assert not is_host_name(dns.name.from_text(bad)), bad


# -- property: whatever valid hosts text we generate, the parser returns it back


# DNS labels, not only host names: underscores and hyphens anywhere (RFC 2181 section 11),
# and other printable characters that need no escape in a zone file.
_label = st.from_regex(r"[A-Za-z0-9_\-!%&+/:=?^~]{1,12}", fullmatch=True)
_name = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda text: not all(part.isdigit() for part in text.split(".")))
)
_line = st.tuples(st.ip_addresses(v=4), st.lists(_name, min_size=1, max_size=4))


@given(st.lists(_line, max_size=20), st.sampled_from([" ", "\t", "  \t "]))
def test_generated_hosts_text_parses_back(lines: list[tuple[V4, list[str]]], sep: str) -> None:
    text = "".join(f"{addr}{sep}{sep.join(names)}  # c\n" for addr, names in lines)
    entries, warnings = parse_hosts(text, "gen")
    assert warnings == []
    expected = [
        (str(addr), dns.name.from_text(name).to_text(), lineno)
        for lineno, (addr, names) in enumerate(lines, start=1)
        for name in names
    ]
    assert pairs(entries) == expected


# -- reading files


def test_read_hosts_files_concatenates_in_argument_order(tmp_path: Path) -> None:
    first = tmp_path / "one"
    second = tmp_path / "two"
    first.write_text("192.0.2.1 a\n::1 localhost\n")
    second.write_text("# two\n192.0.2.2 b c\n")
    entries, warnings = read_hosts_files([str(second), str(first)])
    assert [(e.filename, e.lineno, e.name.to_text()) for e in entries] == [
        (str(second), 2, "b."),
        (str(second), 2, "c."),
        (str(first), 1, "a."),
    ]
    assert len(warnings) == 1 and warnings[0].startswith(f"{first}:2: ")


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"192.0.2.9 from-stdin\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    entries, _ = read_hosts_files(["-"])
    assert pairs(entries) == [("192.0.2.9", "from-stdin.", 1)]
    assert entries[0].filename == "<stdin>"


def test_missing_file_says_which_and_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(OperatorError, match=rf"^{missing}: no such hosts file; check the path$"):
        read_hosts_files([str(missing)])


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match=rf"^{tmp_path}: is a directory"):
        read_hosts_files([str(tmp_path)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.write_text("192.0.2.1 a\n")
    locked.chmod(0)
    with pytest.raises(OperatorError, match="permission denied; make the hosts file readable"):
        read_hosts_files([str(locked)])


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1"
    bad.write_bytes(b"192.0.2.1 a\n# ok\n192.0.2.2 caf\xe9\n")
    with pytest.raises(HostsFileError, match=rf"^{bad}:3: this line is not UTF-8 text"):
        read_hosts_files([str(bad)])


def test_windows_line_ends_and_byte_order_mark_are_fine(tmp_path: Path) -> None:
    windows = tmp_path / "hosts.txt"
    windows.write_bytes(b"\xef\xbb\xbf192.0.2.1 a\r\n# c\r\n192.0.2.2 b\r\n")
    entries, warnings = read_hosts_files([str(windows)])
    assert warnings == []
    assert pairs(entries) == [("192.0.2.1", "a.", 1), ("192.0.2.2", "b.", 3)]
