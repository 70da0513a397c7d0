"""``totd-faith config``: validate, show and import configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from totd_faith import legacy
from totd_faith.cli.common import (
    Group,
    UserError,
    config_option,
    load_config,
    override_flags,
    overrides_from,
)
from totd_faith.config import load_file, to_toml
from totd_faith.errors import AddressError, PrefixError
from totd_faith.prefix import Nat64Prefix
from totd_faith.tcping import parse_service


@click.group(cls=Group)
def config() -> None:
    """Validate, show and import configuration files."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate FILE; print 'ok' or the key and the problem."""
    load_file(file)
    click.echo(f"{file}: ok")


@config.command()
@config_option
@override_flags()
@click.option("--annotated", is_flag=True, help="Explain every key in comments.")
def show(config_path: str | None, annotated: bool, **flags: Any) -> None:
    """Print the effective configuration (defaults < FILE < flags) as TOML."""
    click.echo(
        to_toml(load_config(config_path, overrides_from(flags)), annotated=annotated), nl=False
    )


# -- migration from totd and faithd ----------------------------------------------


def _read_legacy(path: str) -> str:
    """The old file's text; a one-line error when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    # Old files may carry Latin-1 comments; only the directives must be ASCII.
    return data.decode("utf-8", errors="replace")


def _relay_port(value: str) -> int:
    """A port number or a service name from /etc/services, as faithd took."""
    try:
        return parse_service(value)
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="--port") from None


def _check_prefixes(prefixes: tuple[str, ...]) -> list[str]:
    out = []
    for text in prefixes:
        try:
            out.append(str(Nat64Prefix.parse(text)))
        except PrefixError as exc:
            raise click.BadParameter(str(exc), param_hint="--prefix") from None
    return out


def _emit(migration: legacy.Migration) -> None:
    """Warnings to stderr, then the TOML to stdout; errors to stderr and exit 1."""
    try:
        config = legacy.build(migration)
    except legacy.MigrationError as exc:
        for notice in exc.notices:
            click.echo(str(notice), err=True)
        raise UserError(str(exc)) from None
    for notice in migration.sorted_notices():
        click.echo(str(notice), err=True)
    click.echo(legacy.render(migration, config), nl=False)


port_option = click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="PORT",
    help="A port faithd relayed ('faithd PORT'), number or service name; repeatable.",
)


@config.command("import-totd")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--faithd",
    "faithd_file",
    type=click.Path(dir_okay=False),
    help="Also import this faithd.conf (relay rules), as the classic pairing ran both.",
)
@port_option
def import_totd(file: str, faithd_file: str | None, ports: tuple[str, ...]) -> None:
    """Print a TOML configuration equivalent to the totd.conf FILE.

    Settings totd-faith does not have (stf, scoped, interfaces) are reported
    as warnings on stderr, each naming its line; the TOML goes to stdout.

    \b
    Example: totd-faith config import-totd /usr/local/etc/totd.conf > totd-faith.toml
    """
    migration = legacy.parse_totd(_read_legacy(file), file)
    if faithd_file is not None:
        faithd = legacy.parse_faithd(
            _read_legacy(faithd_file),
            faithd_file,
            ports=[_relay_port(p) for p in ports],
            prefix_known=True,
        )
        migration = legacy.merge(migration, faithd)
    elif ports:
        raise click.UsageError("--port needs --faithd (the ports are faithd's services)")
    _emit(migration)


@config.command("import-faithd")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--prefix",
    "prefixes",
    multiple=True,
    help="The prefix routed to faith0 (e.g. 2001:db8:5999::/96); repeatable.",
)
@port_option
def import_faithd(file: str, prefixes: tuple[str, ...], ports: tuple[str, ...]) -> None:
    """Print a TOML configuration equivalent to the faithd.conf FILE.

    Rules 'SRC/LEN permit|deny DST/LEN' become relay.rules in order (first
    match wins); faithd.conf names neither the prefix nor the ports, so give
    them with --prefix and --port.

    \b
    Example: totd-faith config import-faithd --prefix 2001:db8:5999::/96 --port 5999 faithd.conf
    """
    migration = legacy.parse_faithd(
        _read_legacy(file),
        file,
        prefixes=_check_prefixes(prefixes),
        ports=[_relay_port(p) for p in ports],
    )
    _emit(migration)
