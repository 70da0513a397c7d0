"""``totd-faith relay``: run the faithd-style relay alone, in the foreground."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import tomllib
from pathlib import Path
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
from totd_faith.config import replace as replace_config
from totd_faith.prefix import Nat64Prefix
from totd_faith.relay import splice
from totd_faith.relay.service import RelayService
from totd_faith.runtime import Service, run_workers, setup_logging

log = logging.getLogger("totd_faith.relay")

_EPILOG = """\b
Examples:
    # prefix mode: [2001:db8:64::c633:6402]:80 reaches 198.51.100.2:80
    ip -6 route add local 2001:db8:64::/96 dev lo
    totd-faith relay --prefix 2001:db8:64::/96 --port 80 --port 5999
\b
    # port map (what 6tunnel does): [::]:8080 reaches 192.0.2.10:80
    totd-faith relay --map '[::]:8080=192.0.2.10:80'

\b
Clients default to loopback, link-local, RFC 1918 and ULA networks
(relay.clients).  Loopback, link-local, multicast, reserved and this host's
own IPv4 addresses are never relayed unless a relay.rules permit names them.
SIGTERM/SIGINT stop accepting and let connections drain for
service.drain_timeout; SIGHUP re-reads the configuration file (new rules,
ports and maps; established connections stay).
"""


def _describe(config: Config) -> str:
    relay = config.relay
    parts = [f"prefixes {', '.join(map(str, config.prefixes))}"]
    if relay.ports:
        ports = []
        for port in relay.ports:
            text = f"{port.port}/{'+'.join(port.protocols)}"
            if port.proxy_protocol != "none":
                text += f" (PROXY {port.proxy_protocol})"
            ports.append(text)
        parts.append(f"ports {' '.join(ports)} on [{relay.listen_address}]")
    if relay.all_ports:
        parts.append("all ports (tproxy)")
    for relay_map in relay.maps:
        text = f"map {relay_map.listen} -> {relay_map.target}/{relay_map.protocol}"
        if relay_map.proxy_protocol != "none":
            text += f" (PROXY {relay_map.proxy_protocol})"
        parts.append(text)
    parts.append(f"clients {str(relay.clients) or 'nobody (every connection is refused)'}")
    if relay.rules:
        parts.append(f"{len(relay.rules)} rules")
    if not splice.wanted(relay.splice):
        engine = "copy engine (transports)"
    elif splice.splice_after(relay.splice):
        engine = f"copy engine, splice after {splice.splice_after(relay.splice) // 1024} KiB"
    else:
        engine = "splice engine"
    parts.append(
        f"limits {relay.max_connections} connections, {relay.max_connections_per_client} "
        f"per client, idle {relay.idle_timeout:g} s; {engine}"
    )
    return "; ".join(parts)


def _maps_only(config_path: str | None, overrides: dict[str, object]) -> bool:
    """Whether port maps or all-ports mode were asked for without naming prefix ports.

    relay.ports defaults to 80 and 443 so that ``serve`` relays out of the box;
    but ``totd-faith relay --map '[::]:8080=192.0.2.10:80'`` is 6tunnel's job
    and must not also bind ports 80 and 443 (which needs root), nor should
    ``--all-ports``, whose tproxy listener catches every port anyway.
    """
    table: object = {}
    if config_path is not None:
        try:
            table = tomllib.loads(Path(config_path).read_text(encoding="utf-8")).get("relay", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            table = {}  # load_config reports the problem
    if not isinstance(table, dict):
        table = {}
    names_ports = "relay.ports" in overrides or "ports" in table
    other_modes = (
        "relay.maps" in overrides
        or "relay.all_ports" in overrides
        or "maps" in table
        or table.get("all_ports") is True
    )
    return other_modes and not names_ports


def has_anyip_route(prefix: Nat64Prefix) -> bool | None:
    """Whether the local table delivers ``prefix`` locally; None if we cannot tell."""
    try:
        out = subprocess.run(
            ["ip", "-6", "route", "show", "table", "local", "exact", str(prefix.network)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return any(line.split()[:1] == ["local"] for line in out.stdout.splitlines())


def route_advice(config: Config) -> list[str]:
    """One line per prefix the relay cannot receive, naming the command that fixes it."""
    relay = config.relay
    if not relay.ports or relay.all_ports or relay.manage_routes:
        return []
    return [
        f"no AnyIP route for {prefix}: clients cannot reach the relay through it; add it with "
        f"`ip -6 route add local {prefix} dev lo` (or use --manage-routes, or "
        f"`totd-faith setup --prefix {prefix} --apply`)"
        for prefix in config.prefixes
        if has_anyip_route(prefix) is False
    ]


@click.command(cls=Command, epilog=_EPILOG)
@config_option
@override_flags(dns=False, relay=True)
def relay(config_path: str | None, **flags: Any) -> None:
    """Run the IPv6-to-IPv4 relay (faithd successor) in the foreground.

    Prefix mode relays connections to PREFIX::a.b.c.d port N to a.b.c.d port
    N; port maps relay a fixed listen address to a fixed IPv4 target.  Flags
    override the configuration file.
    """
    overrides = overrides_from(flags)

    def reload_config() -> Config:
        loaded = load_config(config_path, overrides)
        if _maps_only(config_path, overrides):
            loaded = replace_config(loaded, relay=dataclasses.replace(loaded.relay, ports=()))
        return loaded

    config = reload_config()
    relay_conf = config.relay
    if not (relay_conf.ports or relay_conf.maps or relay_conf.all_ports):
        raise click.UsageError(
            "nothing to relay: relay.ports is empty; give --port N (prefix mode), "
            "--map LISTEN=TARGET or --all-ports (or relay.ports / relay.maps in the "
            "configuration file)"
        )
    setup_logging(config.log)

    def build(cfg: Config, worker: int) -> list[Service]:
        return [RelayService(cfg)]

    def ready() -> None:
        log.info("relay: %s", _describe(config))
        for line in route_advice(config):
            log.warning("%s", line)

    status = run_workers(
        config.service.workers, build, config, reload_config, ready, manage_host=True
    )
    if status:
        raise click.exceptions.Exit(status)
