"""Relay benchmark: iperf3 throughput, wrk connections/s, memory per idle connection.

Everything runs over loopback in one go, port-map style: each relay listens on
[::1]:P and connects to 127.0.0.1:Q, exactly what an IPv6-only client reaching
an IPv4-only service does, minus the wire.  Compared side by side:

- ``direct``: the client talks to 127.0.0.1:Q itself (the ceiling);
- ``totd-faith (splice|auto|copy)``: ``totd-faith relay`` with one map and
  relay.splice = on (splice from the first byte), auto (copy, then splice after
  128 KiB per direction; the default) or off (uvloop transports);
- ``6tunnel``: ``6tunnel -d -6 -4 -l ::1 P 127.0.0.1 Q``;
- ``socat``: ``socat TCP6-LISTEN:P,bind=[::1],fork,reuseaddr TCP4:127.0.0.1:Q``.

Throughput: ``iperf3 -c HOST -p P -t SECONDS -J`` against ``iperf3 -s``
(received bits/s).  Connection rate: ``wrk -t1 -c50 -d SECONDS -H 'Connection:
close'`` against nginx returning a 2-byte body.  Memory: N idle connections
through the relay to a backend that never accepts (they wait in its accept
queue), relay RSS before and after, divided by N.

    python tests/bench/bench_relay.py [--seconds 5] [--idle 2000]

Not collected by pytest.  Needs iperf3, wrk, nginx, 6tunnel, socat (Debian).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host} port {port}") from None
            time.sleep(0.02)


@contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


#: Source tree of the ``baseline (...)`` paths (--baseline), for A/B runs in one process tree.
BASELINE: list[str] = []


def relay_argv(kind: str, listen: int, target: int, tmp: Path) -> list[str] | None:
    if kind.startswith(("totd-faith", "baseline")):
        options = kind.split("(")[1].rstrip(")").split(", ")
        engine = {"splice": "on", "auto": "auto", "copy": "off"}[options[0]]
        workers = int(options[1].split()[0]) if len(options) > 1 else 1
        config = tmp / f"relay-{engine}-{workers}-{listen}.toml"
        config.write_text(
            "[log]\nconnections = false\n"
            f"[service]\nworkers = {workers}\n"
            f'[relay]\nsplice = "{engine}"\nmax_connections = 100000\n'
            "max_connections_per_client = 100000\n"
            f'maps = ["[::1]:{listen}=127.0.0.1:{target}"]\n'
        )
        argv = [sys.executable, "-m", "totd_faith", "relay", "-c", str(config)]
        if kind.startswith("baseline"):
            # Run the other tree's package: python -c puts nothing of ours on sys.path.
            code = f"import sys; sys.path.insert(0, {BASELINE[0]!r}); import runpy; "
            code += "runpy.run_module('totd_faith', run_name='__main__')"
            argv = [sys.executable, "-c", code, "relay", "-c", str(config)]
        return argv
    if kind == "6tunnel":
        return ["6tunnel", "-d", "-6", "-4", "-l", "::1", str(listen), "127.0.0.1", str(target)]
    if kind == "socat":
        return [
            "socat",
            f"TCP6-LISTEN:{listen},bind=[::1],fork,reuseaddr,backlog=4096",
            f"TCP4:127.0.0.1:{target}",
        ]
    return None  # direct


def iperf(host: str, port: int, seconds: int) -> float:
    """Received Gbit/s of one ``iperf3 -c`` run."""
    out = subprocess.run(
        ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    data = json.loads(out.stdout)
    if "error" in data:
        raise RuntimeError(data["error"])
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


def wrk(url: str, seconds: int) -> tuple[float, int, int]:
    out = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", "-H", "Connection: close", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = sum(int(g) for g in errors.groups()) if errors else 0
    bad += int(non2xx.group(1)) if non2xx else 0
    done = re.search(r"(\d+) requests in", out)
    return (float(rate.group(1)) if rate else 0.0), bad, int(done.group(1)) if done else 0


def cpu_seconds(pid: int) -> float:
    """CPU of ``pid``, its reaped children (6tunnel and socat fork) and its live children
    (the worker processes of ``--workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            cfields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(cfields[11]) + int(cfields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def accept_queue(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    ).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def idle_memory(engine: str, count: int, tmp: Path) -> tuple[float, int]:
    """KiB of relay RSS per idle relayed connection, and how many were open."""
    backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    backend.bind(("127.0.0.1", 0))
    backend.listen(count + 100)  # never accepted: the connections wait in the queue
    target = backend.getsockname()[1]
    listen = free_port("::1")
    argv = relay_argv(f"totd-faith ({engine})", listen, target, tmp)
    assert argv is not None
    clients: list[socket.socket] = []
    try:
        with process(argv, tmp / f"idle-{engine}.log") as proc:
            wait_tcp("::1", listen)
            # Warm up: let the relay allocate its per-process structures first.
            warm = [socket.create_connection(("::1", listen)) for _ in range(50)]
            deadline = time.monotonic() + 10
            while accept_queue(target) < 51 and time.monotonic() < deadline:
                time.sleep(0.05)
            before = rss_kib(proc.pid)
            for _ in range(count):
                clients.append(socket.create_connection(("::1", listen)))
            deadline = time.monotonic() + 30
            while accept_queue(target) < count + 51 and time.monotonic() < deadline:
                time.sleep(0.05)
            opened = accept_queue(target) - 51
            time.sleep(0.5)  # let the relay finish its bookkeeping for the last ones
            after = rss_kib(proc.pid)
            for sock in warm:
                sock.close()
    finally:
        for sock in clients:
            sock.close()
        backend.close()
    return (after - before) / max(opened, 1), opened


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each iperf3/wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--idle", type=int, default=2000, help="idle connections for memory")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="subset of: direct, 'totd-faith (splice)', 'totd-faith (auto)', "
        "'totd-faith (copy)', 6tunnel, socat (and 'baseline (auto)' etc. with --baseline)",
    )
    parser.add_argument(
        "--conn-only", action="store_true", help="skip iperf3: measure connections/s only"
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="source tree (e.g. a git worktree of an older commit) run as 'baseline (...)' paths",
    )
    args = parser.parse_args()
    if args.baseline:
        BASELINE.append(str(Path(args.baseline).resolve()))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for tool in ("iperf3", "wrk", "nginx", "6tunnel", "socat", "ss"):
        if shutil.which(tool) is None:
            print(f"missing {tool} (apt install {tool})", file=sys.stderr)
            return 1
    kinds = args.only or [
        "direct",
        "totd-faith (splice)",
        "totd-faith (auto)",
        "totd-faith (copy)",
        "totd-faith (auto, 2 workers)",
        "6tunnel",
        "socat",
    ]
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    tmp.chmod(0o755)
    iperf_port, nginx_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port))
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    gbps: dict[str, list[float]] = {kind: [] for kind in kinds}
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    errors: dict[str, int] = dict.fromkeys(kinds, 0)
    cpu_per_conn: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu_per_gb: dict[str, list[float]] = {kind: [] for kind in kinds}
    with ExitStack() as stack:
        stack.enter_context(
            process(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(iperf_port)], tmp / "iperf3.log")
        )
        stack.enter_context(
            process(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], tmp / "nginx.log")
        )
        wait_tcp("127.0.0.1", nginx_port)
        wait_tcp("127.0.0.1", iperf_port)
        targets: dict[str, tuple[str, int, str]] = {}
        http_pids: dict[str, int] = {}
        iperf_pids: dict[str, int] = {}
        for kind in kinds:
            p_iperf, p_http = free_port("::1"), free_port("::1")
            argv_a = relay_argv(kind, p_iperf, iperf_port, tmp)
            argv_b = relay_argv(kind, p_http, nginx_port, tmp)
            if argv_a is None or argv_b is None:
                targets[kind] = ("127.0.0.1", iperf_port, f"http://127.0.0.1:{nginx_port}/")
                continue
            iperf_pids[kind] = stack.enter_context(process(argv_a, tmp / f"{kind}-a.log")).pid
            http_pids[kind] = stack.enter_context(process(argv_b, tmp / f"{kind}-b.log")).pid
            wait_tcp("::1", p_iperf)
            wait_tcp("::1", p_http)
            targets[kind] = ("::1", p_iperf, f"http://[::1]:{p_http}/")
        for round_ in range(args.rounds):
            for kind in kinds:
                host, port, url = targets[kind]
                ipid = iperf_pids.get(kind)
                cpu0 = cpu_seconds(ipid) if ipid else 0.0
                gbps[kind].append(0.0 if args.conn_only else iperf(host, port, args.seconds))
                if ipid and not args.conn_only:
                    gigabytes = gbps[kind][-1] * args.seconds / 8
                    cpu_per_gb[kind].append((cpu_seconds(ipid) - cpu0) / max(gigabytes, 1e-9))
                pid = http_pids.get(kind)
                cpu0 = cpu_seconds(pid) if pid else 0.0
                rate, bad, done = wrk(url, args.seconds)
                cpu = (cpu_seconds(pid) - cpu0) / max(done, 1) * 1e6 if pid else 0.0
                rates[kind].append(rate)
                errors[kind] += bad
                cpu_per_conn[kind].append(cpu)
                print(
                    f"  round {round_ + 1} {kind:22s} {gbps[kind][-1]:7.2f} Gbit/s "
                    f"{rate:9.0f} conn/s ({bad} errors), relay CPU {cpu:.0f} us/conn"
                    + (f", {cpu_per_gb[kind][-1]:.2f} s/GB" if cpu_per_gb[kind] else ""),
                    flush=True,
                )
    print()
    print(f"medians of {args.rounds} interleaved rounds of {args.seconds} s each:")
    print(
        "| path | iperf3 Gbit/s | relay CPU s/GB | wrk conn/s (Connection: close) "
        "| relay CPU us/conn | wrk errors |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        cpu_text = f"{median(cpu_per_conn[kind]):.0f}" if kind in http_pids else "-"
        gb_text = f"{median(cpu_per_gb[kind]):.2f}" if cpu_per_gb[kind] else "-"
        print(
            f"| {kind} | {median(gbps[kind]):.2f} | {gb_text} | {median(rates[kind]):.0f} "
            f"| {cpu_text} | {errors[kind]} |"
        )
    by = {kind: (median(gbps[kind]), median(rates[kind])) for kind in kinds}
    for ours in [kind for kind in kinds if kind.startswith(("totd-faith", "baseline"))]:
        if args.conn_only and "6tunnel" in by:
            r = by[ours][1]
            print(f"{ours}: conn/s {r / max(by['6tunnel'][1], 1):.2f}x 6tunnel (target >= 1.5)")
        elif ours in by and "6tunnel" in by and "direct" in by:
            g, r = by[ours]
            print(
                f"{ours}: throughput {g / by['6tunnel'][0]:.2f}x 6tunnel (target >= 2), "
                f"{g / by['direct'][0]:.2f}x direct (target >= 0.6); "
                f"conn/s {r / max(by['6tunnel'][1], 1):.2f}x 6tunnel (target >= 1.5)"
            )
    if args.idle:
        for engine in ("splice", "auto", "copy"):
            per, opened = idle_memory(engine, args.idle, tmp)
            print(
                f"memory per idle relayed connection ({engine}): {per:.1f} KiB "
                f"over {opened} connections (target <= 16 KiB)"
            )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
