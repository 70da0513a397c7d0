"""What the relay host needs from the kernel, as data: the steps, no I/O.

Each :class:`Step` is one idempotent change with the argv that applies it, the
argv that undoes it and the argv whose exit status 0 means "already applied".
:mod:`totd_faith.hostexec` runs them; ``totd-faith setup`` prints them; the
relay applies them at start (``--manage-routes``, ``--all-ports``) and undoes
exactly what it applied at stop.

Linux equivalents of the classic FreeBSD set-up:

* ``route add -inet6 PREFIX -prefixlen 96 ::1; route change ... -ifp faith0``
  becomes an *AnyIP* route, ``ip -6 route add local PREFIX dev lo``: the kernel
  puts it in the ``local`` table and delivers every address of the prefix
  locally, so a socket bound to ``[::]:N`` accepts them all (prefix mode).
* all-ports mode: an nftables ``tproxy`` rule steers every TCP and UDP packet
  for the prefix to one transparent socket, and the fwmark it sets selects a
  routing table whose ``local ::/0`` route delivers it locally (the kernel's
  Documentation/networking/tproxy.rst recipe).

Sysctls: none is needed, which was checked in network namespaces by the e2e
tests.  Local delivery (AnyIP or tproxy) does not forward, so
``net.ipv6.conf.all.forwarding`` may stay 0; replies leave from the dialled
address because the relay's sockets set IPV6_FREEBIND or IPV6_TRANSPARENT,
which the kernel accepts in place of ``net.ipv6.ip_nonlocal_bind``; IPv6 has no
``rp_filter``.  :func:`sysctl_steps` therefore returns no steps and says why.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from totd_faith.prefix import Nat64Prefix

#: nftables table the relay owns in all-ports mode (one table: easy to see, easy to remove).
NFT_FAMILY = "inet"
NFT_TABLE = "totd_faith"
#: Packet mark and routing table of the all-ports policy route.  0x7466 is "tf".
DEFAULT_MARK = 0x7466
DEFAULT_TABLE = 29798  # 0x7466: the same number, easy to recognise in `ip -6 rule`
#: Priority of the fwmark rule: before the main table (32766), after local (0).
RULE_PRIORITY = 29798


@dataclass(frozen=True)
class Step:
    """One change to the host: apply it, undo it, and tell whether it is applied."""

    description: str
    apply: tuple[str, ...]
    undo: tuple[str, ...] | None
    #: argv whose exit status 0 means "already applied"; None: always apply.
    check: tuple[str, ...] | None
    #: text fed to ``apply``'s standard input (an nft script), if any.
    stdin: str | None = None


def _shell_check(command: str, match: str | None = None) -> tuple[str, ...]:
    """A check that passes when ``command`` prints something (or a line with ``match``).

    ``ip ... show`` exits 0 even when it lists nothing, and ``nft list`` of a
    missing table complains on stderr; grep turns the listing into an exit
    status and the complaint is not news.
    """
    test = "grep -q ." if match is None else f"grep -qF {shlex.quote(match)}"
    return ("sh", "-c", f"{command} 2>/dev/null | {test}")


def anyip_steps(prefixes: Iterable[Nat64Prefix]) -> list[Step]:
    """The AnyIP local route for each prefix (``ip -6 route add local PREFIX dev lo``).

    ``ip`` puts a ``local`` route in the ``local`` table by itself; the check
    names that table so a same-prefix route elsewhere does not count.
    """
    steps = []
    for prefix in prefixes:
        net = str(prefix.network)
        steps.append(
            Step(
                description=f"deliver every address of {net} locally (AnyIP route)",
                apply=("ip", "-6", "route", "add", "local", net, "dev", "lo"),
                undo=("ip", "-6", "route", "del", "local", net, "dev", "lo"),
                check=_shell_check(
                    f"ip -6 route show table local type local exact {shlex.quote(net)} dev lo"
                ),
            )
        )
    return steps


def sysctl_steps(*, all_ports: bool = False) -> list[Step]:
    """Sysctls the relay needs: none (see the module docstring for the reasons)."""
    del all_ports  # neither mode needs one; kept so callers state their mode
    return []


def nft_tag(prefixes: Sequence[Nat64Prefix], port: int, mark: int) -> str:
    """The rule comment that says which prefixes, port and mark a table was made for.

    nft prints rules back in its own normal form (sets sorted, marks padded),
    so "already applied" compares this comment rather than the rule text: a
    table left by a run with other settings is then replaced, not kept.
    """
    nets = " ".join(str(p.network) for p in prefixes)
    return f"totd-faith {nets} port {port} mark {mark:#x}"


def nft_script(prefixes: Sequence[Nat64Prefix], port: int, mark: int) -> str:
    """The nft table that steers every TCP/UDP packet for ``prefixes`` to ``port``.

    ``table X; delete table X; table X {...}`` replaces an old copy atomically
    (nft applies a file as one transaction).  The prerouting hook at priority
    mangle (-150) runs before routing, which the mark must influence.
    """
    if not prefixes:
        raise ValueError("nft_script needs at least one prefix")
    nets = ", ".join(str(p.network) for p in prefixes)
    return (
        f"table {NFT_FAMILY} {NFT_TABLE}\n"
        f"delete table {NFT_FAMILY} {NFT_TABLE}\n"
        f"table {NFT_FAMILY} {NFT_TABLE} {{\n"
        "\tchain prerouting {\n"
        "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
        f"\t\tip6 daddr {{ {nets} }} meta l4proto {{ tcp, udp }} "
        f"tproxy ip6 to :{port} meta mark set {mark:#x} accept "
        f'comment "{nft_tag(prefixes, port, mark)}"\n'
        "\t}\n"
        "}\n"
    )


def tproxy_steps(
    prefixes: Sequence[Nat64Prefix],
    port: int,
    mark: int = DEFAULT_MARK,
    table: int = DEFAULT_TABLE,
) -> list[Step]:
    """nft tproxy table, fwmark rule and the table's ``local ::/0`` route, in apply order."""
    mark_text = f"{mark:#x}"
    selector = ("fwmark", mark_text, "lookup", str(table), "priority", str(RULE_PRIORITY))
    return [
        Step(
            description=(
                f"steer TCP and UDP for {', '.join(str(p) for p in prefixes)} "
                f"to the relay's transparent port {port} (nft table {NFT_FAMILY} {NFT_TABLE})"
            ),
            apply=("nft", "-f", "-"),
            undo=("nft", "delete", "table", NFT_FAMILY, NFT_TABLE),
            check=_shell_check(
                f"nft list table {NFT_FAMILY} {NFT_TABLE}",
                f'comment "{nft_tag(prefixes, port, mark)}"',
            ),
            stdin=nft_script(prefixes, port, mark),
        ),
        Step(
            description=f"route packets marked {mark_text} by routing table {table}",
            apply=("ip", "-6", "rule", "add", *selector),
            undo=("ip", "-6", "rule", "del", *selector),
            check=_shell_check(
                f"ip -6 rule show fwmark {mark_text} lookup {table} priority {RULE_PRIORITY}"
            ),
        ),
        Step(
            description=f"deliver everything routed by table {table} locally",
            apply=("ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", str(table)),
            undo=("ip", "-6", "route", "del", "local", "::/0", "dev", "lo", "table", str(table)),
            check=_shell_check(f"ip -6 route show table {table} type local exact ::/0 dev lo"),
        ),
    ]


def host_steps(
    prefixes: Sequence[Nat64Prefix],
    *,
    all_ports: bool = False,
    tproxy_port: int = 0,
    mark: int = DEFAULT_MARK,
    table: int = DEFAULT_TABLE,
) -> list[Step]:
    """Everything ``setup`` applies: AnyIP routes, sysctls, and in all-ports mode tproxy."""
    steps = sysctl_steps(all_ports=all_ports) + anyip_steps(prefixes)
    if all_ports:
        steps += tproxy_steps(prefixes, tproxy_port, mark, table)
    return steps


def parse_link_local(ip_output: str) -> list[tuple[str, str]]:
    """(interface, fe80:: address) pairs from ``ip -6 -o addr show scope link`` output.

    Loopback never has one; the router needs the address on the link it shares with us.
    """
    found: list[tuple[str, str]] = []
    for line in ip_output.splitlines():
        words = line.split()
        if len(words) < 4 or words[2] != "inet6":
            continue
        interface = words[1].partition("@")[0]
        address = words[3].partition("/")[0]
        if address.lower().startswith("fe80:"):
            found.append((interface, address))
    return found


def router_command(prefix: Nat64Prefix, link_local: str, interface: str) -> str:
    """What the upstream IPv6 router needs: a route for the prefix via this host.

    ``link_local`` is this relay host's fe80:: address on the link to the
    router; ``interface`` is the router's interface on that link.
    """
    return f"ip -6 route add {prefix.network} via {link_local} dev {interface}"
