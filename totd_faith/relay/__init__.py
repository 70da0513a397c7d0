"""The faithd-style relay: IPv6 clients reach IPv4 services by prefix, by port map or on every port.

``tcp`` carries TCP connections, ``udp``/``tproxy`` datagrams and all-ports
mode, ``proxyproto`` builds PROXY protocol headers (no I/O), ``service``
composes them into one :class:`~totd_faith.runtime.Service`.
"""
