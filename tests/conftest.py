"""Shared fixtures: real NSD/Unbound on free loopback ports, free ports, root and netns skips.

API (fixed in notes/HELPERS.md, other tests code against it):

- ``nsd`` fixture: a factory ``nsd(zones: dict[str, str]) -> Endpoint`` that starts a real
  NSD on 127.0.0.1 serving the given zone texts ``{origin: master-file text}``; every server
  it started stops when the test ends.
- ``unbound`` fixture: a factory ``unbound(server_options="", clauses="") -> Endpoint``
  (see tests/support/unbound.py, e.g. with ``dns64_options``).
- ``topology`` fixture: a :class:`tests.netns.Topology`, skipped with a reason when network
  namespaces are unavailable.
- ``free_port(host="127.0.0.1") -> int``: a port free for TCP and UDP.
- ``require_root()``: skip the calling test with a clear reason when not root.

Markers ``unit``, ``integration`` and ``e2e`` are added from each test's directory, and
``netns`` to the end-to-end tests, so ``pytest -m "not e2e"`` selects the quick tiers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.netns import Topology, skip_unless_netns
from tests.support.nsd import NsdServer, start_nsd
from tests.support.ports import free_port
from tests.support.unbound import UnboundServer, start_unbound
from totd_faith.endpoints import Endpoint

__all__ = ["free_port", "require_root"]

NsdFactory = Callable[[dict[str, str]], Endpoint]
UnboundFactory = Callable[..., Endpoint]

_TIERS = ("unit", "integration", "e2e")

# Developers and CI share two busy cores: a wall-clock deadline per example would make the
# property tests flaky without finding bugs.  print_blob lets a CI failure be replayed.
settings.register_profile(
    "totd-faith",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "totd-faith"))


def require_root() -> None:
    """Skip the current test unless it runs as root (namespaces, AnyIP routes, nftables)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, routes or nftables); run as root or in CI")


def pytest_configure(config: pytest.Config) -> None:
    for tier in _TIERS:
        config.addinivalue_line("markers", f"{tier}: tests under tests/{tier}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
        if "e2e" in parts:
            item.add_marker(pytest.mark.netns)


@pytest.fixture
def nsd(tmp_path: Path) -> Iterator[NsdFactory]:
    """Factory fixture: ``nsd({"example.": ZONE_TEXT}) -> Endpoint`` of a running NSD."""
    servers: list[NsdServer] = []

    def start(zones: dict[str, str]) -> Endpoint:
        server = start_nsd(zones, tmp_path / f"nsd{len(servers)}")
        servers.append(server)
        return server.endpoint

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def unbound(tmp_path: Path) -> Iterator[UnboundFactory]:
    """Factory fixture: ``unbound(server_options, clauses) -> Endpoint`` of a running Unbound."""
    servers: list[UnboundServer] = []

    def start(server_options: str = "", clauses: str = "") -> Endpoint:
        server = start_unbound(tmp_path / f"unbound{len(servers)}", server_options, clauses)
        servers.append(server)
        return server.endpoint

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A network-namespace topology removed at the end of the test (skips when not root)."""
    skip_unless_netns()
    with Topology() as topo:
        yield topo
