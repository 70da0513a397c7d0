"""totd-faith: a DNS64 proxy and faithd-style IPv6-to-IPv4 relay in one program."""

__version__ = "0.1.0"
