"""The one configuration model: frozen dataclasses, TOML loading, validation.

Every setting lives here once, with its documentation, unit, default, parser
and TOML form.  Loading walks the dataclasses: unknown keys are errors and
every error names the key path (``relay.ports[2]: 70000 is not a port
number``).  Precedence is embedded defaults < file < command-line overrides;
the CLI passes only the flags the user actually gave.

No I/O except :func:`load_file`, which reads the one file it is given.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dns.name

from totd_faith.endpoints import Endpoint, parse_endpoint, parse_port
from totd_faith.errors import ConfigError, OperatorError
from totd_faith.policy import LOCAL_NETWORKS, Network, NetworkSet, RelayRule, parse_network
from totd_faith.prefix import Nat64Prefix

T = TypeVar("T")
Parser = Callable[[object, str], Any]
Dumper = Callable[[Any], Any]

# -- value parsers: (raw TOML value, key path) -> model value -----------------


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _expect(raw: object, kind: type | tuple[type, ...], what: str, path: str) -> Any:
    if (
        isinstance(raw, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise ConfigError(path, f"expected {what}, got {_type_name(raw)}")
    if not isinstance(raw, kind):
        raise ConfigError(path, f"expected {what}, got {_type_name(raw)}")
    return raw


def _wrap(parse: Callable[[str], T]) -> Callable[[object, str], T]:
    """Turn a text parser raising OperatorError into a config parser naming the key."""

    def parser(raw: object, path: str) -> T:
        text = _expect(raw, str, "a string", path)
        try:
            return parse(text)
        except OperatorError as exc:
            raise ConfigError(path, str(exc)) from None

    return parser


def p_str(raw: object, path: str) -> str:
    return str(_expect(raw, str, "a string", path))


def p_bool(raw: object, path: str) -> bool:
    return bool(_expect(raw, bool, "true or false", path))


def p_int(minimum: int, maximum: int | None = None) -> Parser:
    def parser(raw: object, path: str) -> int:
        value = _expect(raw, int, "an integer", path)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(path, f"{value} is out of range ({bound})")
        return int(value)

    return parser


def p_seconds(minimum: float = 0.0) -> Parser:
    def parser(raw: object, path: str) -> float:
        value = float(_expect(raw, (int, float), "a number of seconds", path))
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(path, f"{value} is not a duration >= {minimum} seconds")
        return value

    return parser


def p_choice(*choices: str) -> Parser:
    def parser(raw: object, path: str) -> str:
        value = p_str(raw, path)
        if value not in choices:
            raise ConfigError(path, f"{value!r} is not one of {', '.join(choices)}")
        return value

    return parser


def p_list(item: Parser) -> Parser:
    def parser(raw: object, path: str) -> tuple[Any, ...]:
        values = _expect(raw, list, "a list", path)
        return tuple(item(value, f"{path}[{i}]") for i, value in enumerate(values))

    return parser


def p_port(raw: object, path: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ConfigError(path, f"expected a port number, got {_type_name(raw)}")
    try:
        return parse_port(raw)
    except OperatorError:
        raise ConfigError(path, f"{raw} is not a port number") from None


def p_endpoint(default_port: int | None) -> Parser:
    return _wrap(lambda text: parse_endpoint(text, default_port))


def _parse_domain(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise ConfigError("", f"{text!r} is not a domain name ({exc})") from None


p_prefix = _wrap(Nat64Prefix.parse)
p_network = _wrap(parse_network)


def _family_network(version: int) -> Parser:
    """A network of one address family (dns64.exclude is IPv6, dns64.mapped IPv4)."""

    def parse(text: str) -> Network:
        network = parse_network(text)
        if network.version != version:
            raise OperatorError(f"{text!r} is not an IPv{version} network")
        return network

    return _wrap(parse)


p_ipv4_network = _family_network(4)
p_ipv6_network = _family_network(6)
p_rule = _wrap(RelayRule.parse)
p_domain = _wrap(_parse_domain)


def p_network_set(raw: object, path: str) -> NetworkSet:
    return NetworkSet(p_list(p_network)(raw, path))


def p_ipv6(raw: object, path: str) -> ipaddress.IPv6Address:
    text = p_str(raw, path)
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise ConfigError(path, f"{text!r} is not an IPv6 address") from None


# -- dumpers: model value -> TOML value ---------------------------------------


def d_str(value: object) -> str:
    return str(value)


def d_identity(value: T) -> T:
    return value


def d_list(value: Iterable[object]) -> list[Any]:
    return [_dump_value(item) for item in value]


def d_network_set(value: NetworkSet) -> list[str]:
    return [str(n) for n in value.networks]


def d_domains(value: Iterable[dns.name.Name]) -> list[str]:
    return [name.to_text(omit_final_dot=True) for name in value]


def _dump_value(value: object) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def setting(
    default: Any,
    doc: str,
    parse: Parser,
    *,
    dump: Dumper = d_identity,
    unit: str = "",
    factory: bool = False,
) -> Any:
    """Declare one setting: its default, documentation, unit, parser and TOML form."""
    metadata = {"doc": doc, "parse": parse, "dump": dump, "unit": unit}
    if factory:
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


# -- the model ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayPort:
    """One relayed port in prefix mode."""

    port: int
    protocols: tuple[str, ...] = ("tcp", "udp")
    proxy_protocol: str = "none"


@dataclass(frozen=True, slots=True)
class RelayMap:
    """One port map (6tunnel style): connections to ``listen`` go to ``target``."""

    listen: Endpoint
    target: Endpoint
    protocol: str = "tcp"
    proxy_protocol: str = "none"


_PROXY_CHOICES = ("none", "v1", "v2")
_PROTOCOLS = ("tcp", "udp")


def _reject_unknown(table: Mapping[str, object], known: Iterable[str], path: str) -> None:
    known = sorted(set(known))
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}.{key}" if path else key,
                f"unknown key{hint} (expected one of: {', '.join(known)})",
            )


def p_relay_port(raw: object, path: str) -> RelayPort:
    if isinstance(raw, dict):
        _reject_unknown(raw, ("port", "protocols", "proxy_protocol"), path)
        if "port" not in raw:
            raise ConfigError(f"{path}.port", "missing (every port entry needs a port)")
        protocols = p_list(p_choice(*_PROTOCOLS))(
            raw.get("protocols", ["tcp", "udp"]), f"{path}.protocols"
        )
        if not protocols:
            raise ConfigError(f"{path}.protocols", "must name tcp, udp or both")
        return RelayPort(
            p_port(raw["port"], f"{path}.port"),
            tuple(dict.fromkeys(protocols)),
            p_choice(*_PROXY_CHOICES)(raw.get("proxy_protocol", "none"), f"{path}.proxy_protocol"),
        )
    return RelayPort(p_port(raw, path))


def d_relay_port(value: RelayPort) -> Any:
    if value.protocols == ("tcp", "udp") and value.proxy_protocol == "none":
        return value.port
    return {
        "port": value.port,
        "protocols": list(value.protocols),
        "proxy_protocol": value.proxy_protocol,
    }


def parse_map_text(text: str) -> RelayMap:
    """``LISTEN=TARGET`` as given to ``--map``; the listen port defaults to the target's."""
    listen_text, sep, target_text = text.partition("=")
    if not sep:
        raise ConfigError("", f"{text!r}: write LISTEN=TARGET, e.g. '[::]:8080=192.0.2.10:80'")
    try:
        target = parse_endpoint(target_text)
        listen = parse_endpoint(listen_text, target.port)
    except OperatorError as exc:
        raise ConfigError("", f"{text!r}: {exc}") from None
    return RelayMap(listen, target)


def p_relay_map(raw: object, path: str) -> RelayMap:
    if isinstance(raw, str):
        try:
            return parse_map_text(raw)
        except ConfigError as exc:
            raise ConfigError(path, exc.problem) from None
    table = _expect(raw, dict, "a string LISTEN=TARGET or a table", path)
    _reject_unknown(table, ("listen", "target", "protocol", "proxy_protocol"), path)
    for key in ("listen", "target"):
        if key not in table:
            raise ConfigError(f"{path}.{key}", "missing")
    target = p_endpoint(None)(table["target"], f"{path}.target")
    return RelayMap(
        p_endpoint(target.port)(table["listen"], f"{path}.listen"),
        target,
        p_choice(*_PROTOCOLS)(table.get("protocol", "tcp"), f"{path}.protocol"),
        p_choice(*_PROXY_CHOICES)(table.get("proxy_protocol", "none"), f"{path}.proxy_protocol"),
    )


def d_relay_map(value: RelayMap) -> Any:
    if value.protocol == "tcp" and value.proxy_protocol == "none":
        return f"{value.listen}={value.target}"
    return {
        "listen": str(value.listen),
        "target": str(value.target),
        "protocol": value.protocol,
        "proxy_protocol": value.proxy_protocol,
    }


def _local() -> NetworkSet:
    return NetworkSet.parse(LOCAL_NETWORKS)


def _everyone() -> NetworkSet:
    return NetworkSet.parse(["0.0.0.0/0", "::/0"])


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """The DNS proxy: listeners, upstream forwarders, access, cache and limits."""

    listen: tuple[Endpoint, ...] = setting(
        lambda: (parse_endpoint("127.0.0.1:5353"), parse_endpoint("[::1]:5353")),
        "Addresses to answer DNS on, UDP and TCP (port 53 needs CAP_NET_BIND_SERVICE); "
        "each once. [] turns DNS off in `serve` (relay only); `totd-faith dns` refuses it.",
        p_list(p_endpoint(53)),
        dump=d_list,
        factory=True,
    )
    upstreams: tuple[Endpoint, ...] = setting(
        tuple,
        "Forwarders in order of preference; empty means the nameservers of /etc/resolv.conf.",
        p_list(p_endpoint(53)),
        dump=d_list,
        factory=True,
    )
    upstream_timeout: float = setting(
        2.0,
        "How long to wait for one upstream before trying the next.",
        p_seconds(0.05),
        unit="seconds",
    )
    upstream_max_failures: int = setting(
        3, "Consecutive timeouts after which an upstream is marked down.", p_int(1)
    )
    upstream_retry: float = setting(
        300.0,
        "How long a down upstream is skipped before it is tried again (totd's retry).",
        p_seconds(1.0),
        unit="seconds",
    )
    allow: NetworkSet = setting(
        _local,
        "Client networks that are served; everyone else gets REFUSED.",
        p_network_set,
        dump=d_network_set,
        factory=True,
    )
    hosts_files: tuple[str, ...] = setting(
        tuple,
        "Static hosts files (/etc/hosts format, IPv4 lines) answered locally: A, "
        "synthesized AAAA and PTR.",
        p_list(p_str),
        dump=d_list,
        factory=True,
    )
    hosts_ttl: int = setting(
        3600, "TTL of answers from the static hosts files.", p_int(0, 2**31 - 1), unit="seconds"
    )
    cache_size: int = setting(
        100_000, "Most answers kept in the cache (0 disables it).", p_int(0), unit="entries"
    )
    cache_memory: int = setting(
        64,
        "Most memory the cached answers may take (with cache_size, whichever is reached "
        "first; large answers would otherwise let a few queries fill the memory).",
        p_int(1),
        unit="MiB",
    )
    cache_max_ttl: int = setting(
        86_400, "Longest time an answer is cached.", p_int(0, 2**31 - 1), unit="seconds"
    )
    cache_max_negative_ttl: int = setting(
        3_600,
        "Longest time a negative answer is cached (RFC 2308 section 5).",
        p_int(0, 2**31 - 1),
        unit="seconds",
    )
    tcp_idle_timeout: float = setting(
        10.0,
        "Idle TCP client connections are closed after this long.",
        p_seconds(0.1),
        unit="seconds",
    )
    tcp_max_clients: int = setting(256, "Most TCP client connections open at once.", p_int(1))
    max_inflight: int = setting(
        2_048, "Most queries being resolved upstream at once; more are dropped.", p_int(1)
    )
    udp_payload_size: int = setting(
        1_232, "EDNS payload size offered to upstreams.", p_int(512, 65535), unit="bytes"
    )


_DEFAULT_EXCLUDE = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True)
class Dns64Config:
    """RFC 6147 synthesis options (the prefixes are top-level, shared with the relay)."""

    exclude: tuple[ipaddress.IPv6Network, ...] = setting(
        lambda: (_DEFAULT_EXCLUDE,),
        "AAAA records inside these networks are treated as absent (RFC 6147 section 5.1.4).",
        p_list(p_ipv6_network),
        dump=d_list,
        factory=True,
    )
    mapped: tuple[ipaddress.IPv4Network, ...] = setting(
        lambda: (ipaddress.IPv4Network("0.0.0.0/0"),),
        "IPv4 ranges that may be synthesized (RFC 6147 section 5.1.7); the Well-Known "
        "Prefix additionally never carries non-global addresses (RFC 6052 section 3.1).",
        p_list(p_ipv4_network),
        dump=d_list,
        factory=True,
    )
    never_synthesize: tuple[dns.name.Name, ...] = setting(
        tuple,
        "Domains (and their subdomains) that are never synthesized.",
        p_list(p_domain),
        dump=d_domains,
        factory=True,
    )
    always_synthesize: tuple[dns.name.Name, ...] = setting(
        tuple,
        "Domains whose real AAAA records are ignored and always synthesized.",
        p_list(p_domain),
        dump=d_domains,
        factory=True,
    )
    clients: NetworkSet = setting(
        _everyone,
        "Client networks that get synthesized answers; others get plain forwarding.",
        p_network_set,
        dump=d_network_set,
        factory=True,
    )


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The faithd-style relay: what it listens on, who may use it, and its limits."""

    ports: tuple[RelayPort, ...] = setting(
        lambda: (RelayPort(80), RelayPort(443)),
        "Prefix mode: ports relayed (TCP and UDP) to the IPv4 address embedded in the address "
        "the client dialled; [] relays none. An entry is a port or {port, protocols, "
        "proxy_protocol}.",
        p_list(p_relay_port),
        dump=lambda v: [d_relay_port(p) for p in v],
        factory=True,
    )
    all_ports: bool = setting(
        False, "Catch every TCP and UDP port of the prefixes with nftables tproxy (root).", p_bool
    )
    tproxy_port: int = setting(
        64646,
        "All-ports mode: the local port nftables tproxy steers TCP and UDP to "
        "(any free port; clients never see it).",
        p_port,
    )
    maps: tuple[RelayMap, ...] = setting(
        tuple,
        "Port maps, no prefix needed: 'LISTEN=TARGET' or {listen, target, protocol, "
        "proxy_protocol}.",
        p_list(p_relay_map),
        dump=lambda v: [d_relay_map(m) for m in v],
        factory=True,
    )
    listen_address: ipaddress.IPv6Address = setting(
        ipaddress.IPv6Address("::"), "Address prefix-mode listeners bind to.", p_ipv6, dump=d_str
    )
    manage_routes: bool = setting(
        False, "Add the AnyIP route for each prefix at start and remove it at stop (root).", p_bool
    )
    clients: NetworkSet = setting(
        _local,
        "Client networks allowed to use the relay at all.",
        p_network_set,
        dump=d_network_set,
        factory=True,
    )
    rules: tuple[RelayRule, ...] = setting(
        tuple,
        "Ordered 'CLIENT-NET permit|deny DEST-NET' rules, first match wins (faithd.conf). "
        "Loopback, this-host, link-local, multicast, reserved and broadcast destinations and the "
        "relay's own addresses are refused unless a rule names them.",
        p_list(p_rule),
        dump=d_list,
        factory=True,
    )
    connect_timeout: float = setting(
        10.0, "Time allowed to connect to the IPv4 backend.", p_seconds(0.1), unit="seconds"
    )
    idle_timeout: float = setting(
        1800.0, "TCP connections idle this long are closed.", p_seconds(1.0), unit="seconds"
    )
    udp_idle_timeout: float = setting(
        60.0, "UDP sessions idle this long are closed.", p_seconds(1.0), unit="seconds"
    )
    max_connections: int = setting(4096, "Most relayed TCP connections at once.", p_int(1))
    max_connections_per_client: int = setting(
        256, "Most relayed TCP connections from one client address.", p_int(1)
    )
    max_udp_sessions: int = setting(4096, "Most UDP sessions at once.", p_int(1))
    buffer_size: int = setting(
        65_536, "Bytes buffered per direction per connection.", p_int(4096), unit="bytes"
    )
    splice: str = setting(
        "auto", "Zero-copy os.splice path: auto, on or off.", p_choice("auto", "on", "off")
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging to stderr."""

    level: str = setting(
        "info", "debug, info, warning or error.", p_choice("debug", "info", "warning", "error")
    )
    format: str = setting(
        "text", "text (journald-friendly) or json (for log shippers).", p_choice("text", "json")
    )
    queries: bool = setting(False, "Log every DNS query.", p_bool)
    connections: bool = setting(True, "Log one line per relayed connection.", p_bool)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics over HTTP."""

    listen: str = setting(
        "", "Address for the metrics HTTP listener, e.g. 127.0.0.1:9164; empty disables it.", p_str
    )


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Process-level settings."""

    user: str = setting("", "Drop privileges to this user after binding (empty: stay).", p_str)
    workers: int = setting(
        1, "Processes sharing the listening sockets (SO_REUSEPORT).", p_int(1, 256)
    )
    drain_timeout: float = setting(
        10.0, "On SIGTERM, how long relayed connections may drain.", p_seconds(0.0), unit="seconds"
    )
    pidfile: str = setting("", "Write the process ID here (empty: none).", p_str)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of totd-faith."""

    prefixes: tuple[Nat64Prefix, ...] = setting(
        lambda: (Nat64Prefix.parse("64:ff9b::/96"),),
        "Translation prefixes (RFC 6052): DNS64 synthesizes into each, in order, and the "
        "relay decodes addresses inside them.",
        p_list(p_prefix),
        dump=d_list,
        factory=True,
    )
    dns: DnsConfig = field(default_factory=DnsConfig)
    dns64: Dns64Config = field(default_factory=Dns64Config)
    relay: RelayConfig = field(default_factory=RelayConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)


# -- loading --------------------------------------------------------------------


def _is_section(f: dataclasses.Field[Any]) -> bool:
    return "parse" not in f.metadata


def _section_type(f: dataclasses.Field[Any]) -> Any:
    factory = f.default_factory
    assert factory is not dataclasses.MISSING
    return factory


def _build(cls: Any, table: Mapping[str, object], path: str) -> Any:
    fields = dataclasses.fields(cls)
    _reject_unknown(table, (f.name for f in fields), path)
    values: dict[str, Any] = {}
    for f in fields:
        if f.name not in table:
            continue
        key = f"{path}.{f.name}" if path else f.name
        raw = table[f.name]
        if _is_section(f):
            values[f.name] = _build(_section_type(f), _expect(raw, dict, "a table", key), key)
        else:
            values[f.name] = f.metadata["parse"](raw, key)
    return cls(**values)


def _merge(base: dict[str, Any], overrides: Mapping[str, object]) -> dict[str, Any]:
    """Apply ``{"dns.listen": [...]}`` style overrides onto a raw TOML table."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        table = merged
        for section in sections:
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(section, "expected a table")
        table[key] = value
    return merged


def _validate_prefixes(
    prefixes: tuple[Nat64Prefix, ...], exclude: tuple[ipaddress.IPv6Network, ...]
) -> None:
    """Each prefix once, no two overlapping, none inside the DNS64 exclusion set."""
    for i, prefix in enumerate(prefixes):
        for j, earlier in enumerate(prefixes[:i]):
            if prefix == earlier:
                raise ConfigError(
                    f"prefixes[{i}]", f"{prefix} is listed twice (also prefixes[{j}]); remove one"
                )
            # An address inside both would decode to two different IPv4 addresses
            # (RFC 6052 section 2.2 places the IPv4 bits by prefix length), so the
            # relay, the PTR answers and `addr decode` could disagree.
            if prefix.network.overlaps(earlier.network):
                raise ConfigError(
                    f"prefixes[{i}]",
                    f"{prefix} overlaps prefixes[{j}] {earlier}: an address inside both would "
                    "embed a different IPv4 address under each (RFC 6052 section 2.2); use "
                    "translation prefixes that do not overlap",
                )
        # RFC 6147 section 5.1.4: the exclusion set (by default ::ffff:0:0/96, the
        # IPv4-mapped addresses) holds addresses IPv6-only hosts cannot use, so a
        # prefix there would synthesize unusable AAAA records.
        for j, excluded in enumerate(exclude):
            if prefix.may_synthesize_into(excluded):
                if excluded == _DEFAULT_EXCLUDE:
                    what, other = " (the default)", ""
                else:
                    what, other = "", f", or remove {excluded} from dns64.exclude"
                raise ConfigError(
                    f"prefixes[{i}]",
                    f"{prefix} overlaps dns64.exclude[{j}] {excluded}{what}: RFC 6147 "
                    "section 5.1.4 excludes these addresses because IPv6-only hosts cannot "
                    "use them, so AAAA records synthesized there would be unusable; use a "
                    "translation prefix outside the exclusion set, such as 64:ff9b::/96 or a "
                    f"Network-Specific Prefix from your own IPv6 space{other}",
                )


def _validate_dns_listen(listen: tuple[Endpoint, ...]) -> None:
    """Each listen address once.  Otherwise the second socket fails with "address
    in use; stop the other DNS server", which blames a server that does not
    exist (or, with service.workers > 1 and SO_REUSEPORT, binds a useless twin)."""
    for i, endpoint in enumerate(listen):
        if endpoint in listen[:i]:
            j = listen.index(endpoint)
            raise ConfigError(
                f"dns.listen[{i}]", f"{endpoint} is listed twice (also dns.listen[{j}]); remove one"
            )


def validate(config: Config) -> Config:
    """Checks that span several keys."""
    if not config.prefixes:
        raise ConfigError("prefixes", "at least one translation prefix is needed")
    _validate_prefixes(config.prefixes, config.dns64.exclude)
    _validate_dns_listen(config.dns.listen)
    ports = [p.port for p in config.relay.ports]
    for i, port in enumerate(ports):
        if port in ports[:i]:
            raise ConfigError(f"relay.ports[{i}]", f"port {port} is listed twice")
    if config.metrics.listen.strip():
        try:
            parse_endpoint(config.metrics.listen, 9164)
        except OperatorError as exc:
            raise ConfigError("metrics.listen", str(exc)) from None
    listens = [(m.listen, m.protocol) for m in config.relay.maps]
    for i, item in enumerate(listens):
        if item in listens[:i]:
            raise ConfigError(f"relay.maps[{i}]", f"{item[0]} ({item[1]}) is mapped twice")
    return config


def from_table(
    table: Mapping[str, object], overrides: Mapping[str, object] | None = None
) -> Config:
    """Build a :class:`Config` from a parsed TOML table plus CLI overrides."""
    raw = _merge(dict(table), overrides or {})
    config: Config = _build(Config, raw, "")
    return validate(config)


def load_text(
    text: str, overrides: Mapping[str, object] | None = None, source: str = "<config>"
) -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from None
    return from_table(table, overrides)


def load_file(path: str | Path | None, overrides: Mapping[str, object] | None = None) -> Config:
    """Defaults < ``path`` (if given) < ``overrides``."""
    if path is None:
        return from_table({}, overrides)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read the configuration file: {exc.strerror}"
        ) from None
    return load_text(text, overrides, str(path))


# -- TOML output ------------------------------------------------------------------


def dump_section(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        out[f.name] = dump_section(value) if _is_section(f) else f.metadata["dump"](value)
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _comment(text: str, width: int = 88) -> list[str]:
    lines: list[str] = []
    current = "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width:
            lines.append(current)
            current = "#"
        current += " " + word
    lines.append(current)
    return lines


def to_toml(config: Config, *, annotated: bool = False) -> str:
    """The configuration as TOML; ``annotated`` adds each key's documentation."""
    lines: list[str] = []

    def emit(section: Any) -> list[Any]:
        subsections = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if _is_section(f):
                subsections.append((f.name, value))
                continue
            if annotated:
                unit = f" Unit: {f.metadata['unit']}." if f.metadata["unit"] else ""
                lines.extend(_comment(f.metadata["doc"] + unit))
            lines.append(f"{f.name} = {_toml_value(f.metadata['dump'](value))}")
            if annotated:
                lines.append("")
        return subsections

    for name, section in emit(config):
        if lines and lines[-1] != "":
            lines.append("")
        lines.append(f"[{name}]")
        if annotated:
            doc = (type(section).__doc__ or "").strip()
            lines.extend(_comment(doc))
            lines.append("")
        emit(section)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def replace(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole sections or top-level keys replaced."""
    return validate(dataclasses.replace(config, **sections))


__all__ = [
    "Config",
    "DnsConfig",
    "Dns64Config",
    "RelayConfig",
    "RelayMap",
    "RelayPort",
    "LogConfig",
    "MetricsConfig",
    "ServiceConfig",
    "load_file",
    "load_text",
    "from_table",
    "to_toml",
    "parse_map_text",
    "Network",
]
