"""service.user: the checks made before binding, and where runtime drops privileges.

Nothing here changes the test process's own user: the switch itself is tested
through the real commands in tests/integration/test_privileges.py.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal

import pytest

from totd_faith import config as config_module
from totd_faith import privileges, runtime, sdnotify
from totd_faith.config import Config
from totd_faith.errors import OperatorError

NOBODY = pwd.getpwnam("nobody")


def test_empty_user_means_stay() -> None:
    assert privileges.target_user("") is None
    assert privileges.drop_privileges("") == "not dropping privileges (service.user is empty)"


def test_unknown_user_names_the_setting() -> None:
    with pytest.raises(OperatorError, match=r"^service.user: no such user 'no-such-user-tf' \("):
        privileges.target_user("no-such-user-tf")


def test_root_may_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    entry = privileges.target_user("nobody")
    assert entry is not None and entry.pw_uid == NOBODY.pw_uid


def test_another_user_cannot_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    other = NOBODY.pw_uid - 1 if NOBODY.pw_uid > 1 else NOBODY.pw_uid + 1
    monkeypatch.setattr(os, "geteuid", lambda: other)
    with pytest.raises(OperatorError) as caught:
        privileges.target_user("nobody")
    assert str(caught.value) == (
        f"service.user = 'nobody' needs totd-faith to start as root (it runs as uid {other}); "
        "start it as root or leave service.user empty"
    )


def test_already_that_user_is_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: NOBODY.pw_uid)
    assert privileges.target_user("nobody") is None
    assert privileges.drop_privileges("nobody") == "already running as nobody, nothing to drop"


class _Recorder:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    async def start(self) -> None:
        self.events.append(f"start {self.name}")

    async def reload(self, config: Config) -> None:
        self.events.append(f"reload {self.name}")

    async def stop(self, drain_timeout: float) -> None:
        self.events.append(f"stop {self.name}")


def _run_recorded(
    monkeypatch: pytest.MonkeyPatch, config: Config, keep_net_admin: bool
) -> list[str]:
    events: list[str] = []

    def drop(user: str, *, keep_net_admin: bool = False) -> str:
        events.append(f"drop {user} keep_net_admin={keep_net_admin}")
        return f"dropped to {user}"

    monkeypatch.setattr(privileges, "drop_privileges", drop)
    monkeypatch.setattr(sdnotify, "ready", lambda *a: events.append("READY=1") or False)

    def ready() -> None:
        events.append("ready callback")
        os.kill(os.getpid(), signal.SIGTERM)  # handled by serve_until_signalled: stop

    services = [_Recorder("dns", events), _Recorder("relay", events)]
    loop = runtime.new_event_loop()
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                runtime.serve_until_signalled(
                    services, config, ready=ready, keep_net_admin=keep_net_admin
                ),
                10,
            )
        )
    finally:
        loop.close()
    return events


def test_drop_comes_after_every_start_and_before_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_module.from_table({"service": {"user": "nobody", "drain_timeout": 0}})
    events = _run_recorded(monkeypatch, config, keep_net_admin=True)
    assert events == [
        "start dns",
        "start relay",
        "drop nobody keep_net_admin=True",
        "ready callback",
        "READY=1",
        "stop relay",
        "stop dns",
    ]


def test_no_user_no_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_module.from_table({"service": {"drain_timeout": 0}})
    events = _run_recorded(monkeypatch, config, keep_net_admin=False)
    assert not any(event.startswith("drop") for event in events), events


@pytest.mark.parametrize(
    ("relay", "expected"),
    [
        ({}, False),
        ({"manage_routes": True}, True),
        ({"all_ports": True}, True),
    ],
)
def test_changes_host_follows_the_relay_settings(relay: dict[str, bool], expected: bool) -> None:
    assert runtime.changes_host(config_module.from_table({"relay": relay})) is expected


def test_run_workers_refuses_a_wrong_user_before_building(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_module.from_table({"service": {"user": "no-such-user-tf"}})

    def build(cfg: Config, worker: int) -> list[runtime.Service]:
        raise AssertionError("services were built (and would bind) despite a wrong service.user")

    with pytest.raises(OperatorError, match="no such user 'no-such-user-tf'"):
        runtime.run_workers(1, build, config)
