"""Default upstreams from resolv.conf text."""

from __future__ import annotations

from pathlib import Path

from totd_faith.resolvconf import parse_resolv_conf, read_resolv_conf


def test_nameservers_in_order_with_port_53():
    text = (
        "# generated\n"
        "search example.org\n"
        "nameserver 192.0.2.53\n"
        "; comment\n"
        "nameserver 2001:db8::53   # trailing comment\n"
        "nameserver 192.0.2.53\n"
        "options edns0\n"
    )
    found, warnings = parse_resolv_conf(text)
    assert [str(e) for e in found] == ["192.0.2.53:53", "[2001:db8::53]:53"]
    assert warnings == []


def test_bad_and_scoped_lines_are_skipped_with_warnings():
    found, warnings = parse_resolv_conf(
        "nameserver fe80::1%eth0\nnameserver resolver.example\nnameserver\n", "rc"
    )
    assert found == []
    assert len(warnings) == 2
    assert warnings[0].startswith("rc:1: skipping fe80::1%eth0")
    assert "rc:2" in warnings[1] and "not an IP address" in warnings[1]


def test_unreadable_file_gives_a_warning(tmp_path: Path):
    found, warnings = read_resolv_conf(str(tmp_path / "missing"))
    assert found == [] and "cannot read" in warnings[0]
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\n")
    assert [str(e) for e in read_resolv_conf(str(conf))[0]] == ["127.0.0.53:53"]
