"""Migration from the KAME-era tools: totd.conf and faithd.conf to the TOML model.

Pure text in, a validated :class:`~totd_faith.config.Config` and notices out;
no I/O (the CLI reads the files and prints).  What each old directive meant
was learnt from totd's and faithd's manual pages and parsers, and the notices
say where the new program deliberately behaves differently:

* totd put the IPv4 address in the last 32 bits of its prefix, which is the
  RFC 6052 /96 format whatever its manual says about "64 bit prefixes", so a
  totd ``prefix`` becomes a /96 (a /64 in RFC 6052 would skip the u-octet and
  synthesize different addresses than the faith route expects).
* totd listened on every interface and answered everyone; the import listens
  on loopback and keeps the local-networks client list.
* faithd denied what no rule matched, but relayed for everyone when its
  configuration had no rules at all; the first is written out as an explicit
  last rule, the second is *not* copied.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from totd_faith.config import Config, dump_section, from_table, to_toml
from totd_faith.endpoints import Endpoint
from totd_faith.errors import ConfigError, OperatorError, PrefixError
from totd_faith.policy import LOCAL_NETWORKS, Network, RelayRule
from totd_faith.prefix import Nat64Prefix

Severity = Literal["warning", "error"]

#: totd's default DNS port when totd.conf has no ``port`` line.
TOTD_DEFAULT_PORT = 53

#: The 6bone test range, returned in 2006 (RFC 3701): the faithd and totd
#: manual examples use it, so old configurations often still do.
SIXBONE = ipaddress.IPv6Network("3ffe::/16")

#: faithd denied connections that matched no rule (faithd(8), "Access
#: control"); totd-faith's relay permits them, so the import ends the list
#: with this rule.
FAITHD_DENY_REST = RelayRule(
    ipaddress.IPv6Network("::/0"), False, ipaddress.IPv4Network("0.0.0.0/0")
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One finding about one line of an old configuration file (line 0: the whole file)."""

    source: str
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.severity}: {self.message}"


class MigrationError(OperatorError):
    """The old file has problems the import cannot decide for the operator."""

    def __init__(self, notices: Sequence[Notice]) -> None:
        self.notices = tuple(notices)
        errors = [n for n in self.notices if n.severity == "error"]
        sources = sorted({n.source for n in errors})
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__(f"{', '.join(sources)}: {count}; no configuration printed")


@dataclass
class Migration:
    """The raw TOML table built from old files, with where each key came from."""

    tool: str
    sources: list[str]
    table: dict[str, Any] = field(default_factory=dict)
    #: key path ("dns.upstreams[1]", "prefixes") -> (file, line)
    origins: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: key path -> comment lines written above that key in the output
    comments: dict[str, list[str]] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)

    # -- recording ----------------------------------------------------------

    def warn(self, source: str, line: int, message: str) -> None:
        self.notices.append(Notice(source, line, "warning", message))

    def error(self, source: str, line: int, message: str) -> None:
        self.notices.append(Notice(source, line, "error", message))

    def _section(self, path: str) -> tuple[dict[str, Any], str]:
        *sections, key = path.split(".")
        table = self.table
        for section in sections:
            table = table.setdefault(section, {})
        return table, key

    def set(self, path: str, value: Any, source: str, line: int) -> None:
        table, key = self._section(path)
        table[key] = value
        self.origins[path] = (source, line)

    def append(self, path: str, value: Any, source: str, line: int) -> None:
        table, key = self._section(path)
        items = table.setdefault(key, [])
        self.origins[f"{path}[{len(items)}]"] = (source, line)
        self.origins.setdefault(path, (source, line))
        items.append(value)

    def comment(self, path: str, *lines: str) -> None:
        self.comments.setdefault(path, []).extend(lines)

    def sorted_notices(self) -> list[Notice]:
        """Notices in file order: by source file, then line (whole-file notes last)."""
        order = {source: i for i, source in enumerate(self.sources)}
        return sorted(
            self.notices,
            key=lambda n: (order.get(n.source, len(order)), n.line or 1 << 30),
        )

    @property
    def errors(self) -> list[Notice]:
        return [n for n in self.notices if n.severity == "error"]

    @property
    def warnings(self) -> list[Notice]:
        return [n for n in self.notices if n.severity == "warning"]


def _words(line: str, comment_chars: str) -> list[str]:
    for char in comment_chars:
        line = line.split(char, 1)[0]
    return line.split()


# -- totd.conf -------------------------------------------------------------------


def _totd_prefix(text: str) -> tuple[Nat64Prefix | None, list[str], str | None]:
    """(prefix, warnings, error) for a totd ``prefix`` value."""
    warnings: list[str] = []
    address_text, slash, length_text = text.partition("/")
    if slash and length_text != "96":
        return (
            None,
            [],
            f"{text}: totd took no prefix length and always put the IPv4 address in the "
            "last 32 bits, which is the RFC 6052 /96 format; write the prefix as "
            f"{address_text} or {address_text}/96 (an RFC 6052 /{length_text} would "
            "synthesize different addresses than the ones the faith route expects)",
        )
    try:
        address = ipaddress.IPv6Address(address_text)
    except ValueError:
        return None, [], f"{text!r} is not an IPv6 prefix (expected e.g. 2001:db8:64::)"
    value = int(address)
    if value & 0xFFFF_FFFF:
        warnings.append(
            f"{text}: totd replaced the last 32 bits with the IPv4 address, "
            f"so they are dropped here ({ipaddress.IPv6Address(value & ~0xFFFF_FFFF)}/96)"
        )
    network = ipaddress.IPv6Network((value & ~0xFFFF_FFFF, 96))
    try:
        prefix = Nat64Prefix(network)
    except PrefixError as exc:
        return (
            None,
            [],
            f"{exc}; totd did not check this, but RFC 6052 translators and this relay "
            "require it: pick a prefix whose bits 64-71 are zero and move the faith route to it",
        )
    if network.subnet_of(SIXBONE):
        warnings.append(
            f"{network} is in 3ffe::/16, the 6bone test range returned in 2006 (RFC 3701); "
            "it still works inside your network but use a prefix of your own "
            "(or the local-use 64:ff9b:1::/48, RFC 8215)"
        )
    return prefix, warnings, None


def _parse_port(text: str) -> int | None:
    if not text.isdigit():
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def parse_totd(text: str, source: str = "totd.conf") -> Migration:
    """Translate a totd.conf into a :class:`Migration` (``forwarder``, ``prefix``, ...)."""
    m = Migration("totd", [source])
    port, port_line = TOTD_DEFAULT_PORT, 0
    interfaces: list[str] = []
    interfaces_line = 0
    prefixes: list[Nat64Prefix] = []
    forwarders: list[Endpoint] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        # totd.conf comments start at '#' or ';'; words split on blanks;
        # keywords are case-insensitive.
        words = _words(raw, "#;")
        if not words:
            continue
        keyword, args = words[0].lower(), words[1:]
        if keyword == "forwarder":
            endpoint = _totd_forwarder(m, source, lineno, args)
            if endpoint is None:
                continue
            if endpoint in forwarders:
                m.warn(source, lineno, f"forwarder {endpoint} is listed twice; kept once")
                continue
            forwarders.append(endpoint)
            m.append("dns.upstreams", str(endpoint), source, lineno)
        elif keyword == "prefix":
            if len(args) != 1:
                m.error(
                    source, lineno, "expected 'prefix IPV6-PREFIX', e.g. 'prefix 2001:db8:64::'"
                )
                continue
            prefix, warnings, problem = _totd_prefix(args[0])
            for warning in warnings:
                m.warn(source, lineno, warning)
            if problem is not None or prefix is None:
                m.error(source, lineno, problem or "bad prefix")
                continue
            if prefix in prefixes:
                m.warn(source, lineno, f"prefix {prefix} is listed twice; kept once")
                continue
            prefixes.append(prefix)
            m.append("prefixes", str(prefix), source, lineno)
        elif keyword == "port":
            value = _parse_port(args[0]) if len(args) == 1 else None
            if value is None:
                m.error(source, lineno, "expected 'port N' with N from 1 to 65535")
                continue
            port, port_line = value, lineno
        elif keyword == "retry":
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
                m.error(source, lineno, "expected 'retry SECONDS' with at least 1 second")
                continue
            m.set("dns.upstream_retry", int(args[0]), source, lineno)
        elif keyword == "pidfile":
            if len(args) != 1:
                m.error(source, lineno, "expected 'pidfile FILE'")
                continue
            m.set("service.pidfile", args[0], source, lineno)
        elif keyword == "interfaces":
            if not args:
                m.error(source, lineno, "expected 'interfaces IFNAME ...'")
                continue
            interfaces, interfaces_line = args, lineno
        elif keyword == "stf":
            m.warn(
                source,
                lineno,
                "'stf' (6to4 reverse-lookup rewriting) is not carried over: 6to4 is "
                "deprecated (RFC 7526) and totd-faith does not rewrite 2002::/16 PTR queries",
            )
        elif keyword == "scoped":
            m.warn(
                source,
                lineno,
                "'scoped' (site-local address rewriting) is not carried over: site-local "
                "addresses are deprecated (RFC 3879) and totd-faith does not add them to answers",
            )
        elif keyword == "allow":
            m.warn(
                source,
                lineno,
                "'allow' opened totd's HTTP control interface to a host; totd-faith has none "
                "(edit the file and send SIGHUP instead); not carried over",
            )
        else:
            m.warn(
                source,
                lineno,
                f"unknown keyword {words[0]!r} (totd itself refused to start on it); ignored",
            )
    _totd_listen(m, source, port, port_line, interfaces, interfaces_line)
    if not forwarders:
        m.warn(
            source,
            0,
            "no forwarder: totd-faith forwards to the nameservers of /etc/resolv.conf "
            "when dns.upstreams is empty",
        )
    if not prefixes:
        m.warn(
            source,
            0,
            "no prefix: totd only forwarded queries without one, but totd-faith always "
            "synthesizes, into the well-known prefix 64:ff9b::/96 unless 'prefixes' is set",
        )
    elif len(prefixes) > 1:
        m.warn(
            source,
            0,
            "several prefixes: totd used them in turn (round robin) to spread load over "
            "translators; totd-faith synthesizes an address in every prefix, in this order",
        )
    return m


def _totd_forwarder(m: Migration, source: str, lineno: int, args: list[str]) -> Endpoint | None:
    usage = "expected 'forwarder ADDRESS [port N]'"
    if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "port"):
        m.error(source, lineno, usage)
        return None
    try:
        host = ipaddress.ip_address(args[0])
    except ValueError:
        m.error(source, lineno, f"{args[0]!r} is not an IP address; {usage}")
        return None
    port = 53
    if len(args) == 3:
        value = _parse_port(args[2])
        if value is None:
            m.error(source, lineno, f"{args[2]!r} is not a port number (1-65535)")
            return None
        port = value
    return Endpoint(host, port)


def _totd_listen(
    m: Migration,
    source: str,
    port: int,
    port_line: int,
    interfaces: list[str],
    interfaces_line: int,
) -> None:
    """totd listened on every interface (or the named ones); we listen on loopback."""
    listen = [str(Endpoint(ipaddress.ip_address(host), port)) for host in ("127.0.0.1", "::1")]
    for address in listen:
        m.append("dns.listen", address, source, port_line)
    named = [name for name in interfaces if name not in ("*", "all")]
    if named and "*" not in interfaces:
        names = " ".join(named)
        m.warn(
            source,
            interfaces_line,
            f"'interfaces {' '.join(interfaces)}': totd-faith listens on addresses, not "
            "interfaces, and the import does not look at this host; dns.listen stays on "
            f"loopback: add the addresses of {names} (see 'ip -brief address show dev "
            f"{named[0]}'), e.g. '[2001:db8::53]:{port}'",
        )
        m.comment(
            "dns.listen",
            f"totd listened on the interfaces {names}: add their addresses here,",
            f'e.g. "192.0.2.53:{port}" or "[2001:db8::53]:{port}".',
        )
        return
    m.warn(
        source,
        port_line,
        f"totd answered on port {port} of every interface and for every client; the import "
        f"answers on 127.0.0.1:{port} and [::1]:{port} only, for the local networks in "
        "dns.allow: add this host's addresses to dns.listen to serve other hosts",
    )
    m.comment(
        "dns.listen",
        f"totd answered on port {port} of every interface; add this host's",
        f'addresses to serve the network, e.g. "[2001:db8::53]:{port}".',
    )


# -- faithd.conf ---------------------------------------------------------------


def _faithd_network(text: str) -> tuple[Network | None, str | None]:
    """faithd's prefix syntax: an address with an optional /LEN; masked, not checked."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, None
    note = None
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        note = (
            f"{text} has bits set after the prefix length; faithd compared only the first "
            f"{network.prefixlen} bits, so the rule says {network}"
        )
    return network, note


def parse_faithd(
    text: str,
    source: str = "faithd.conf",
    *,
    prefixes: Iterable[str] = (),
    ports: Iterable[int] = (),
    prefix_known: bool = False,
) -> Migration:
    """Translate a faithd.conf into a :class:`Migration` (``relay.rules`` and friends).

    faithd.conf holds only access rules; the prefix (the faith0 route) and the
    relayed services (one ``faithd SERVICE`` per port) were given elsewhere, so
    they come in as ``prefixes`` and ``ports``.
    """
    m = Migration("faithd", [source])
    rules: list[RelayRule] = []
    lines = text.split("\n")
    for lineno, raw in enumerate(lines, 1):
        # faithd read lines with fgets and dropped any without a newline, so
        # an unterminated last line never took effect.
        unterminated = lineno == len(lines)
        words = _words(raw, "#")
        if not words:
            continue
        rule = _faithd_rule(m, source, lineno, words)
        if rule is None:
            continue
        if unterminated:
            m.warn(
                source,
                lineno,
                "this last line does not end with a newline, so faithd never read it; "
                "it is carried over anyway: check that you want it",
            )
        rules.append(rule)
        m.append("relay.rules", str(rule), source, lineno)
    if rules:
        _faithd_clients(m, source, rules)
    else:
        m.warn(
            source,
            0,
            "no rules: faithd relayed for every client to every IPv4 destination when it had "
            "no rules; the import does NOT copy that default: relay.clients stays the local "
            f"networks ({', '.join(LOCAL_NETWORKS)}) and the relay's built-in destination "
            "denials apply; add relay.rules or relay.clients to open it further",
        )
    for prefix in prefixes:
        m.append("prefixes", prefix, "command line", 0)
    if not prefixes and not prefix_known:
        m.warn(
            source,
            0,
            "faithd.conf does not name the translation prefix (it was the faith0 route): "
            "pass --prefix or set 'prefixes' (the default is 64:ff9b::/96)",
        )
    for port in ports:
        # faithd relayed TCP only.
        m.append(
            "relay.ports",
            {"port": port, "protocols": ["tcp"], "proxy_protocol": "none"},
            "command line",
            0,
        )
    if not ports:
        m.warn(
            source,
            0,
            "faithd.conf does not name the relayed services (one 'faithd SERVICE' process "
            "per port): pass --port for each or set relay.ports",
        )
    return m


def _faithd_rule(m: Migration, source: str, lineno: int, words: list[str]) -> RelayRule | None:
    syntax = "'SRC/LEN permit|deny DST/LEN [BINDADDR]'"
    if len(words) not in (3, 4):
        m.warn(source, lineno, f"faithd ignored this line (expected {syntax}); not carried over")
        return None
    client, client_note = _faithd_network(words[0])
    destination, dest_note = _faithd_network(words[2])
    if client is None or destination is None:
        bad = words[0] if client is None else words[2]
        m.warn(
            source,
            lineno,
            f"faithd ignored this line: {bad!r} is not an address or prefix; not carried over",
        )
        return None
    if len(words) == 4:
        try:
            ipaddress.ip_address(words[3])
        except ValueError:
            m.warn(
                source,
                lineno,
                f"faithd ignored this line: bind address {words[3]!r} is not an address; "
                "not carried over",
            )
            return None
    action = words[1].lower()
    permit = action == "permit"
    if action not in ("permit", "deny"):
        m.warn(
            source,
            lineno,
            f"{words[1]!r} is neither permit nor deny; faithd treated it as deny and so does "
            "the imported rule",
        )
    for note in (client_note, dest_note):
        if note:
            m.warn(source, lineno, note)
    if client.version != 6:
        # faithd compared the client (an IPv6 address) with SRC and the
        # translated destination (IPv4) with DST; other families never matched.
        m.warn(
            source,
            lineno,
            f"the client network {client} is IPv4 but faithd's clients are IPv6, so this rule "
            "never matched; not carried over",
        )
        return None
    if destination.version != 4:
        m.warn(
            source,
            lineno,
            f"the destination {destination} is IPv6 but faithd only relayed to IPv4 "
            "destinations, so this rule never matched; not carried over",
        )
        return None
    if len(words) == 4:
        m.warn(
            source,
            lineno,
            f"bind address {words[3]}: faithd connected to the IPv4 server from it; "
            "totd-faith has no such setting (the kernel picks the source address); "
            "the rule is carried over without it",
        )
    if client.subnet_of(SIXBONE):
        m.warn(
            source,
            lineno,
            f"{client} is in 3ffe::/16, the 6bone test range returned in 2006 (RFC 3701); "
            "no client has such an address today",
        )
    return RelayRule(client, permit, destination)


def _faithd_clients(m: Migration, source: str, rules: list[RelayRule]) -> None:
    """Open relay.clients to exactly the clients some rule permits, and deny the rest."""
    clients: list[Network] = []
    for rule in rules:
        if rule.permit and rule.client not in clients:
            clients.append(rule.client)
    for network in clients:
        m.append("relay.clients", str(network), source, 0)
    if any(network.prefixlen == 0 for network in clients):
        m.warn(
            source,
            0,
            "a rule permits every IPv6 client (::/0): anyone who can reach the relay may use "
            "it, as with faithd; narrow it to your own networks if you can",
        )
    if not clients:
        m.warn(source, 0, "no rule permits anything: the imported relay refuses every client")
    last = rules[-1]
    if not (last.client.prefixlen == 0 and last.destination.prefixlen == 0):
        m.append("relay.rules", str(FAITHD_DENY_REST), source, 0)
        m.comment(
            "relay.rules",
            "faithd denied connections that matched no rule; totd-faith permits them,",
            f"so the last rule '{FAITHD_DENY_REST}' keeps faithd's behaviour.",
        )
    if clients:
        m.comment(
            "relay.clients",
            "The client networks that a faithd rule permits (faithd had no separate list).",
        )


# -- combining and output ----------------------------------------------------------


def merge(first: Migration, second: Migration) -> Migration:
    """Both files' settings in one migration (totd.conf for DNS, faithd.conf for the relay)."""
    merged = Migration(
        f"{first.tool}+{second.tool}",
        first.sources + second.sources,
        notices=first.notices + second.notices,
    )
    for part in (first, second):
        for path, origin in part.origins.items():
            merged.origins.setdefault(path, origin)
        for path, lines in part.comments.items():
            merged.comment(path, *lines)
    merged.table = _merge_tables(first.table, second.table)
    return merged


def _merge_tables(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_tables(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


def _origin(m: Migration, path: str) -> tuple[str, int]:
    """The file and line a config key path came from, for error messages."""
    candidate = path
    while candidate:
        if candidate in m.origins:
            return m.origins[candidate]
        if candidate.endswith("]"):
            candidate = candidate[: candidate.rfind("[")]
        elif "." in candidate:
            candidate = candidate[: candidate.rfind(".")]
        else:
            break
    return m.sources[0], 0


def build(m: Migration) -> Config:
    """The validated configuration; :class:`MigrationError` lists every problem."""
    if m.errors:
        raise MigrationError(m.sorted_notices())
    try:
        return from_table(m.table)
    except ConfigError as exc:
        source, line = _origin(m, exc.path)
        m.error(source, line, str(exc))
        raise MigrationError(m.sorted_notices()) from None


def _field_doc(path: str) -> str:
    cls: Any = Config
    doc = ""
    for part in path.split("."):
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        f = by_name[part]
        if "doc" in f.metadata:
            doc = str(f.metadata["doc"])
            unit = f.metadata.get("unit")
            if unit:
                doc += f" Unit: {unit}."
        else:
            factory = f.default_factory
            cls = factory
    return doc


def _wrap(text: str, width: int = 88, indent: str = "# ") -> list[str]:
    lines: list[str] = []
    current = indent.rstrip()
    for word in text.split():
        if len(current) + 1 + len(word) > width and current != indent.rstrip():
            lines.append(current)
            current = indent + "  " + word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines


def render(m: Migration, config: Config) -> str:
    """TOML with only the keys the old files set, each with its documentation.

    Everything else keeps its default; ``totd-faith config show -c FILE``
    prints the whole effective configuration.
    """
    keep = {path for path in m.origins if "[" not in path}
    header = [
        f"# totd-faith configuration imported from {' and '.join(m.sources)}",
        f"# by 'totd-faith config import-{m.tool.split('+')[0]}'. Only the settings that came",
        "# from the old configuration are listed; every other key keeps its default",
        "# ('totd-faith config show -c THIS-FILE' prints them all).",
    ]
    warnings = [n for n in m.sorted_notices() if n.severity == "warning"]
    if warnings:
        header.append("#")
        header.append("# Review these notes from the import:")
        for notice in warnings:
            name = PurePath(notice.source).name
            where = f"{name}:{notice.line}" if notice.line else name
            header.extend(_wrap(f"{where}: {notice.message}", indent="#   "))
    out = header + [""]
    section = ""
    pending_header: str | None = None
    for line in to_toml(config).splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            pending_header = line
            continue
        if " = " not in line:
            continue
        key = line.split(" = ", 1)[0]
        path = f"{section}.{key}" if section else key
        if path not in keep:
            continue
        if pending_header is not None:
            if out[-1] != "":
                out.append("")
            out.append(pending_header)
            pending_header = None
        out.extend(_wrap(_field_doc(path)))
        out.extend(f"# {comment}" for comment in m.comments.get(path, []))
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def defaults_differ(config: Config) -> set[str]:
    """Key paths whose value differs from the embedded default (for tests and checks)."""
    changed: set[str] = set()

    def walk(current: dict[str, Any], default: dict[str, Any], prefix: str) -> None:
        for key, value in current.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(value, default[key], path)
            elif value != default[key]:
                changed.add(path)

    walk(dump_section(config), dump_section(Config()), "")
    return changed


__all__ = [
    "Migration",
    "MigrationError",
    "Notice",
    "build",
    "defaults_differ",
    "merge",
    "parse_faithd",
    "parse_totd",
    "render",
]
