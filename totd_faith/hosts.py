"""Static hosts files in /etc/hosts format (hosts(5)): IPv4 lines only.

Each line is an address followed by one or more host names; ``#`` starts a
comment that runs to the end of the line.  Following hosts(5), the first name
on a line is the canonical name and the others are aliases; the zone exporter
uses that order to pick PTR targets.

Names come back absolute.  A name written without a trailing dot is taken as
is (``cvsup`` becomes ``cvsup.``): the hosts file itself has no origin.  It is
the zone exporter that places single-label names under an origin (see
:mod:`totd_faith.zones`).

Names are DNS names, not only RFC 1123 host names: RFC 2181 section 11 lets a
label hold any octets, glibc accepts such names in /etc/hosts, and Docker
writes ``project_db_1`` there.  So underscores and labels that start or end
with a hyphen are fine; what is refused is what would not mean the same
thing everywhere (escapes and other zone-file specials, a ``*`` wildcard
label, an address as a name).
:func:`is_host_name` tells the zone exporter which names BIND's check-names
would refuse.

IPv6 lines are skipped with a warning: totd-faith synthesizes IPv6 addresses
from IPv4 ones, and a host that already has IPv6 needs no translation.
Addresses in the old inet_aton forms (``010.1.1.1``, ``1.2.3``, ``0x7f.0.0.1``)
are errors: inet_aton(3) reads them as octal, hex or short forms, glibc's
hosts lookups skip such lines and other programs read them as decimal.

Parsing is pure; only :func:`read_hosts_files` touches the file system.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name

from totd_faith.errors import HostsFileError, OperatorError

#: The name used for standard input in messages.
STDIN_NAME = "<stdin>"

# RFC 952 as relaxed by RFC 1123 section 2.1: a host name label is letters,
# digits and hyphens, 1 to 63 characters, neither starting nor ending with a
# hyphen (a leading digit is allowed since RFC 1123).  Only the zone exporter
# cares (BIND's check-names); the DNS itself takes any label (RFC 2181 section 11).
_HOST_LABEL = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
#: Characters a master file gives a meaning (RFC 1035 section 5.1), so dnspython
#: writes them escaped.
_ZONE_SPECIAL = frozenset('"();$@')
#: RFC 1035 section 2.3.4: labels are 63 octets or less.
_MAX_LABEL = 63


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One (address, name) pair from a hosts file, with where it came from."""

    address: ipaddress.IPv4Address
    name: dns.name.Name
    filename: str
    lineno: int


def parse_name(text: str) -> dns.name.Name:
    """Parse one host name; raise ``ValueError`` with the problem (no file or line).

    ``cvsup`` and ``cvsup.`` both give the absolute name ``cvsup.``.  Labels
    may hold any printable ASCII but the few characters zone files give a
    meaning (RFC 2181 section 11), so ``project_db_1`` and ``-dash`` are names;
    see :func:`is_host_name`.
    """
    if not text.isascii():
        raise ValueError(
            f"{text} is not a valid host name: write internationalized names in their "
            "ASCII (xn--) form"
        )
    if not text.isprintable():
        raise ValueError(f"{text!r} is not a valid host name: it has a control character")
    if text in (".", "@"):
        raise ValueError(f"{text} (the root) is not a host name")
    if "\\" in text:
        # dnspython (and zone files) would read \. or \032 as an escape; a hosts
        # file has no escapes, so the name would differ from what glibc reads.
        raise ValueError(
            f"{text} is not a valid host name: hosts files have no escapes; write the name "
            "without a backslash"
        )
    special = sorted(set(text) & _ZONE_SPECIAL)
    if special:
        # Legal in the DNS, but every export would need them escaped, and hosts
        # files, zone files and Unbound's quoted strings escape differently.
        raise ValueError(
            f"{text} is not a valid host name: {' '.join(special)} would need escaping in "
            f"zone files; use letters, digits, '-' and '_'"
        )
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{text} is not a valid host name: it has an empty label")
        if len(label) > _MAX_LABEL:
            raise ValueError(
                f"{text} is not a valid host name: the label {label[:20]}... is {len(label)} "
                f"characters long, more than the {_MAX_LABEL} a DNS label may have "
                "(RFC 1035 section 2.3.4)"
            )
        if label == "*":
            # RFC 4592: a "*" label makes a wildcard in an exported zone, while the
            # DNS proxy would answer only the literal name: two meanings.
            raise ValueError(
                f"{text} is not a valid host name: a * label is a wildcard in DNS zones "
                "(RFC 4592); list each host by its name"
            )
    try:
        name = dns.name.from_text(text, origin=dns.name.root)
    except dns.exception.DNSException:
        # Only the 255-octet limit (RFC 1035 section 2.3.4) is left to catch here.
        raise ValueError(
            f"{text} is not a valid host name: a DNS name may have at most 255 octets "
            "(RFC 1035 section 2.3.4)"
        ) from None
    if _looks_like_address(text):
        raise ValueError(
            f"{text} is an address, not a host name (one address per line, then its names)"
        )
    return name


def is_host_name(name: dns.name.Name) -> bool:
    """Whether every label of ``name`` is RFC 1123 host name syntax (section 2.1),
    what BIND's check-names demands of A/AAAA owners and PTR targets."""
    return all(_HOST_LABEL.match(label) for label in name.labels if label)


def _looks_like_address(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text.rstrip("."))
    except ValueError:
        return False
    return True


def parse_hosts(text: str, filename: str) -> tuple[list[HostEntry], list[str]]:
    """Parse hosts-file ``text``; return the entries in file order and warnings.

    Every entry is one (address, name) pair, so a line with three names gives
    three entries.  A bad line raises :class:`HostsFileError` naming
    ``filename`` and the line number.
    """
    entries: list[HostEntry] = []
    warnings: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        address_text, names = fields[0], fields[1:]
        try:
            address = ipaddress.IPv4Address(address_text)
        except ValueError:
            if _is_ipv6(address_text):
                warnings.append(
                    f"{filename}:{lineno}: skipped the IPv6 address {address_text} "
                    "(only IPv4 hosts need translation)"
                )
                continue
            raise HostsFileError(filename, lineno, _bad_address(address_text)) from None
        if not names:
            raise HostsFileError(filename, lineno, f"{address_text} has no host name after it")
        for name_text in names:
            try:
                name = parse_name(name_text)
            except ValueError as exc:
                raise HostsFileError(filename, lineno, str(exc)) from None
            entries.append(HostEntry(address, name, filename, lineno))
    return entries, warnings


#: One part of an inet_aton(3) address: hex (0x), octal (leading 0) or decimal.
_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def _inet_aton(text: str) -> int | None:
    """The address inet_aton(3) reads from ``text``:
    1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part
    fills the remaining octets.  None when inet_aton rejects it too."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_ATON_PART.fullmatch(p) for p in parts):
        return None
    values = [
        int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8 if p != "0" and p.startswith("0") else 10)
        for p in parts
    ]
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    value = last
    for i, v in enumerate(leading):
        value |= v << (8 * (3 - i))
    return value


def _bad_address(text: str) -> str:
    """Why ``text`` is not taken as an IPv4 address, and what to write instead."""
    aton = _inet_aton(text)
    if aton is None:
        return f"{text} is not an IPv4 address"
    parts = text.split(".")
    why = []
    if any(p[:2] in ("0x", "0X") for p in parts):
        why.append("0x means hex")
    if any(len(p) > 1 and p[0] == "0" and p[1] not in "xX" for p in parts):
        why.append("a leading 0 means octal")
    if len(parts) < 4:
        why.append("a short form fills the missing octets with zeros")
    # Checked on glibc 2.36 (Debian 12): its /etc/hosts parser skips such lines,
    # while inet_aton(3) users (ping, for one) read the value below.
    return (
        f"{text} is ambiguous: inet_aton(3) reads it as {ipaddress.IPv4Address(aton)} "
        f"({', '.join(why)}), glibc's hosts lookups skip the line, other programs read it "
        "differently; write the address you mean as four decimal numbers without leading zeros"
    )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def read_hosts_files(paths: Sequence[str]) -> tuple[list[HostEntry], list[str]]:
    """Read and parse hosts files in order; ``-`` reads standard input.

    Raises :class:`OperatorError` for a file that cannot be read and
    :class:`HostsFileError` for a bad line (or bytes that are not UTF-8).
    """
    entries: list[HostEntry] = []
    warnings: list[str] = []
    for path in paths:
        filename, data = _read(path)
        try:
            # utf-8-sig drops the byte order mark some Windows editors write.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            lineno = data.count(b"\n", 0, exc.start) + 1
            raise HostsFileError(
                filename, lineno, "this line is not UTF-8 text (is this really a hosts file?)"
            ) from None
        file_entries, file_warnings = parse_hosts(text, filename)
        entries += file_entries
        warnings += file_warnings
    return entries, warnings


def _read(path: str) -> tuple[str, bytes]:
    if path == "-":
        return STDIN_NAME, sys.stdin.buffer.read()
    try:
        with open(path, "rb") as stream:
            return path, stream.read()
    except IsADirectoryError:
        raise OperatorError(f"{path}: is a directory; give the hosts file inside it") from None
    except FileNotFoundError:
        raise OperatorError(f"{path}: no such hosts file; check the path") from None
    except PermissionError:
        raise OperatorError(
            f"{path}: permission denied; make the hosts file readable for this user"
        ) from None
    except OSError as exc:
        raise OperatorError(f"{path}: cannot read the hosts file: {exc.strerror}") from None
