"""DNS64 core (RFC 6147, RFC 7050, RFC 8880): a sans-IO module the DNS shell drives.

``Dns64(config, hosts).resolve(query, client)`` is a generator: it yields the
queries to send upstream, receives the replies (or None), and returns the
response for the client.  See :mod:`totd_faith.dns64.resolver`.
"""

from totd_faith.dns64.resolver import Dns64, IPAddress, Resolution

__all__ = ["Dns64", "IPAddress", "Resolution"]
