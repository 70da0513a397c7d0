"""``totd-faith check``: the IPv6 tcping (resolve AAAA through DNS64, time TCP connects)."""

from __future__ import annotations

import ipaddress

import click

from totd_faith.cli.common import Command, config_option, load_config
from totd_faith.endpoints import Endpoint, parse_endpoint
from totd_faith.errors import AddressError
from totd_faith.tcping import (
    MAX_COUNT,
    MAX_INTERVAL,
    MAX_TIMEOUT,
    Attempt,
    Summary,
    describe_address,
    format_attempt,
    format_summary,
    parse_service,
    parse_target,
    probe,
    resolve_aaaa,
)

_LOOPBACK = {
    ipaddress.ip_address("0.0.0.0"): ipaddress.ip_address("127.0.0.1"),
    ipaddress.ip_address("::"): ipaddress.ip_address("::1"),
}


def _server(text: str | None, listen: tuple[Endpoint, ...]) -> Endpoint:
    """--server, else the first DNS listener of the configuration (wildcards -> loopback)."""
    if text is not None:
        try:
            return parse_endpoint(text, 53)
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--server") from None
    first = listen[0] if listen else parse_endpoint("127.0.0.1:5353")
    return Endpoint(_LOOPBACK.get(first.host, first.host), first.port)


@click.command(cls=Command)
@click.argument("host")
@click.argument("port")
@click.option(
    "-s",
    "--server",
    metavar="ADDR",
    help="DNS64 server to ask for HOST's AAAA, e.g. '[::1]:53' "
    "(default: the first dns.listen address, 127.0.0.1:5353).",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, MAX_COUNT),
    default=4,
    show_default=True,
    help="Connection attempts.",
)
@click.option(
    "-t",
    "--timeout",
    type=click.FloatRange(0.01, MAX_TIMEOUT),
    default=2.0,
    show_default=True,
    help="Seconds to wait for the DNS answer and for each connect.",
)
@click.option(
    "-i",
    "--interval",
    type=click.FloatRange(0.0, MAX_INTERVAL),
    default=1.0,
    show_default=True,
    help="Seconds between attempts.",
)
@config_option
@click.pass_context
def check(
    ctx: click.Context,
    host: str,
    port: str,
    server: str | None,
    count: int,
    timeout: float,
    interval: float,
    config_path: str | None,
) -> None:
    """Resolve HOST's AAAA through the DNS64 server and connect to PORT over IPv6.

    Prints one line per attempt (the address and the time to connect, or
    refused / timeout / unreachable) and a summary. HOST may also be an IPv6
    address, which skips DNS; PORT is a number or a service name. Exit status
    0 when any attempt connected, 1 when none did or DNS gave no address.

    \b
    Example: totd-faith check cvs.example.org 5999 --server '[2001:db8:1::53]:53'
    """
    try:
        target = parse_target(host)
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST") from None
    try:
        port_number = parse_service(port)
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="PORT") from None
    config = load_config(config_path, {})
    dns_server = _server(server, config.dns.listen)
    if isinstance(target, ipaddress.IPv6Address):
        addresses = [target]
        shown = str(target)
    else:
        addresses = resolve_aaaa(target, dns_server, timeout)
        shown = target.to_text(omit_final_dot=True)
        for address in addresses:
            click.echo(f"{shown}: {describe_address(address, config.prefixes)}, from {dns_server}")
    attempts: list[Attempt] = []
    try:
        for attempt in probe(
            addresses, port_number, count=count, timeout=timeout, interval=interval
        ):
            attempts.append(attempt)
            click.echo(format_attempt(attempt))
    except KeyboardInterrupt:
        pass  # like ping: Ctrl-C ends the run and still prints the summary
    summary = Summary.of(attempts)
    click.echo(format_summary(shown, port_number, summary))
    ctx.exit(0 if summary.connected else 1)
