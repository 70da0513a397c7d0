"""The ``totd-faith`` command line: the only place that prints and picks exit codes."""

from __future__ import annotations

import click

from totd_faith import __version__
from totd_faith.cli.addr import addr
from totd_faith.cli.check_cmd import check
from totd_faith.cli.common import Group
from totd_faith.cli.config_cmd import config
from totd_faith.cli.dns_cmd import dns
from totd_faith.cli.relay_cmd import relay
from totd_faith.cli.serve_cmd import serve
from totd_faith.cli.setup_cmd import setup
from totd_faith.cli.zone import zone


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="totd-faith")
def cli() -> None:
    """DNS64 proxy and faithd-style relay: IPv6-only clients reach IPv4 hosts by name.

    The DNS side answers AAAA queries for IPv4-only names with addresses inside
    a translation prefix (RFC 6052/6147); the relay accepts IPv6 connections to
    those addresses and carries them to the embedded IPv4 address.
    """


for command in (serve, dns, relay, addr, zone, config, setup, check):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="totd-faith")
