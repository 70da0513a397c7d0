"""``totd-faith addr``: RFC 6052 address mapping by hand."""

from __future__ import annotations

import click

from totd_faith.cli.common import Group
from totd_faith.prefix import Nat64Prefix, parse_ipv4, parse_ipv6

prefix_option = click.option(
    "-p",
    "--prefix",
    default="64:ff9b::/96",
    show_default=True,
    help="Translation prefix (RFC 6052: /32, /40, /48, /56, /64 or /96).",
)


@click.group(cls=Group)
def addr() -> None:
    """Compute IPv4-embedded IPv6 addresses (RFC 6052) and decode them again."""


@addr.command()
@prefix_option
@click.argument("ipv4", nargs=-1, required=True)
def encode(prefix: str, ipv4: tuple[str, ...]) -> None:
    """Print the IPv6 address of each IPV4 inside PREFIX, one a line.

    Example: totd-faith addr encode --prefix 2001:db8:64::/96 192.0.2.10
    """
    nat64 = Nat64Prefix.parse(prefix)
    lines = [str(nat64.embed(parse_ipv4(text))) for text in ipv4]
    click.echo("\n".join(lines))


@addr.command()
@prefix_option
@click.argument("ipv6", nargs=-1, required=True)
def decode(prefix: str, ipv6: tuple[str, ...]) -> None:
    """Print the IPv4 address embedded in each IPV6 address, one a line.

    Example: totd-faith addr decode --prefix 2001:db8:64::/96 2001:db8:64::c000:20a
    """
    nat64 = Nat64Prefix.parse(prefix)
    lines = [str(nat64.extract(parse_ipv6(text))) for text in ipv6]
    click.echo("\n".join(lines))
