"""Fixtures shared by the loopback relay tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.relay_process import Started


@pytest.fixture
def processes() -> Iterator[list[Started]]:
    """Processes a test starts; stopped in reverse order at its end."""
    started: list[Started] = []
    yield started
    for proc in reversed(started):
        proc.stop()
