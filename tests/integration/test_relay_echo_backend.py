"""The TCP echo behind the relay in the namespace tests must keep up with a slow reader.

tests/e2e/test_classic_scenario.py::test_echo_over_tcp_and_udp stalled about once in 20
runs on a busy machine.  Caught in the act (socket queues read with ``ss`` in all three
namespaces): the echo, ``socat TCP4-LISTEN:7,fork PIPE``, was blocked in ``pipe_write``
with 505,328 bytes unread in its socket, while the relay had nothing unread and nothing
unsent on either socket and the client had received everything socat had sent.  socat
echoes through a pipe of its own with blocking writes; when it cannot send (the reader
is behind) it keeps reading, the pipe fills, and a write that needs more room than is
left blocks socat for good, since only socat drains that pipe.

This runs the echo the site starts (classic_net.tcp_echo_argv) over loopback with the
traffic that stalled it (relay_peers.slow_reader_echo): with socat PIPE it stops after
at 150-300 kB every time.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.e2e.classic_net import tcp_echo_argv
from tests.integration.relay_peers import slow_reader_echo
from tests.integration.relay_process import Started, start
from tests.netns import wait_tcp


def test_classic_site_tcp_echo_keeps_up_with_a_slow_reader(
    tmp_path: Path, processes: list[Started]
) -> None:
    port = free_port()
    # Readiness by connecting: the echo may print nothing (socat did not).
    processes.append(start(tcp_echo_argv("127.0.0.1", port), tmp_path / "echo.out", ""))
    wait_tcp(None, "127.0.0.1", port)
    result = slow_reader_echo("127.0.0.1", port)
    assert result == {"sent": ["all"], "received": 600_000, "ok": True}, result
