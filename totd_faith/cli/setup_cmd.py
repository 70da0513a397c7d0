"""``totd-faith setup``: print, apply or undo what the host needs, like the classic rc script.

The steps themselves (AnyIP route, nft tproxy table, fwmark rule) are data in
:mod:`totd_faith.hostsetup`; :mod:`totd_faith.hostexec` runs them.  This module
only chooses the steps from the configuration, prints them as a shell script,
finds this host's link-local address for the upstream router's route, and
reports what ``--apply``/``--undo`` did.

``--undo`` removes every step of the same arguments whose check says it is
present, in reverse order.  The steps are specific (one route per prefix in
the ``local`` table, the ``inet totd_faith`` nft table carrying a comment that
names its prefixes and port, the fwmark 0x7466 rule and table 29798), so that is
exactly what ``--apply`` with those arguments adds.  The one thing it cannot
tell apart: an AnyIP route for the same prefix that an operator added by hand
before ``--apply`` (which then reported it 'already in place') is removed too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from totd_faith import hostexec, hostsetup
from totd_faith.cli.common import Command, UserError, config_option, load_config
from totd_faith.config import Config
from totd_faith.prefix import Nat64Prefix

#: Placeholders printed in the router's command when the values are unknown.
LINK_LOCAL_PLACEHOLDER = "HOST-LINK-LOCAL"
ROUTER_IFACE_PLACEHOLDER = "ROUTER-IFACE"

#: Bit of CAP_NET_ADMIN in the capability masks of /proc/self/status (linux/capability.h).
_CAP_NET_ADMIN = 12

# Interface names as `ip` prints them; also keeps the printed router command shell-safe.
_IFACE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_INET6 = re.compile(r"\binet6\s+([0-9A-Fa-f:]+)/\d+")

_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")

_EPILOG = """\b
Examples:
    # print the script (no root needed), then apply it
    totd-faith setup --prefix 2001:db8:64::/96 --uplink eth0 --router-interface eth1
    sudo totd-faith setup --prefix 2001:db8:64::/96 --apply
\b
    # all-ports mode adds the nft tproxy table and the fwmark routing rule
    sudo totd-faith setup --prefix 2001:db8:64::/96 --all-ports --apply
    sudo totd-faith setup --prefix 2001:db8:64::/96 --all-ports --undo

\b
--apply skips steps already in place; --undo, given the same prefixes and
--all-ports, removes those steps again (an AnyIP route for the same prefix
that was added by hand is removed too).  Prefixes default to the
configuration's `prefixes`; the tproxy port is relay.tproxy_port.
"""


# -- choosing the steps ----------------------------------------------------------------------


def host_steps(config: Config, *, all_ports: bool) -> list[hostsetup.Step]:
    """What the host needs for ``config``, in apply order.

    The AnyIP route is there in both modes: prefix-mode listeners need it, and
    in all-ports mode it still makes the host the destination of the prefix for
    what tproxy does not steer (ICMPv6, so clients can ping relayed addresses).
    """
    return hostsetup.host_steps(
        config.prefixes, all_ports=all_ports, tproxy_port=config.relay.tproxy_port
    )


# -- the upstream router's route -----------------------------------------------------------


def parse_link_local(text: str) -> str:
    """``fe80::1`` (a ``%scope`` suffix is dropped: it means nothing to the router)."""
    try:
        address = ipaddress.IPv6Address(text.strip().partition("%")[0])
    except ValueError:
        raise UserError(f"--link-local: {text!r} is not an IPv6 address") from None
    if address not in _LINK_LOCAL:
        raise UserError(
            f"--link-local: {address} is not a link-local address (fe80::/10); give this host's "
            "fe80:: address on the link to the router"
        )
    return str(address)


def check_interface(option: str, name: str) -> str:
    if not _IFACE.fullmatch(name):
        raise UserError(f"{option}: {name!r} is not an interface name")
    return name


def uplink_link_local(interface: str, runner: hostexec.Runner = hostexec.run_command) -> str:
    """This host's link-local address on ``interface``, from ``ip -6 -o addr``."""
    argv = ("ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "link")
    status, output = runner(argv, None)
    if status != 0:
        raise UserError(f"--uplink {interface}: `{shlex.join(argv)}` failed: {output}")
    found = _INET6.findall(output)
    if not found:
        raise UserError(
            f"--uplink {interface}: the interface has no link-local IPv6 address (is it up, "
            "with IPv6 enabled?); give it with --link-local ADDR instead"
        )
    # Several only with hand-added ones; the first is the kernel's (or the oldest).
    return parse_link_local(found[0])


def router_section(
    prefixes: Sequence[Nat64Prefix],
    link_local: str | None,
    uplink: str | None,
    router_interface: str | None,
) -> str:
    """Comment lines telling the operator what to run on the upstream IPv6 router."""
    commands = [
        hostsetup.router_command(
            prefix,
            link_local or LINK_LOCAL_PLACEHOLDER,
            router_interface or ROUTER_IFACE_PLACEHOLDER,
        )
        for prefix in prefixes
    ]
    what = "prefix" if len(prefixes) == 1 else "prefixes"
    lines = [f"# On the upstream IPv6 router: route the {what} to this host."]
    if link_local is not None:
        where = f" on {uplink}" if uplink else ""
        lines.append(f"# {link_local} is this host's link-local address{where}.")
    else:
        lines += [
            f"# Replace {LINK_LOCAL_PLACEHOLDER} with this host's link-local address on the link",
            "# to the router (`ip -6 addr show dev IFACE scope link`), or run setup again",
            "# with --uplink IFACE or --link-local ADDR.",
        ]
    if router_interface is None:
        lines += [
            f"# Replace {ROUTER_IFACE_PLACEHOLDER} with the router's interface on that link",
            "# (or run setup again with --router-interface IFACE).",
        ]
    lines += [f"#   {command}" for command in commands]
    return "\n".join(lines) + "\n"


# -- printing --------------------------------------------------------------------------------


def setup_command_line(
    config_path: str | None, flag_prefixes: Sequence[str], all_ports: bool, action: str
) -> str:
    """The ``totd-faith setup`` command that applies or undoes the same steps."""
    argv = ["totd-faith", "setup"]
    if config_path is not None:
        argv += ["-c", config_path]
    for prefix in flag_prefixes:
        argv += ["--prefix", prefix]
    if all_ports:
        argv.append("--all-ports")
    argv.append(action)
    return shlex.join(argv)


def script_text(
    config: Config, steps: Sequence[hostsetup.Step], *, all_ports: bool, again: tuple[str, str]
) -> str:
    """The shell script: a header saying what it is for, then hostexec's rendering."""
    mode = "all-ports mode" if all_ports else "prefix mode"
    header = [
        f"# totd-faith host set-up for {', '.join(map(str, config.prefixes))} ({mode}).",
        "# Run it as root; a step already in place is skipped. The same, from totd-faith:",
        f"#   {again[0]}",
        "# and to remove it again:",
        f"#   {again[1]}",
    ]
    if not hostsetup.sysctl_steps(all_ports=all_ports):
        header += [
            "# No sysctl is needed: the prefix is delivered locally (nothing is forwarded)",
            "# and the relay's sockets reply from the dialled address by themselves.",
        ]
    body = hostexec.render(steps)
    shebang = "#!/bin/sh\n"
    if body.startswith(shebang):
        return shebang + "\n".join(header) + "\n" + body[len(shebang) :]
    return "\n".join(header) + "\n" + body


# -- applying and undoing --------------------------------------------------------------------


def net_admin_from_status(status: str, euid: int) -> bool:
    """Whether the commands we run (ip, nft) will have CAP_NET_ADMIN, from /proc/PID/status.

    Root's children get its capabilities, so for root it is the effective set
    (root in a container may lack it).  For anyone else it must be in the
    *ambient* set (systemd's AmbientCapabilities=), the only set an unprivileged
    process's children inherit.
    """
    key = "CapEff:" if euid == 0 else "CapAmb:"
    for line in status.splitlines():
        if line.startswith(key):
            return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    return euid == 0  # no capability lines (not Linux?): trust root


def has_net_admin(status_path: Path = Path("/proc/self/status")) -> bool:
    try:
        status = status_path.read_text(encoding="ascii")
    except OSError:
        status = ""
    return net_admin_from_status(status, os.geteuid())


def apply_steps(
    steps: Sequence[hostsetup.Step], runner: hostexec.Runner = hostexec.run_command
) -> list[str]:
    """Apply what is missing; one report line per step, in order."""
    applied = hostexec.apply(steps, runner)
    return [
        f"{'applied' if step in applied else 'already in place'}: {step.description}"
        for step in steps
    ]


def undo_steps(
    steps: Sequence[hostsetup.Step], runner: hostexec.Runner = hostexec.run_command
) -> tuple[list[str], list[hostsetup.Step]]:
    """Remove what is present, in reverse order; report lines and the steps still present."""
    removed = hostexec.undo(steps, runner)
    lines: list[str] = []
    left: list[hostsetup.Step] = []
    for step in reversed(steps):
        if step in removed:
            lines.append(f"removed: {step.description}")
        elif step.undo is not None and hostexec.is_applied(step, runner):
            lines.append(f"could not remove: {step.description}")
            left.append(step)
        else:
            lines.append(f"not present: {step.description}")
    return lines, left


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collected_errors() -> Iterator[list[str]]:
    """hostexec logs a failed undo and goes on; collect those messages for the one-line error
    instead of letting Python's last-resort handler print them as extra lines."""
    logger = logging.getLogger(hostexec.log.name)
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


# -- the command -----------------------------------------------------------------------------


@click.command(cls=Command, epilog=_EPILOG)
@config_option
@click.option(
    "-p",
    "--prefix",
    "prefixes",
    multiple=True,
    help="Translation prefix, repeatable (default: the configuration's prefixes).",
)
@click.option("--apply", "apply_", is_flag=True, help="Apply the steps not yet in place.")
@click.option("--undo", "undo_", is_flag=True, help="Remove the steps that are in place.")
@click.option(
    "--all-ports",
    is_flag=True,
    default=None,
    help="Also the nft tproxy table and fwmark rule of all-ports mode (relay.all_ports).",
)
@click.option(
    "--router-interface",
    metavar="IFACE",
    help="The upstream router's interface on the link to this host (for its route).",
)
@click.option(
    "--link-local",
    metavar="ADDR",
    help="This host's link-local address on the link to the router (for its route).",
)
@click.option(
    "--uplink",
    metavar="IFACE",
    help="This host's interface towards the router: its link-local address is looked up.",
)
def setup(
    config_path: str | None,
    prefixes: tuple[str, ...],
    apply_: bool,
    undo_: bool,
    all_ports: bool | None,
    router_interface: str | None,
    link_local: str | None,
    uplink: str | None,
) -> None:
    """Print, apply (--apply) or remove (--undo) the host set-up for the prefixes.

    The host needs an AnyIP route per prefix (the Linux faith0: every address
    of the prefix is delivered locally), and in all-ports mode an nft tproxy
    table plus a fwmark routing rule.  Without --apply or --undo the steps are
    printed as a shell script, followed by the route the upstream IPv6 router
    needs: the prefix via this host's link-local address.
    """
    if apply_ and undo_:
        raise click.UsageError("give either --apply or --undo, not both")
    action = "apply" if apply_ else "undo" if undo_ else None
    if link_local is not None and uplink is not None:
        raise click.UsageError("give either --link-local or --uplink, not both")
    overrides: dict[str, object] = {}
    if prefixes:
        overrides["prefixes"] = list(prefixes)
    if all_ports is not None:
        overrides["relay.all_ports"] = all_ports
    config = load_config(config_path, overrides)
    mode_all_ports = config.relay.all_ports
    steps = host_steps(config, all_ports=mode_all_ports)
    if router_interface is not None:
        check_interface("--router-interface", router_interface)
    host_address: str | None = None
    if link_local is not None:
        host_address = parse_link_local(link_local)
    elif uplink is not None:
        host_address = uplink_link_local(check_interface("--uplink", uplink))
    router = router_section(config.prefixes, host_address, uplink, router_interface)

    if action is None:
        again = (
            setup_command_line(config_path, prefixes, bool(all_ports), "--apply"),
            setup_command_line(config_path, prefixes, bool(all_ports), "--undo"),
        )
        click.echo(script_text(config, steps, all_ports=mode_all_ports, again=again), nl=False)
        click.echo()
        click.echo(router, nl=False)
        return

    if not has_net_admin():
        raise UserError(
            f"setup --{action} needs root or CAP_NET_ADMIN (it changes routes, rules and "
            "nftables); run it with sudo, or without --apply/--undo to print the commands"
        )
    if action == "apply":
        try:
            lines = apply_steps(steps)
        except hostexec.HostSetupError as exc:
            # Command output (nft's diagnostics) can span lines; the error stays one line.
            raise UserError(
                "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
                + " (the steps applied before it were undone)"
            ) from None
        for line in lines:
            click.echo(line)
        click.echo()
        click.echo(router, nl=False)
        return
    with _collected_errors() as errors:
        lines, left = undo_steps(steps)
    for line in lines:
        click.echo(line)
    if left:
        details = [" ".join(error.split()) for error in errors] or [s.description for s in left]
        raise UserError(f"{len(left)} step(s) could not be removed: " + "; ".join(details))
