"""One exception tree for totd-faith.

Operator errors (bad config, bad command-line input, bad hosts files) and peer
errors (malformed packets, misbehaving upstreams, refused backends) both derive
from :class:`TotdFaithError`, so the CLI can turn any of them into a one-line
message without a traceback, while the servers catch :class:`PeerError` and
keep serving.
"""

from __future__ import annotations


class TotdFaithError(Exception):
    """Base class of every error totd-faith raises on purpose."""


class OperatorError(TotdFaithError):
    """Something the person running totd-faith supplied is wrong."""


class AddressError(OperatorError, ValueError):
    """An address, prefix or endpoint is malformed or violates a rule."""


class PrefixError(AddressError):
    """A translation prefix violates RFC 6052 or an address is not inside it."""


class ConfigError(OperatorError):
    """A configuration value is invalid; the message starts with the key path."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class HostsFileError(OperatorError):
    """A static hosts file has a bad line; the message names file and line."""

    def __init__(self, filename: str, lineno: int, problem: str) -> None:
        self.filename = filename
        self.lineno = lineno
        self.problem = problem
        super().__init__(f"{filename}:{lineno}: {problem}")


class PeerError(TotdFaithError):
    """A remote party (DNS client, upstream, relay client or backend) misbehaved."""


class WireError(PeerError):
    """Bytes received from the network could not be parsed."""
