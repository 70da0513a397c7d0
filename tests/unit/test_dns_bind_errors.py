"""Listener bind failures become one-line operator errors that say what to do."""

from __future__ import annotations

import errno

from totd_faith.dnssockets import bind_error
from totd_faith.endpoints import parse_endpoint


def test_permission_denied_names_the_capability_and_the_alternative():
    error = bind_error(parse_endpoint("[::1]:53"), "udp", PermissionError(errno.EACCES, "x"))
    text = str(error)
    assert text.startswith("cannot listen on [::1]:53 (udp): permission denied")
    assert "CAP_NET_BIND_SERVICE" in text and "above 1023" in text


def test_address_in_use_and_not_available():
    in_use = bind_error(parse_endpoint("127.0.0.1:53"), "tcp", OSError(errno.EADDRINUSE, "x"))
    assert "already in use" in str(in_use) and "--listen" in str(in_use)
    missing = bind_error(parse_endpoint("192.0.2.1:53"), "udp", OSError(errno.EADDRNOTAVAIL, "x"))
    assert "no such address" in str(missing)
