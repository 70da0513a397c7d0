"""Process runtime: event loop, signals, reload, graceful stop, logging set-up.

Every server command (``dns``, ``relay``, ``serve``) builds a list of services
from one :class:`~totd_faith.config.Config` and hands them to :func:`run`.
A service is anything with ``start``, ``reload`` and ``stop`` coroutines.

SIGTERM/SIGINT: stop accepting, let work drain up to ``service.drain_timeout``,
exit 0.  SIGHUP: load the configuration again; if it is invalid, log why and
keep the old one.  ``service.user``: once every service has bound its sockets,
and before systemd hears READY=1, the process drops root (see
:func:`serve_until_signalled`); this is the only place that does it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from totd_faith import hostexec, hostsetup, privileges, sdnotify
from totd_faith.config import Config, LogConfig
from totd_faith.errors import TotdFaithError

log = logging.getLogger("totd_faith")


class Service(Protocol):
    """What :func:`run` needs from the DNS proxy, the relay and friends."""

    name: str

    async def start(self) -> None:
        """Bind sockets and begin serving; raise TotdFaithError on operator errors."""

    async def reload(self, config: Config) -> None:
        """Adopt ``config`` without dropping established work."""

    async def stop(self, drain_timeout: float) -> None:
        """Stop accepting, drain up to ``drain_timeout`` seconds, then close."""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        return json.dumps(entry, default=str)


def setup_logging(config: LogConfig) -> None:
    """Log to stderr: plain lines journald keeps, or JSON for log shippers."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("totd_faith")
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    root.propagate = False


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is a dependency on Linux), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the platform
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def serve_until_signalled(
    services: Sequence[Service],
    config: Config,
    reload_config: Callable[[], Config] | None = None,
    ready: Callable[[], None] | None = None,
    *,
    keep_net_admin: bool = False,
) -> None:
    """Start ``services``, drop privileges, handle signals, stop them gracefully.

    ``keep_net_admin``: keep CAP_NET_ADMIN when dropping to ``service.user``
    (see :func:`changes_host`).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hup = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    started: list[Service] = []
    serving = False
    try:
        for service in services:
            await service.start()
            started.append(service)
        # Every listener is bound now; nothing after this point needs root (upstream
        # and backend sockets are opened later, as the unprivileged user).  Before
        # ready(): a worker reports itself ready to its supervisor from there.
        _drop_privileges(config, keep_net_admin)
        if ready is not None:
            ready()
        sdnotify.ready(", ".join(s.name for s in started))
        serving = True
        while not stop.is_set():
            stop_wait = asyncio.ensure_future(stop.wait())
            hup_wait = asyncio.ensure_future(hup.wait())
            await asyncio.wait({stop_wait, hup_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            hup_wait.cancel()
            if hup.is_set() and not stop.is_set():
                hup.clear()
                sdnotify.reloading()
                config = await _reload(started, config, reload_config)
                sdnotify.ready()
    finally:
        if serving:
            sdnotify.stopping()
            log.info("stopping (draining for up to %.0f s)", config.service.drain_timeout)
            drain = config.service.drain_timeout
        else:
            # A start-up failure (port in use, no upstream, a user to drop to that
            # does not exist ...): the CLI prints one "Error:" line.  The process never
            # became ready, so the services it did start close at once, unannounced.
            drain = 0.0
            if started:
                log.debug("start-up failed: closing %s", ", ".join(s.name for s in started))
        await asyncio.gather(
            *(s.stop(drain) for s in reversed(started)),
            return_exceptions=True,
        )
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _drop_privileges(config: Config, keep_net_admin: bool) -> None:
    if config.service.user:
        log.info(
            "%s", privileges.drop_privileges(config.service.user, keep_net_admin=keep_net_admin)
        )


def changes_host(config: Config) -> bool:
    """Whether the relay changes the host for ``config`` (AnyIP routes, the tproxy table).

    Such a relay keeps CAP_NET_ADMIN after dropping to ``service.user``: to undo
    the changes at stop and on SIGHUP, and, in all-ports mode, to open the
    transparent sockets of new UDP sessions.
    """
    return config.relay.manage_routes or config.relay.all_ports


async def _reload(
    services: Sequence[Service], config: Config, reload_config: Callable[[], Config] | None
) -> Config:
    if reload_config is None:
        log.info("SIGHUP: nothing to reload (no configuration file)")
        return config
    try:
        new = reload_config()
    except TotdFaithError as exc:
        log.error("SIGHUP: new configuration rejected, keeping the old one: %s", exc)
        return config
    for service in services:
        try:
            await service.reload(new)
        except TotdFaithError as exc:
            log.error("SIGHUP: %s could not adopt the new configuration: %s", service.name, exc)
    log.info("SIGHUP: configuration reloaded")
    return new


def run(
    services: Sequence[Service],
    config: Config,
    reload_config: Callable[[], Config] | None = None,
    ready: Callable[[], None] | None = None,
    *,
    keep_net_admin: bool = False,
) -> None:
    """Run ``services`` in the foreground until SIGTERM/SIGINT."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            serve_until_signalled(
                services, config, reload_config, ready, keep_net_admin=keep_net_admin
            )
        )
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run_workers(
    workers: int,
    build: Callable[[Config, int], Sequence[Service]],
    config: Config,
    reload_config: Callable[[], Config] | None = None,
    ready: Callable[[], None] | None = None,
    *,
    manage_host: bool = False,
) -> int:
    """Run ``workers`` processes, each with its own services on shared ports.

    Each worker binds its own sockets with SO_REUSEPORT (the services do that
    when ``service.workers > 1``), so the kernel spreads UDP datagrams and TCP
    connections over the workers and every core gets used.  This process
    supervises: it forwards SIGTERM/SIGINT/SIGHUP to the workers, tells systemd
    it is ready once every worker is serving, and exits 0 when they all exited
    0.  A worker that dies stops the whole service (exit 1), so a supervisor
    such as systemd can restart it cleanly.

    ``manage_host``: the command runs the relay, which changes the host when
    ``relay.manage_routes`` or ``relay.all_ports`` asks for it (see
    :func:`changes_host`); it then keeps CAP_NET_ADMIN after dropping privileges.
    """
    # A wrong service.user (no such user, not root) stops the start before anything is
    # bound or changed on the host, as one "Error: ..." line from the CLI.
    privileges.target_user(config.service.user)
    keep_net_admin = manage_host and changes_host(config)
    if workers <= 1:
        run(build(config, 0), config, reload_config, ready, keep_net_admin=keep_net_admin)
        return 0
    # With several workers the supervisor owns the host set-up (AnyIP routes for
    # manage_routes, the tproxy table for all-ports): the workers then find each step
    # already in place, never remove it, and the first worker to stop cannot pull the
    # table from under the others while they drain.
    #
    # service.user: each worker drops privileges itself once its sockets are bound (in
    # serve_until_signalled, as a single process does).  The supervisor stays root: it
    # must undo the host set-up when it exits (ip/nft need root or CAP_NET_ADMIN) and
    # signal workers that may not have dropped yet, and it serves no network traffic
    # -- it only forks, forwards signals, reads its workers' ready pipe and waits.
    applied = hostexec.apply(supervisor_steps(config)) if manage_host else []
    try:
        return _fork_workers(workers, build, config, reload_config, ready, keep_net_admin)
    finally:
        hostexec.undo(applied)


def supervisor_steps(config: Config) -> list[hostsetup.Step]:
    """The host steps the relay applies at start, for the supervisor to own."""
    relay = config.relay
    steps: list[hostsetup.Step] = []
    if relay.manage_routes:
        steps += hostsetup.anyip_steps(config.prefixes)
    if relay.all_ports:
        steps += hostsetup.tproxy_steps(config.prefixes, relay.tproxy_port)
    return steps


def _fork_workers(
    workers: int,
    build: Callable[[Config, int], Sequence[Service]],
    config: Config,
    reload_config: Callable[[], Config] | None,
    ready: Callable[[], None] | None,
    keep_net_admin: bool,
) -> int:
    import os

    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            os.close(ready_r)
            status = 0

            def tell_ready() -> None:
                if ready is not None:
                    ready()
                os.write(ready_w, b"r")

            try:
                os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor talks to systemd
                log.info("worker %d (pid %d) starting", index, os.getpid())
                run(
                    build(config, index),
                    config,
                    reload_config,
                    ready=tell_ready,
                    keep_net_admin=keep_net_admin,
                )
            except TotdFaithError as exc:
                log.error("worker %d: %s", index, exc)
                status = 1
            except BaseException:  # noqa: B036 - a worker must never fall back into the parent's code
                log.exception("worker %d failed", index)
                status = 1
            finally:
                os._exit(status)
        children[pid] = index
    os.close(ready_w)
    return _supervise(children, ready_r, workers)


def _supervise(children: dict[int, int], ready_fd: int, workers: int) -> int:
    import os

    def forward(signum: int, _frame: object) -> None:
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if signum != signal.SIGHUP:
            stopping.append(signum)

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    readies = 0
    os.set_blocking(ready_fd, False)
    failed = False
    while children:
        try:
            readies += len(os.read(ready_fd, 64))
        except BlockingIOError:
            pass
        if readies >= workers:
            sdnotify.ready(f"{workers} workers serving")
            readies = -(1 << 30)  # tell only once
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not stopping:
            failed = True
            log.error(
                "worker %d (pid %d) exited with status %d; stopping the others", index, pid, code
            )
            forward(signal.SIGTERM, None)
    os.close(ready_fd)
    return 1 if failed else 0
