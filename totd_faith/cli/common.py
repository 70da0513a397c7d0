"""Shared CLI plumbing: error handling, the --config option, flag overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from totd_faith.config import Config, load_file
from totd_faith.errors import ConfigError, TotdFaithError

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A one-line error for the user, exit status 1, never a traceback."""

    def format_message(self) -> str:
        return self.message


class Command(click.Command):
    """A command whose TotdFaithError becomes ``Error: <message>`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TotdFaithError as exc:
            raise UserError(str(exc)) from None


class Group(click.Group):
    """A group whose subcommands all handle TotdFaithError like :class:`Command`."""

    command_class = Command
    group_class = type  # subgroups are of this same class

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TotdFaithError as exc:
            raise UserError(str(exc)) from None


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML configuration file (see conf/totd-faith.toml). Flags override it.",
)


#: The flag that sets each config key (both long names where there are two, as click's
#: own messages write them), so that errors about a flag's value name the flag.
FLAG_OF_KEY = {
    "prefixes": "--prefix",
    "dns.listen": "--listen",
    "dns.upstreams": "--upstream",
    "relay.ports": "--relay-port/--port",
    "relay.all_ports": "--all-ports",
    "relay.maps": "--map",
    "relay.manage_routes": "--manage-routes",
    "service.workers": "--workers",
    "log.format": "--log-format",
}


def _flag_for(path: str, given: Mapping[str, object]) -> str | None:
    """The flag whose value the key path ``path`` (``dns.listen[0]``) came from, if any."""
    for key in given:
        if path == key or path.startswith((f"{key}[", f"{key}.")):
            return FLAG_OF_KEY.get(key)
    return None


def load_config(config_path: str | None, overrides: Mapping[str, object]) -> Config:
    """Defaults < file < flags; ``overrides`` holds only flags the user passed.

    An error in a value that came from a flag names the flag the user typed and
    the key it sets: ``--listen (dns.listen[0]): 'nonsense' is not an address``.
    """
    given = {key: value for key, value in overrides.items() if value not in (None, (), [])}
    try:
        return load_file(config_path, given)
    except ConfigError as exc:
        flag = _flag_for(exc.path, given)
        if flag is None:
            raise
        raise ConfigError(f"{flag} ({exc.path})", exc.problem) from None


def override_flags(*, dns: bool = True, relay: bool = True) -> Callable[[F], F]:
    """The common-setting flags; each lands in ``overrides`` only when given.

    A flag the user did not pass never overrides the file (DESIGN.md practice 3),
    so every flag defaults to None or an empty tuple.
    """

    def decorate(func: F) -> F:
        options = [
            click.option(
                "-p",
                "--prefix",
                "prefixes",
                multiple=True,
                help="Translation prefix, repeatable (default 64:ff9b::/96).",
            ),
        ]
        if dns:
            options += [
                click.option(
                    "-l",
                    "--listen",
                    multiple=True,
                    help="DNS listen address, repeatable, e.g. 127.0.0.1:5353 or '[::1]:53'.",
                ),
                click.option(
                    "-u",
                    "--upstream",
                    "upstreams",
                    multiple=True,
                    help="Upstream DNS server, repeatable (default: /etc/resolv.conf).",
                ),
            ]
        if relay:
            options += [
                click.option(
                    "--relay-port",
                    "--port",
                    "relay_ports",
                    multiple=True,
                    type=int,
                    help="Relay TCP and UDP on this port of every prefix address, repeatable.",
                ),
                click.option(
                    "--all-ports",
                    is_flag=True,
                    default=None,
                    help="Relay every port of the prefixes (nftables tproxy, root).",
                ),
                click.option(
                    "--map",
                    "maps",
                    multiple=True,
                    help="Port map LISTEN=TARGET, e.g. '[::]:8080=192.0.2.10:80', repeatable.",
                ),
            ]
        if relay:
            options.append(
                click.option(
                    "--manage-routes",
                    is_flag=True,
                    default=None,
                    help="Add the AnyIP route for each prefix at start and remove it at stop "
                    "(root).",
                )
            )
        options += [
            click.option(
                "-w",
                "--workers",
                type=click.IntRange(1, 256),
                default=None,
                help="Processes sharing the listening sockets (SO_REUSEPORT), e.g. one per core.",
            ),
            click.option(
                "--log-format",
                type=click.Choice(["text", "json"]),
                default=None,
                help="text (journald-friendly, the default) or json (for log shippers).",
            ),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def overrides_from(params: Mapping[str, Any]) -> dict[str, object]:
    """Map the flags of :func:`override_flags` to config key paths."""
    mapping = {
        "prefixes": "prefixes",
        "listen": "dns.listen",
        "upstreams": "dns.upstreams",
        "relay_ports": "relay.ports",
        "all_ports": "relay.all_ports",
        "maps": "relay.maps",
        "manage_routes": "relay.manage_routes",
        "workers": "service.workers",
        "log_format": "log.format",
    }
    out: dict[str, object] = {}
    for param, key in mapping.items():
        value = params.get(param)
        if value is None or value == ():
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
