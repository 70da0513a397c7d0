"""``totd-faith dns``: run the DNS64 proxy alone, in the foreground."""

from __future__ import annotations

from typing import Any

import click

from totd_faith.cli.common import (
    Command,
    config_option,
    load_config,
    override_flags,
    overrides_from,
)
from totd_faith.config import Config
from totd_faith.dnsserver import DnsService
from totd_faith.errors import ConfigError
from totd_faith.runtime import Service, run_workers, setup_logging

_EPILOG = """\b
Example: answer on port 5311, forward to a resolver on port 5300, and
synthesize into a Network-Specific Prefix:
    totd-faith dns --listen 127.0.0.1:5311 --upstream 127.0.0.1:5300 \\
        --prefix 2001:db8:64::/96
    dig @127.0.0.1 -p 5311 AAAA ipv4only.arpa

\b
Defaults: listen on 127.0.0.1:5353 and [::1]:5353, upstreams from
/etc/resolv.conf, prefix 64:ff9b::/96, clients from loopback, link-local,
RFC 1918 and ULA networks only (others get REFUSED).  Port 53 needs root
or CAP_NET_BIND_SERVICE; with service.user set, root is dropped once the
listeners are bound.  Logs go to stderr.  SIGTERM/SIGINT stop the
proxy; SIGHUP re-reads the configuration file and the hosts files (an
invalid new configuration is logged and the old one kept).
"""


def require_dns_listen(config: Config) -> Config:
    """``dns.listen = []`` is valid for the relay alone (and turns DNS off in
    ``serve``), but the DNS proxy with no listener would run and serve nothing."""
    if not config.dns.listen:
        raise ConfigError(
            "dns.listen",
            "the list is empty, so the DNS proxy would answer nowhere; give --listen ADDR or list "
            'the addresses to answer on, e.g. dns.listen = ["127.0.0.1:53", "[::1]:53"]',
        )
    return config


@click.command(cls=Command, epilog=_EPILOG)
@config_option
@override_flags(dns=True, relay=False)
def dns(config_path: str | None, **flags: Any) -> None:
    """Run the DNS64 proxy (RFC 6147) in the foreground.

    AAAA queries for IPv4-only names are answered with addresses inside the
    translation prefixes; everything else is forwarded to the upstreams and
    cached.  Flags override the configuration file.
    """
    overrides = overrides_from(flags)

    def reload_config() -> Config:
        # Also on SIGHUP: an empty list would be kept until the next start fails.
        return require_dns_listen(load_config(config_path, overrides))

    config = reload_config()
    setup_logging(config.log)

    def build(cfg: Config, worker: int) -> list[Service]:
        return [DnsService(cfg)]

    # runtime.run drops to service.user and tells systemd READY=1 once the listeners are bound.
    status = run_workers(config.service.workers, build, config, reload_config)
    if status:
        raise SystemExit(status)
