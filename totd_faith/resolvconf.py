"""Default upstreams: the ``nameserver`` lines of /etc/resolv.conf (resolv.conf(5)).

:func:`parse_resolv_conf` is pure; :func:`read_resolv_conf` only reads the file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from totd_faith.endpoints import Endpoint

RESOLV_CONF = "/etc/resolv.conf"
DNS_PORT = 53


def parse_resolv_conf(text: str, source: str = RESOLV_CONF) -> tuple[list[Endpoint], list[str]]:
    """Nameserver endpoints in file order, plus warnings for lines that were skipped."""
    found: list[Endpoint] = []
    warnings: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        # resolv.conf(5): '#' or ';' in column one starts a comment; be lenient
        # and also strip trailing comments.
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        text_address = words[1]
        if "%" in text_address:
            warnings.append(
                f"{source}:{lineno}: skipping {text_address}: scoped link-local addresses "
                "are not supported as upstreams; give one with --upstream"
            )
            continue
        try:
            address = ipaddress.ip_address(text_address)
        except ValueError:
            warnings.append(f"{source}:{lineno}: skipping {text_address!r}: not an IP address")
            continue
        endpoint = Endpoint(address, DNS_PORT)
        if endpoint not in found:
            found.append(endpoint)
    return found, warnings


def read_resolv_conf(path: str = RESOLV_CONF) -> tuple[list[Endpoint], list[str]]:
    """Like :func:`parse_resolv_conf`; an unreadable file yields no servers and a warning."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], [f"cannot read {path}: {exc.strerror}"]
    return parse_resolv_conf(text, path)
