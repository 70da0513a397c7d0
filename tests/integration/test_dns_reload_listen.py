"""SIGHUP cannot move the DNS listeners: the reload log and the loop check use
the addresses really served, not the new dns.listen (found by QA)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from tests.conftest import free_port
from tests.integration.dns_support import (
    FakeUpstream,
    a_query,
    make_config,
    replies,
    run,
    start_service,
    udp_exchange,
    udp_query,
)
from totd_faith.endpoints import parse_endpoint
from totd_faith.errors import OperatorError


def test_reload_with_new_listen_addresses_logs_the_addresses_still_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint])
        (old,) = config.dns.listen
        new = parse_endpoint(f"127.0.0.1:{free_port()}")
        service, endpoint = await start_service(config)
        try:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="totd_faith.dns"):
                await service.reload(replace(config, dns=replace(config.dns, listen=(new,))))
            messages = [r.getMessage() for r in caplog.records]
            (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert "take effect only after a restart" in warning
            assert f"dns.listen is now {new}; still listening on {old}" in warning
            (summary,) = [m for m in messages if "reloaded" in m]
            assert f"reloaded; still listening on {old} (udp+tcp)" in summary
            assert str(new) not in summary
            # What the log says is what happens: the old address answers, the new one not.
            answer = await udp_query(endpoint, a_query("a.example."))
            assert answer.answer[0][0].address == "192.0.2.1"
            assert await udp_exchange(new, a_query("a.example.").to_wire(), 0.3) is None
            # A second reload of the same file still warns: nothing was re-bound.
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="totd_faith.dns"):
                await service.reload(replace(config, dns=replace(config.dns, listen=(new,))))
            assert any("after a restart" in r.getMessage() for r in caplog.records)
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_reload_refuses_an_upstream_that_is_a_listener_still_in_use() -> None:
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint])
        (old,) = config.dns.listen
        new = parse_endpoint(f"127.0.0.1:{free_port()}")
        service, endpoint = await start_service(config)
        try:
            looping = replace(config, dns=replace(config.dns, listen=(new,), upstreams=(old,)))
            with pytest.raises(OperatorError, match=f"upstream {old} is also a listen address"):
                await service.reload(looping)
            # The old configuration stays in force.
            answer = await udp_query(endpoint, a_query("a.example."))
            assert answer.answer[0][0].address == "192.0.2.1"
        finally:
            await service.stop(0)
            upstream.close()

    run(main())
