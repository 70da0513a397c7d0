"""The effective-settings line says what an empty access list means (QA: "allow ;")."""

from __future__ import annotations

import logging

import pytest

from tests.integration.dns_support import (
    FakeUpstream,
    a_query,
    make_config,
    replies,
    run,
    start_service,
    udp_query,
)
from totd_faith.cli.relay_cmd import _describe
from totd_faith.config import load_text


def _settings_line(caplog: pytest.LogCaptureFixture) -> str:
    (line,) = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    return line


def test_an_empty_allow_list_is_logged_as_nobody_and_refuses_everyone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint], allow=[])
        with caplog.at_level(logging.INFO, logger="totd_faith.dns"):
            service, endpoint = await start_service(config)
        try:
            line = _settings_line(caplog)
            assert "; allow nobody (every client gets REFUSED); dns64 for 0.0.0.0/0, ::/0," in line
            assert "allow ;" not in line
            # What the line says is what happens.
            assert (await udp_query(endpoint, a_query("a.example."))).rcode() == 5  # REFUSED
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_empty_dns64_clients_are_logged_as_nobody(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint])
        config = load_text(
            f'[dns]\nlisten = ["{config.dns.listen[0]}"]\nupstreams = ["{upstream.endpoint}"]\n'
            "[dns64]\nclients = []\n"
        )
        with caplog.at_level(logging.INFO, logger="totd_faith.dns"):
            service, _ = await start_service(config)
        try:
            assert "; dns64 for nobody (no client gets synthesis), mapped " in _settings_line(
                caplog
            )
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_the_relay_summary_says_nobody_for_empty_clients() -> None:
    config = load_text("[relay]\nclients = []\nports = [80]\n")
    assert "; clients nobody (every connection is refused);" in _describe(config)
    assert "; clients 127.0.0.0/8, " in _describe(load_text("[relay]\nports = [80]\n"))
