"""Static hosts files in /etc/hosts format (hosts(5)): IPv4 lines only.

Each line is an address followed by one or more host names; ``#`` starts a
comment that runs to the end of the line.  Following hosts(5), the first name
on a line is the canonical name and the others are aliases; the zone exporter
uses that order to pick PTR targets.

Names come back absolute.  A name written without a trailing dot is taken as
is (``cvsup`` becomes ``cvsup.``): the hosts file itself has no origin.  It is
the zone exporter that places single-label names under an origin (see
:mod:`totd_faith.zones`).

IPv6 lines are skipped with a warning: totd-faith synthesizes IPv6 addresses
from IPv4 ones, and a host that already has IPv6 needs no translation.

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
# hyphen (a leading digit is allowed since RFC 1123).  Underscores are not
# host name characters, and named-checkzone's default check-names would refuse
# them in the exported zone, so they are refused here, on the line that has them.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_LABEL_HINT = (
    "host names are letters, digits and hyphens in dot-separated labels of 1-63 characters "
    "that neither start nor end with a hyphen (RFC 1123 section 2.1)"
)


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One (address, name) pair from a hosts file, with where it came from."""

    address: ipaddress.IPv4Address
    name: dns.name.Name
    filename: str
    lineno: int


def parse_name(text: str) -> dns.name.Name:
    """Parse one host name; raise ``ValueError`` with the problem (no file or line).

    ``cvsup`` and ``cvsup.`` both give the absolute name ``cvsup.``.
    """
    if not text.isascii():
        raise ValueError(
            f"{text} is not a valid host name: write internationalized names in their "
            "ASCII (xn--) form"
        )
    if text == ".":
        raise ValueError(". (the root) is not a host name")
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{text} is not a valid host name: it has an empty label")
        if not _LABEL.match(label):
            raise ValueError(f"{text} is not a valid host name: {_LABEL_HINT}")
    try:
        name = dns.name.from_text(text, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        # Only the 255-octet limit (RFC 1035 section 2.3.4) is left to catch here.
        raise ValueError(f"{text} is not a valid host name: {exc}") from None
    if _looks_like_address(text):
        raise ValueError(
            f"{text} is an address, not a host name (one address per line, then its names)"
        )
    return name


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
            raise HostsFileError(
                filename, lineno, f"{address_text} is not an IPv4 address"
            ) from None
        if not names:
            raise HostsFileError(filename, lineno, f"{address_text} has no host name after it")
        for name_text in names:
            try:
                name = parse_name(name_text)
            except ValueError as exc:
                raise HostsFileError(filename, lineno, str(exc)) from None
            entries.append(HostEntry(address, name, filename, lineno))
    return entries, warnings


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
