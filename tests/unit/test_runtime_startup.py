"""serve_until_signalled: a start-up failure is not announced as a stop or a drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from totd_faith import config as config_module
from totd_faith import runtime, sdnotify
from totd_faith.config import Config
from totd_faith.errors import OperatorError


class _Fake:
    def __init__(self, name: str, events: list[str], fail: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail = fail

    async def start(self) -> None:
        if self.fail:
            raise OperatorError(f"cannot listen on {self.name}: the address is already in use")
        self.events.append(f"start {self.name}")

    async def reload(self, config: Config) -> None:
        self.events.append(f"reload {self.name}")

    async def stop(self, drain_timeout: float) -> None:
        self.events.append(f"stop {self.name} drain={drain_timeout:g}")


def _serve(
    monkeypatch: pytest.MonkeyPatch, services: list[_Fake], events: list[str], ready: bool
) -> None:
    monkeypatch.setattr(sdnotify, "ready", lambda *a: events.append("READY=1") or False)
    monkeypatch.setattr(sdnotify, "stopping", lambda: events.append("STOPPING=1") or False)
    config = config_module.from_table({"service": {"drain_timeout": 7}})

    def signal_stop() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled by serve_until_signalled

    loop = runtime.new_event_loop()
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                runtime.serve_until_signalled(
                    services, config, ready=signal_stop if ready else None
                ),
                10,
            )
        )
    finally:
        loop.close()


def _stop_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "stopping" in r.getMessage()]


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failed_start_logs_no_stopping_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failing: int
) -> None:
    events: list[str] = []
    services = [_Fake("dns", events, fail=failing == 0), _Fake("relay", events, fail=failing == 1)]
    caplog.set_level(logging.DEBUG, logger="totd_faith")
    monkeypatch.setattr(logging.getLogger("totd_faith"), "propagate", True)  # to caplog
    with pytest.raises(OperatorError, match="already in use"):
        _serve(monkeypatch, services, events, ready=False)
    assert _stop_lines(caplog) == []
    assert "STOPPING=1" not in events and "READY=1" not in events
    # What did start is still closed, at once: nothing was ever served.
    assert events == ([] if failing == 0 else ["start dns", "stop dns drain=0"])


def test_a_served_stop_announces_the_drain(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    caplog.set_level(logging.INFO, logger="totd_faith")
    monkeypatch.setattr(logging.getLogger("totd_faith"), "propagate", True)  # to caplog
    _serve(monkeypatch, [_Fake("dns", events), _Fake("relay", events)], events, ready=True)
    assert _stop_lines(caplog) == ["stopping (draining for up to 7 s)"]
    assert events == [
        "start dns",
        "start relay",
        "READY=1",
        "STOPPING=1",
        "stop relay drain=7",
        "stop dns drain=7",
    ]
