"""``totd-faith zone export``: static hosts files -> zones for IPv6-only clients."""

from __future__ import annotations

import datetime
import os
import tempfile

import click
import dns.name

from totd_faith.cli.common import Group
from totd_faith.errors import OperatorError
from totd_faith.hosts import parse_name, read_hosts_files
from totd_faith.prefix import Nat64Prefix
from totd_faith.zones import (
    DEFAULT_NS,
    DEFAULT_SERIAL,
    DEFAULT_TTL,
    MAX_TTL,
    ZoneSettings,
    export,
    place_name,
)


@click.group(cls=Group)
def zone() -> None:
    """Export static hosts as DNS data for IPv6-only clients."""


@zone.command("export", short_help="Static hosts -> AAAA/PTR zones, hosts or Unbound lines.")
@click.option(
    "-p",
    "--prefix",
    required=True,
    help="Translation prefix the relay or NAT64 serves, e.g. 2001:db8:5999::/96.",
)
@click.option(
    "--origin",
    required=True,
    help="Zone the names belong to, e.g. example.org; single-label names go under it.",
)
@click.option(
    "--reverse",
    is_flag=True,
    help="Write the ip6.arpa zone of the prefix (PTR records) instead (bind format only).",
)
@click.option(
    "-f",
    "--format",
    "form",
    type=click.Choice(["bind", "hosts", "unbound"]),
    default="bind",
    show_default=True,
    help="bind: master file; hosts: IPv6 hosts lines; unbound: local-data lines.",
)
@click.option(
    "--serial",
    default=str(DEFAULT_SERIAL),
    show_default=True,
    metavar="N|today",
    help="SOA serial; 'today' is YYYYMMDD00 of the current UTC date.",
)
@click.option(
    "--ttl",
    type=click.IntRange(0, MAX_TTL),
    default=DEFAULT_TTL,
    show_default=True,
    help="TTL of every record, in seconds.",
)
@click.option(
    "--ns",
    default=DEFAULT_NS.to_text(),
    show_default=True,
    help="Name server for the NS and SOA records; a single label without a trailing "
    "dot goes under the origin.",
)
@click.option(
    "--skip-foreign",
    is_flag=True,
    help="Leave out names outside the origin instead of failing.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=False),
    default=None,
    help="Write to FILE atomically (nothing is written on error); default or '-': stdout.",
)
@click.argument("hosts", nargs=-1, required=True)
def export_command(
    prefix: str,
    origin: str,
    reverse: bool,
    form: str,
    serial: str,
    ttl: int,
    ns: str,
    skip_foreign: bool,
    output: str | None,
    hosts: tuple[str, ...],
) -> None:
    """Export the IPv4 hosts in HOSTS files (/etc/hosts format, '-' is stdin).

    Every name gets an AAAA record with its IPv4 address embedded in PREFIX
    (RFC 6052), the address that faithd-style relays and NAT64 translate.
    A single-label name (cvsup) goes under --origin; dotted names must be
    under it already (or use --skip-foreign). The first name of a line is the
    canonical name that PTR records point at. Output is sorted, so it can be
    kept in version control. Warnings go to stderr.

    \b
    Example (cvsupd on 192.168.1.2, reached through 2001:db8:5999::/96):
      totd-faith zone export -p 2001:db8:5999::/96 --origin example.org \\
          -o example.org.zone zones/hosts.example
      totd-faith zone export -p 2001:db8:5999::/96 --origin example.org \\
          --reverse -o example.org.rev.zone zones/hosts.example
      named-checkzone example.org example.org.zone

    RFC 1918 addresses such as 192.168.1.2 need a Network-Specific Prefix:
    the well-known 64:ff9b::/96 must not carry them (RFC 6052 section 3.1).
    """
    if output == "-":
        output = None
    if output is not None:
        _refuse_to_overwrite_input(output, hosts)
    nat64 = Nat64Prefix.parse(prefix)
    origin_name = _parse_origin(origin)
    settings = ZoneSettings(
        serial=_parse_serial(serial),
        ttl=ttl,
        ns=_parse_ns(ns, origin_name),
    )
    entries, warnings = read_hosts_files(hosts)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    text, warnings = export(
        entries,
        nat64,
        origin_name,
        form=form,
        reverse=reverse,
        settings=settings,
        skip_foreign=skip_foreign,
    )
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomically(output, text)


def _refuse_to_overwrite_input(output: str, hosts: tuple[str, ...]) -> None:
    for path in hosts:
        if path == "-":
            continue
        try:
            same = os.path.samefile(output, path)
        except OSError:
            continue  # one of them does not exist (yet); reading reports a missing input
        if same:
            raise OperatorError(
                f"{output}: refusing to overwrite the hosts file being read; give -o another file"
            )


def _parse_origin(text: str) -> dns.name.Name:
    try:
        return parse_name(text)
    except ValueError as exc:
        raise OperatorError(f"--origin: {exc}") from None


def _parse_ns(text: str, origin: dns.name.Name) -> dns.name.Name:
    try:
        name = parse_name(text)
    except ValueError as exc:
        raise OperatorError(f"--ns: {exc}") from None
    # As in a zone file, a trailing dot makes the name absolute (localhost.);
    # otherwise the hosts-file rule applies: a single label goes under the origin.
    return name.canonicalize() if text.endswith(".") else place_name(name, origin)


def _parse_serial(text: str) -> int:
    if text == "today":
        # Time is read here, in the shell; the zone builder only takes numbers.
        today = datetime.datetime.now(datetime.UTC).date()
        return int(today.strftime("%Y%m%d")) * 100
    try:
        return int(text)
    except ValueError:
        raise OperatorError(
            f"--serial: {text!r} is not a number (give N or 'today' for YYYYMMDD00)"
        ) from None


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old or the new file.

    The temporary file lives in the same directory, so :func:`os.replace` is
    a rename within one file system; on any error it is removed again.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise OperatorError(f"{path}: cannot write here: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file 0600; a name server running as another user
        # must read it, so keep the old file's mode or use the usual default.
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except OSError as exc:
        _remove(temporary)
        raise OperatorError(f"{path}: cannot write: {exc.strerror}") from None
    except BaseException:
        _remove(temporary)
        raise


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
