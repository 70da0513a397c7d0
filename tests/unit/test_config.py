"""The one config model: defaults, every section, errors that name the key, precedence."""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from pathlib import Path

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.cli.common import load_config
from totd_faith.config import (
    Config,
    RelayMap,
    RelayPort,
    from_table,
    load_file,
    load_text,
    to_toml,
)
from totd_faith.endpoints import parse_endpoint
from totd_faith.errors import ConfigError
from totd_faith.policy import NetworkSet, RelayRule
from totd_faith.prefix import Nat64Prefix

DEFAULTS = Config()


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return info.value


# -- defaults -------------------------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    # Never an open resolver or an open relay by default; the Well-Known Prefix.
    assert [str(p) for p in DEFAULTS.prefixes] == ["64:ff9b::/96"]
    assert [str(e) for e in DEFAULTS.dns.listen] == ["127.0.0.1:5353", "[::1]:5353"]
    assert ipaddress.ip_address("192.0.2.1") not in DEFAULTS.dns.allow
    assert ipaddress.ip_address("2001:db8::1") not in DEFAULTS.relay.clients
    # serve relays the web ports out of the box, for local clients only.
    assert [(p.port, p.protocols) for p in DEFAULTS.relay.ports] == [
        (80, ("tcp", "udp")),
        (443, ("tcp", "udp")),
    ]
    assert DEFAULTS.relay.maps == () and DEFAULTS.relay.rules == ()
    assert DEFAULTS.relay.all_ports is False
    assert [str(n) for n in DEFAULTS.dns64.exclude] == ["::ffff:0:0/96"]


def test_empty_file_is_the_defaults() -> None:
    assert load_text("") == DEFAULTS
    assert from_table({}) == DEFAULTS
    assert load_file(None) == DEFAULTS


@pytest.mark.parametrize("annotated", [False, True])
def test_defaults_round_trip_through_toml(annotated: bool) -> None:
    text = to_toml(DEFAULTS, annotated=annotated)
    assert load_text(text) == DEFAULTS
    assert to_toml(load_text(text), annotated=annotated) == text


def test_annotated_output_documents_every_key() -> None:
    text = to_toml(DEFAULTS, annotated=True)
    table = tomllib.loads(text)
    lines = text.splitlines()
    for section in dataclasses.fields(Config):
        value = getattr(DEFAULTS, section.name)
        if dataclasses.is_dataclass(value):
            assert f"[{section.name}]" in lines
            keys = [f.name for f in dataclasses.fields(value)]
            assert sorted(table[section.name]) == sorted(keys)
        else:
            keys = [section.name]
        for key in keys:
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert lines[index - 1].startswith("# "), f"{key} has no comment above it"
    assert all(len(line) <= 100 for line in lines if line.startswith("#"))


def test_output_is_deterministic() -> None:
    assert to_toml(DEFAULTS) == to_toml(Config())
    assert to_toml(DEFAULTS, annotated=True) == to_toml(Config(), annotated=True)


# -- every section ----------------------------------------------------------------------------

EVERYTHING = """\
prefixes = ["2001:db8:64::/96", "64:ff9b::/96", "2001:db8:100::/40"]

[dns]
listen = ["127.0.0.1:53", "[::1]", "192.0.2.53"]
upstreams = ["192.0.2.1", "[2001:db8::1]:5353"]
upstream_timeout = 0.5
upstream_max_failures = 5
upstream_retry = 60
allow = ["192.0.2.0/24", "2001:db8::/32"]
hosts_files = ["zones/hosts.example", "/etc/totd-faith/hosts"]
hosts_ttl = 60
cache_size = 0
cache_max_ttl = 600
cache_max_negative_ttl = 30
tcp_idle_timeout = 2.5
tcp_max_clients = 8
max_inflight = 16
udp_payload_size = 4096

[dns64]
exclude = ["::ffff:0:0/96", "2001:db8:bad::/48"]
mapped = ["192.0.2.0/24", "198.51.100.0/24"]
never_synthesize = ["example.org", "internal.example."]
always_synthesize = ["broken-aaaa.example"]
clients = ["fd00::/8"]

[relay]
ports = [22, { port = 80, protocols = ["tcp"], proxy_protocol = "v2" }, 5999]
all_ports = true
maps = [
    "[::]:8080=192.0.2.10:80",
    { listen = "[::]:5353", target = "192.0.2.53:53", protocol = "udp" },
]
listen_address = "2001:db8:64::"
manage_routes = true
clients = ["2001:db8::/32", "fd00::/8"]
rules = ["fd00::/8 permit 192.0.2.0/24", "::/0 deny 0.0.0.0/0"]
connect_timeout = 3
idle_timeout = 60
udp_idle_timeout = 5
max_connections = 10
max_connections_per_client = 2
max_udp_sessions = 20
buffer_size = 8192
splice = "off"

[log]
level = "debug"
format = "json"
queries = true
connections = false

[metrics]
listen = "127.0.0.1:9164"

[service]
user = "nobody"
workers = 2
drain_timeout = 0
pidfile = "/run/totd-faith.pid"
"""


def test_every_section_loads() -> None:
    config = load_text(EVERYTHING)
    assert [str(p) for p in config.prefixes] == [
        "2001:db8:64::/96",
        "64:ff9b::/96",
        "2001:db8:100::/40",
    ]
    d = config.dns
    assert [str(e) for e in d.listen] == ["127.0.0.1:53", "[::1]:53", "192.0.2.53:53"]
    assert [str(e) for e in d.upstreams] == ["192.0.2.1:53", "[2001:db8::1]:5353"]
    assert (d.upstream_timeout, d.upstream_max_failures, d.upstream_retry) == (0.5, 5, 60.0)
    assert d.allow == NetworkSet.parse(["192.0.2.0/24", "2001:db8::/32"])
    assert d.hosts_files == ("zones/hosts.example", "/etc/totd-faith/hosts")
    assert (d.hosts_ttl, d.cache_size, d.cache_max_ttl) == (60, 0, 600)
    assert (d.cache_max_negative_ttl, d.tcp_idle_timeout, d.tcp_max_clients) == (30, 2.5, 8)
    assert (d.max_inflight, d.udp_payload_size) == (16, 4096)

    dns64 = config.dns64
    assert [str(n) for n in dns64.exclude] == ["::ffff:0:0/96", "2001:db8:bad::/48"]
    assert [str(n) for n in dns64.mapped] == ["192.0.2.0/24", "198.51.100.0/24"]
    assert dns64.never_synthesize == (
        dns.name.from_text("example.org"),
        dns.name.from_text("internal.example"),
    )
    assert dns64.always_synthesize == (dns.name.from_text("broken-aaaa.example"),)
    assert dns64.clients == NetworkSet.parse(["fd00::/8"])

    relay = config.relay
    assert relay.ports == (
        RelayPort(22),
        RelayPort(80, ("tcp",), "v2"),
        RelayPort(5999),
    )
    assert relay.all_ports and relay.manage_routes
    assert relay.maps == (
        RelayMap(parse_endpoint("[::]:8080"), parse_endpoint("192.0.2.10:80")),
        RelayMap(parse_endpoint("[::]:5353"), parse_endpoint("192.0.2.53:53"), "udp"),
    )
    assert relay.listen_address == ipaddress.IPv6Address("2001:db8:64::")
    assert relay.clients == NetworkSet.parse(["2001:db8::/32", "fd00::/8"])
    assert relay.rules == (
        RelayRule.parse("fd00::/8 permit 192.0.2.0/24"),
        RelayRule.parse("::/0 deny 0.0.0.0/0"),
    )
    assert (relay.connect_timeout, relay.idle_timeout, relay.udp_idle_timeout) == (3, 60, 5)
    assert (relay.max_connections, relay.max_connections_per_client) == (10, 2)
    assert (relay.max_udp_sessions, relay.buffer_size, relay.splice) == (20, 8192, "off")

    assert (config.log.level, config.log.format) == ("debug", "json")
    assert config.log.queries and not config.log.connections
    assert config.metrics.listen == "127.0.0.1:9164"
    service = config.service
    assert (service.user, service.workers, service.drain_timeout) == ("nobody", 2, 0.0)
    assert service.pidfile == "/run/totd-faith.pid"


def test_every_key_of_the_sample_differs_from_its_default() -> None:
    # So that test_every_section_loads really exercises every parser, not the defaults.
    config = load_text(EVERYTHING)
    table = tomllib.loads(EVERYTHING)
    for name, value in table.items():
        if isinstance(value, dict):
            for key in value:
                assert getattr(getattr(config, name), key) != getattr(
                    getattr(DEFAULTS, name), key
                ), f"{name}.{key}"
        else:
            assert getattr(config, name) != getattr(DEFAULTS, name), name


def test_a_full_config_round_trips() -> None:
    config = load_text(EVERYTHING)
    for annotated in (False, True):
        assert load_text(to_toml(config, annotated=annotated)) == config


ports = st.lists(st.integers(1, 65535), unique=True, max_size=6)
lengths = st.sampled_from([48, 56, 64, 96])


@given(ports, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=3, unique=True), lengths)
def test_random_configs_round_trip(port_list: list[int], nets: list[int], length: int) -> None:
    prefixes = [f"2001:db8:{n:x}::/{length}" for n in nets]
    text = f"prefixes = {prefixes!r}\n[relay]\nports = {port_list!r}\n".replace("'", '"')
    config = load_text(text)
    assert [p.port for p in config.relay.ports] == port_list
    assert [p.network for p in config.prefixes] == [ipaddress.IPv6Network(p) for p in prefixes]
    assert load_text(to_toml(config)) == config


# -- errors name the key path -------------------------------------------------------------------


def test_the_port_example_from_the_issue() -> None:
    error = config_error("[relay]\nports = [22, 80, 70000]\n")
    assert str(error) == "relay.ports[2]: 70000 is not a port number"
    assert error.path == "relay.ports[2]"


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("colour = 1", "colour", "unknown key"),
        ("[nope]\nx = 1", "nope", "unknown key"),
        ("[dns]\nlisten_on = []", "dns.listen_on", "unknown key"),
        ("[dns64]\nprefix = '64:ff9b::/96'", "dns64.prefix", "unknown key"),
        ("[relay]\nports = [{ port = 80, proto = 'tcp' }]", "relay.ports[0].proto", "unknown key"),
        (
            "[relay]\nmaps = [{ listen = '[::]:80', target = '192.0.2.1:80', tls = true }]",
            "relay.maps[0].tls",
            "unknown key",
        ),
        ("[log]\nlevels = 'debug'", "log.levels", "unknown key"),
        ("[metrics]\nport = 9164", "metrics.port", "unknown key"),
        ("[service]\ngroup = 'nogroup'", "service.group", "unknown key"),
    ],
)
def test_unknown_keys_name_the_path(text: str, path: str, problem: str) -> None:
    error = config_error(text)
    assert error.path == path
    assert problem in error.problem
    assert "expected one of" in error.problem


def test_unknown_key_lists_the_known_ones() -> None:
    error = config_error("[log]\nlevels = 'debug'")
    for key in ("connections", "format", "level", "queries"):
        assert key in error.problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dns = 5", "dns: expected a table, got an integer"),
        ("prefixes = '64:ff9b::/96'", "prefixes: expected a list, got a string"),
        ("prefixes = [96]", "prefixes[0]: expected a string, got an integer"),
        ("[dns]\ncache_size = 'big'", "dns.cache_size: expected an integer, got a string"),
        ("[dns]\ncache_size = true", "dns.cache_size: expected an integer, got a boolean"),
        ("[dns]\ncache_size = 1.5", "dns.cache_size: expected an integer, got a number"),
        ("[dns]\nupstream_timeout = 'slow'", "dns.upstream_timeout: expected a number of seconds"),
        ("[log]\nqueries = 1", "log.queries: expected true or false, got an integer"),
        ("[log]\nqueries = 'yes'", "log.queries: expected true or false, got a string"),
        ("[dns]\nlisten = '127.0.0.1'", "dns.listen: expected a list, got a string"),
        ("[relay]\nports = [true]", "relay.ports[0]: expected a port number, got a boolean"),
        ("[relay]\nmaps = [5]", "relay.maps[0]: expected a string LISTEN=TARGET or a table"),
        ("[metrics]\nlisten = 9164", "metrics.listen: expected a string, got an integer"),
        ("[service]\nworkers = '2'", "service.workers: expected an integer, got a string"),
    ],
)
def test_type_errors(text: str, message: str) -> None:
    assert str(config_error(text)).startswith(message)


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("prefixes = ['2001:db8::/60']", "prefixes[0]", "/60 is not allowed by RFC 6052"),
        ("prefixes = ['2001:200:161:1400:5999::/96']", "prefixes[0]", "bits 64-71"),
        ("prefixes = []", "prefixes", "at least one translation prefix"),
        ("prefixes = ['64:ff9b::/96', '64:ff9b::/96']", "prefixes[1]", "listed twice"),
        ("[dns]\nlisten = ['127.0.0.1:99999']", "dns.listen[0]", "is not a port number"),
        ("[dns]\nupstreams = ['ns1.example']", "dns.upstreams[0]", "is not an address"),
        ("[dns]\nupstream_timeout = 0", "dns.upstream_timeout", "is not a duration"),
        ("[dns]\nupstream_timeout = nan", "dns.upstream_timeout", "is not a duration"),
        ("[dns]\nallow = ['10.0.0.1/8']", "dns.allow[0]", "has host bits set"),
        ("[dns]\nhosts_ttl = -1", "dns.hosts_ttl", "is out of range"),
        ("[dns]\nudp_payload_size = 100", "dns.udp_payload_size", "is out of range (512..65535)"),
        ("[dns64]\nexclude = ['::ffff:0:0/95x']", "dns64.exclude[0]", "is not an IP network"),
        ("[dns64]\nnever_synthesize = ['a..b']", "dns64.never_synthesize[0]", "not a domain"),
        ("[relay]\nports = [0]", "relay.ports[0]", "0 is not a port number"),
        ("[relay]\nports = [80, 80]", "relay.ports[1]", "port 80 is listed twice"),
        ("[relay]\nports = [{ protocols = ['tcp'] }]", "relay.ports[0].port", "missing"),
        ("[relay]\nports = [{ port = 80, protocols = [] }]", "relay.ports[0].protocols", "tcp"),
        (
            "[relay]\nports = [{ port = 80, protocols = ['sctp'] }]",
            "relay.ports[0].protocols[0]",
            "'sctp' is not one of tcp, udp",
        ),
        (
            "[relay]\nports = [{ port = 80, proxy_protocol = 'v3' }]",
            "relay.ports[0].proxy_protocol",
            "'v3' is not one of none, v1, v2",
        ),
        ("[relay]\nmaps = ['[::]:8080']", "relay.maps[0]", "write LISTEN=TARGET"),
        ("[relay]\nmaps = ['[::]:8080=192.0.2.10']", "relay.maps[0]", "a port is required"),
        ("[relay]\nmaps = [{ listen = '[::]:80' }]", "relay.maps[0].target", "missing"),
        (
            "[relay]\nmaps = ['[::]:80=192.0.2.1:80', '[::]:80=192.0.2.2:80']",
            "relay.maps[1]",
            "mapped twice",
        ),
        ("[relay]\nlisten_address = '0.0.0.0'", "relay.listen_address", "not an IPv6 address"),
        ("[relay]\nrules = ['fd00::/8 allow 0.0.0.0/0']", "relay.rules[0]", "is not a rule"),
        ("[relay]\nsplice = 'yes'", "relay.splice", "is not one of auto, on, off"),
        ("[relay]\nbuffer_size = 1", "relay.buffer_size", "is out of range"),
        ("[log]\nlevel = 'loud'", "log.level", "'loud' is not one of debug, info, warning"),
        ("[service]\nworkers = 0", "service.workers", "is out of range (1..256)"),
    ],
)
def test_value_errors_name_the_key(text: str, path: str, problem: str) -> None:
    error = config_error(text)
    assert error.path == path
    assert problem in error.problem
    assert str(error) == f"{path}: {error.problem}"


def test_invalid_toml_names_the_source() -> None:
    with pytest.raises(ConfigError, match="my.toml: not valid TOML") as info:
        load_text("[dns\nlisten = 1", source="my.toml")
    assert "line 1" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="cannot read the configuration file") as info:
        load_file(missing)
    assert str(missing) in str(info.value)


def test_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[relay]\nports = [22, 80, 70000]\n")
    with pytest.raises(ConfigError, match=r"^relay\.ports\[2\]: 70000 is not a port number$"):
        load_file(path)


# -- precedence: defaults < file < overrides ------------------------------------------------------

FILE = """\
prefixes = ["2001:db8:64::/96"]
[dns]
upstreams = ["192.0.2.1"]
cache_size = 10
[log]
level = "debug"
"""


def test_file_overrides_defaults_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(FILE)
    config = load_file(path)
    assert [str(p) for p in config.prefixes] == ["2001:db8:64::/96"]
    assert config.dns.cache_size == 10
    # Keys the file does not name keep their defaults, also inside a section it does name.
    assert config.dns.listen == DEFAULTS.dns.listen
    assert config.dns.upstream_timeout == DEFAULTS.dns.upstream_timeout
    assert config.relay == DEFAULTS.relay


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(FILE)
    config = load_file(
        path,
        {
            "dns.upstreams": ["198.51.100.1:5353"],
            "prefixes": ["64:ff9b::/96"],
            "relay.ports": [80],
        },
    )
    assert [str(e) for e in config.dns.upstreams] == ["198.51.100.1:5353"]
    assert [str(p) for p in config.prefixes] == ["64:ff9b::/96"]
    assert config.relay.ports == (RelayPort(80),)
    # What was not overridden still comes from the file.
    assert config.dns.cache_size == 10
    assert config.log.level == "debug"


def test_overrides_without_a_file() -> None:
    config = load_file(None, {"log.level": "warning"})
    assert config.log.level == "warning"
    assert dataclasses.replace(config, log=DEFAULTS.log) == DEFAULTS


def test_override_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^relay\.ports\[0\]: 70000 is not a port number$"):
        load_file(None, {"relay.ports": [70000]})


def test_flags_not_given_never_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(FILE)
    # What the CLI passes for flags the user did not give: None and empty tuples.
    absent: dict[str, object] = {
        "prefixes": (),
        "dns.listen": (),
        "dns.upstreams": [],
        "relay.all_ports": None,
    }
    assert load_config(str(path), absent) == load_file(path)
    given_flags: dict[str, object] = {**absent, "dns.upstreams": ["203.0.113.5"]}
    config = load_config(str(path), given_flags)
    assert [str(e) for e in config.dns.upstreams] == ["203.0.113.5:53"]
    assert [str(p) for p in config.prefixes] == ["2001:db8:64::/96"]


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.log = DEFAULTS.log  # type: ignore[misc]
    assert Nat64Prefix.parse("64:ff9b::/96") in DEFAULTS.prefixes
