"""Cross-key prefix checks, "did you mean" for misspelt keys, errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from totd_faith.cli.common import load_config, overrides_from
from totd_faith.config import load_text
from totd_faith.errors import ConfigError


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return info.value


# -- prefixes: inside the exclusion set, overlapping, duplicated ----------------------------------


@pytest.mark.parametrize("prefix", ["::ffff:0:0/96", "0:0:0:0:0:ffff::/96"])
def test_a_prefix_in_the_default_exclusion_set_is_refused(prefix: str) -> None:
    error = config_error(f"prefixes = ['{prefix}']")
    assert error.path == "prefixes[0]"
    assert "overlaps dns64.exclude[0] ::ffff:0:0/96 (the default)" in error.problem
    assert "RFC 6147 section 5.1.4" in error.problem
    assert "use a translation prefix outside the exclusion set" in error.problem
    # the default set is not something to remove
    assert "remove" not in error.problem


def test_a_prefix_in_a_configured_exclusion_is_refused() -> None:
    error = config_error(
        "prefixes = ['64:ff9b::/96', '2001:db8:64::/96']\n"
        "[dns64]\nexclude = ['::ffff:0:0/96', '2001:db8::/32']\n"
    )
    assert error.path == "prefixes[1]"
    assert "overlaps dns64.exclude[1] 2001:db8::/32:" in error.problem
    assert "or remove 2001:db8::/32 from dns64.exclude" in error.problem


def test_prefixes_outside_the_exclusion_set_are_accepted() -> None:
    config = load_text(
        "prefixes = ['64:ff9b::/96', '2001:db8:64::/96']\n"
        "[dns64]\nexclude = ['::ffff:0:0/96', '2001:db8:65::/48']\n"
    )
    assert [str(p) for p in config.prefixes] == ["64:ff9b::/96", "2001:db8:64::/96"]
    # ::/32 overlaps ::ffff:0:0/96 but never synthesizes into it (zero suffix bits)
    assert load_text("prefixes = ['::/32']").prefixes
    # an empty exclusion set allows any prefix
    assert load_text("prefixes = ['::ffff:0:0/96']\n[dns64]\nexclude = []\n").prefixes


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2001:db8:64::/96", "2001:db8:64::/64"),
        ("2001:db8::/32", "2001:db8:64::/96"),
        ("64:ff9b:1::/48", "64:ff9b:1:2::/64"),
    ],
)
def test_overlapping_prefixes_are_refused(first: str, second: str) -> None:
    error = config_error(f"prefixes = ['{first}', '{second}']")
    assert error.path == "prefixes[1]"
    assert error.problem.startswith(f"{second} overlaps prefixes[0] {first}: ")
    assert "RFC 6052 section 2.2" in error.problem
    assert "do not overlap" in error.problem


def test_duplicate_prefixes_are_refused_as_duplicates() -> None:
    error = config_error("prefixes = ['64:ff9b::/96', '2001:db8:64::/96', '2001:DB8:64:0::/96']")
    assert str(error) == (
        "prefixes[2]: 2001:db8:64::/96 is listed twice (also prefixes[1]); remove one"
    )


def test_adjacent_prefixes_are_accepted() -> None:
    config = load_text("prefixes = ['2001:db8:64::/96', '2001:db8:64::1:0:0/96']")
    assert len(config.prefixes) == 2


# -- did you mean --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ('[dns]\nupstrems = ["127.0.0.1:53"]', "dns.upstrems", "upstreams"),
        ("prefix = ['64:ff9b::/96']", "prefix", "prefixes"),
        ("[dns64]\nexcludes = []", "dns64.excludes", "exclude"),
        (
            "[relay]\nports = [{ port = 80, protocol = ['tcp'] }]",
            "relay.ports[0].protocol",
            "protocols",
        ),
        ("[logs]\nlevel = 'debug'", "logs", "log"),
    ],
)
def test_a_misspelt_key_gets_a_suggestion(text: str, path: str, suggestion: str) -> None:
    error = config_error(text)
    assert error.path == path
    assert error.problem.startswith(f"unknown key, did you mean {suggestion!r}? (expected one of: ")


def test_no_suggestion_for_a_key_like_none_of_them() -> None:
    error = config_error("[dns]\nzzzzzz = 1")
    assert error.problem.startswith("unknown key (expected one of: ")
    assert "did you mean" not in error.problem


# -- errors in values from flags name the flag ---------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "start"),
    [
        ({"listen": ("nonsense",)}, "--listen (dns.listen[0]): 'nonsense' is not an address"),
        ({"upstreams": ("192.0.2.1", "1.2.3.4:99999")}, "--upstream (dns.upstreams[1]): "),
        ({"prefixes": ("10.0.0.0/8",)}, "--prefix (prefixes[0]): '10.0.0.0/8' is not an IPv6"),
        ({"prefixes": ("::ffff:0:0/96",)}, "--prefix (prefixes[0]): ::ffff:0:0/96 overlaps"),
        ({"maps": ("x",)}, "--map (relay.maps[0]): 'x': write LISTEN=TARGET"),
        (
            {"relay_ports": (80, 70000)},
            "--relay-port/--port (relay.ports[1]): 70000 is not a port number",
        ),
    ],
)
def test_flag_errors_name_the_flag_and_the_key(flags: dict[str, object], start: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides_from(flags))
    assert str(info.value).startswith(start), str(info.value)


def test_file_errors_keep_the_key_when_other_flags_are_given(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[dns]\nlisten = ['nonsense']\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), overrides_from({"upstreams": ("192.0.2.1",)}))
    assert str(info.value).startswith("dns.listen[0]: 'nonsense' is not an address")
    # the flag replaces the file's bad value entirely
    config = load_config(str(path), overrides_from({"listen": ("127.0.0.1:5300",)}))
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:5300"]
