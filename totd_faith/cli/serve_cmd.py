"""``totd-faith serve``: the DNS64 proxy and the relay as one service.

One configuration drives both halves, so the prefixes DNS synthesizes into
are exactly the prefixes the relay decodes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import click

from totd_faith.cli.common import (
    Command,
    config_option,
    load_config,
    override_flags,
    overrides_from,
)
from totd_faith.cli.relay_cmd import _describe, route_advice
from totd_faith.config import Config
from totd_faith.dnsserver import DnsService
from totd_faith.errors import ConfigError, OperatorError
from totd_faith.metrics import MetricsService, metrics_endpoint
from totd_faith.relay.service import RelayService
from totd_faith.runtime import Service, run_workers, setup_logging

log = logging.getLogger("totd_faith.serve")

_EPILOG = """\b
Examples:
    # everything on the embedded defaults: DNS64 on 127.0.0.1:5353 and
    # [::1]:5353 into 64:ff9b::/96, relay for ports 80 and 443
    totd-faith serve
\b
    # the classic site: a Network-Specific Prefix, DNS on the LAN address,
    # relays for a web server and an echo service
    totd-faith serve --prefix 2001:db8:64::/96 --listen '[fd64:1::1]:53' \\
        --upstream 192.0.2.2:53 --relay-port 80 --relay-port 7

\b
The relay needs the prefix delivered to this host: `ip -6 route add local
PREFIX dev lo` (or --manage-routes, or `totd-faith setup --apply`).  Without
it serve says so and keeps serving DNS.  With dns.listen = [] DNS is off and
serve runs the relay alone (with its metrics).  SIGHUP reloads the configuration
(ACLs, hosts, upstreams, prefixes, ports) without dropping relayed
connections; SIGTERM/SIGINT drain for service.drain_timeout and exit 0.
"""


class OptionalRelay:
    """The relay, degraded to a logged error when it cannot start.

    ``serve`` must keep answering DNS when the relay half cannot run (no
    privilege for port 80, a port in use): the error says what to do, and
    SIGHUP with a fixed configuration tries again.
    """

    name = "relay"

    def __init__(self, relay: RelayService) -> None:
        self.relay = relay
        self.running = False

    async def start(self) -> None:
        if not wants_relay(self.relay.config):
            # Not started, so that a SIGHUP adding ports or maps starts it (see reload).
            log.info(
                "relay: nothing to relay (relay.ports, relay.maps and relay.all_ports are empty)"
            )
            return
        try:
            await self.relay.start()
        except OperatorError as exc:
            log.error("relay not started, DNS64 keeps serving: %s", exc)
            return
        self.running = True

    async def reload(self, config: Config) -> None:
        if self.running:
            await self.relay.reload(config)
            return
        self.relay = RelayService(config, self.relay.stats)
        await self.start()

    async def stop(self, drain_timeout: float) -> None:
        if self.running:
            await self.relay.stop(drain_timeout)


class DnsOff:
    """Stands in for the DNS proxy when ``dns.listen`` is empty (relay only).

    Listeners are bound at start only, so a SIGHUP that adds addresses is
    reported rather than silently ignored.
    """

    name = "dns"

    async def start(self) -> None:
        log.info("dns: off (dns.listen is empty); serving the relay only")

    async def reload(self, config: Config) -> None:
        if config.dns.listen:
            log.warning(
                "dns: dns.listen (%s) takes effect only after a restart; DNS stays off",
                " ".join(map(str, config.dns.listen)),
            )

    async def stop(self, drain_timeout: float) -> None:
        return None


def wants_relay(config: Config) -> bool:
    relay = config.relay
    return bool(relay.ports or relay.maps or relay.all_ports)


def require_something(config: Config) -> Config:
    """serve runs DNS (unless dns.listen is empty) and the relay (unless it has
    nothing to relay); with neither it would serve nothing at all."""
    if not config.dns.listen and not wants_relay(config):
        raise ConfigError(
            "dns.listen",
            "the list is empty and there is nothing to relay (relay.ports, relay.maps and "
            "relay.all_ports are empty), so serve would serve nothing; give --listen ADDR "
            "for DNS and/or --relay-port N or --map LISTEN=TARGET for the relay",
        )
    return config


def build_services(config: Config, worker: int = 0) -> list[Service]:
    """DNS64 proxy, relay (started when it has something to relay) and metrics for one worker.

    With ``dns.listen = []`` DNS is off and the relay is the whole job, so a
    relay that cannot start stops serve (as it stops ``totd-faith relay``).
    """
    relay_service = RelayService(config)
    services: list[Service]
    dns_stats = None
    if config.dns.listen:
        dns = DnsService(config)
        dns_stats = dns.stats
        services = [dns, OptionalRelay(relay_service)]
    else:
        services = [DnsOff(), relay_service]
    endpoint = metrics_endpoint(config)
    if endpoint is not None:
        # Each worker serves its own counters, worker k on metrics port + k.
        services.append(MetricsService(endpoint, dns_stats, relay_service.stats, worker=worker))
    return services


def _announce(config: Config, services: Sequence[Service]) -> None:
    dns = config.dns
    upstreams = ", ".join(map(str, dns.upstreams)) or "from /etc/resolv.conf"
    if dns.listen:
        log.info(
            "serve: prefixes %s; DNS on %s, upstreams %s",
            ", ".join(map(str, config.prefixes)),
            ", ".join(map(str, dns.listen)),
            upstreams,
        )
    else:
        log.info(
            "serve: prefixes %s; DNS off (dns.listen is empty)",
            ", ".join(map(str, config.prefixes)),
        )
    relay_running = any(
        (isinstance(s, OptionalRelay) and s.running) or isinstance(s, RelayService)
        for s in services
    )
    if relay_running:
        log.info("serve: relay %s", _describe(config))
    for line in route_advice(config):
        log.warning("%s.%s", line, " DNS64 keeps serving." if dns.listen else "")


@click.command(cls=Command, epilog=_EPILOG)
@config_option
@override_flags(dns=True, relay=True)
def serve(config_path: str | None, **flags: Any) -> None:
    """Run the DNS64 proxy and the relay together in the foreground.

    AAAA answers for IPv4-only names point into the translation prefixes, and
    the relay carries IPv6 connections to those addresses on to the embedded
    IPv4 address.  Flags override the configuration file.
    """
    overrides = overrides_from(flags)
    if flags.get("relay_ports"):
        # --relay-port N relays TCP and UDP on port N (the default protocols).
        overrides["relay.ports"] = list(flags["relay_ports"])

    def reload_config() -> Config:
        return require_something(load_config(config_path, overrides))

    config = reload_config()
    setup_logging(config.log)
    built: list[Service] = []

    def build(cfg: Config, worker: int) -> list[Service]:
        built[:] = build_services(cfg, worker)
        return built

    def ready() -> None:
        _announce(config, built)

    status = run_workers(
        config.service.workers, build, config, reload_config, ready, manage_host=True
    )
    if status:
        raise click.exceptions.Exit(status)


__all__ = ["serve", "build_services", "DnsOff", "OptionalRelay"]
