"""DNS64 benchmark: totd-faith dns vs Unbound (dns64 iterator) with dnsperf, one run.

Both servers sit in front of the same NSD serving ``bench.example.`` (100 hot
and 20,000 cold A-only names) and synthesize into the same Network-Specific
Prefix.  Two query files, the same for both servers:

* hot:  100 A-only names asked for AAAA, repeated (cache hits after a warm-up);
* cold: 20,000 distinct A-only names asked for AAAA once each (every query is
  a miss: AAAA and A upstream, then synthesis).

Run as a script (pytest does not collect tests/bench)::

    python tests/bench/bench_dns.py [--duration 10] [--server-cpu 0 --client-cpu 1]

Unbound runs as the issue configures it -- ``num-threads: 1``, ``module-config:
"dns64 iterator"``, a stub zone to the NSD -- with Unbound's own defaults for
everything else but what loopback peers need (tests/support/unbound.py), so
with QNAME minimisation on (RFC 9156; Unbound's default, which sends a third
query per cold name here).  ``unbound-qmin-off`` is the same with
``qname-minimisation: no``: the fastest Unbound we know for this load, shown
beside it so the ratio can be read against both.

Hot rounds also run ``python-floor`` (floor_server.py): the "minimal uvloop
UDP cache in Python" that issue 3 measured at about 0.9x Unbound, a dict from
query bytes to answer bytes in front of ``unbound``.  It does no DNS work at
all, so it shows what any CPython server pays per datagram on this machine.

It prints a table (qps, p50/p99 latency from dnsperf -v per-query latencies)
and writes the raw dnsperf outputs under --workdir.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.dnsprobe import any_response, wait_dns  # noqa: E402
from tests.support.nsd import NsdServer, _zone_filename, nsd_config  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.process import Daemon  # noqa: E402
from tests.support.unbound import dns64_options, start_unbound  # noqa: E402
from totd_faith.endpoints import Endpoint, parse_endpoint  # noqa: E402

ZONE = "bench.example."
PREFIX = "2001:db8:64::/96"
#: The peers, by name: Unbound's server options beyond dns64_options.
#: tests/support/unbound.py turns QNAME minimisation off (integration tests
#: expect one upstream query per question); "unbound" restores Unbound's default.
UNBOUNDS = {
    "unbound": "qname-minimisation: yes",
    "unbound-qmin-off": "qname-minimisation: no",
}
SERVERS = ("totd-faith", *UNBOUNDS)
#: Hot load only: floor_server.py, a minimal uvloop UDP cache in front of "unbound".
FLOOR = "python-floor"
HOT = 100
DOC_NETS = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def _address(i: int) -> str:
    net = DOC_NETS[(i // 254) % 3]
    return str(net.network_address + 1 + i % 254)


#: A records per name of the truncated load: 100 make an A answer of about
#: 1.6 KB, more than the 1232-byte EDNS payload both resolvers offer upstream.
TC_RECORDS = 100


def zone_text(cold: int, truncated: int = 0) -> str:
    lines = [
        f"$ORIGIN {ZONE}",
        "$TTL 3600",
        "@ IN SOA ns.bench.example. hostmaster.bench.example. 1 3600 600 86400 300",
        "@ IN NS ns",
        "ns IN A 192.0.2.53",
    ]
    lines += [f"h{i} IN A {_address(i)}" for i in range(HOT)]
    lines += [f"c{i} IN A {_address(i)}" for i in range(cold)]
    for i in range(truncated):
        lines += [f"t{i} IN A {_address(j)}" for j in range(TC_RECORDS)]
    return "\n".join(lines) + "\n"


def write_query_files(workdir: Path, cold: int, truncated: int = 0) -> tuple[Path, Path, Path]:
    hot_file = workdir / "hot.txt"
    hot_file.write_text("".join(f"h{i}.{ZONE} AAAA\n" for i in range(HOT)))
    cold_file = workdir / "cold.txt"
    cold_file.write_text("".join(f"c{i}.{ZONE} AAAA\n" for i in range(cold)))
    tc_file = workdir / "truncated.txt"
    tc_file.write_text("".join(f"t{i}.{ZONE} AAAA\n" for i in range(truncated)))
    return hot_file, cold_file, tc_file


@dataclass
class Cpu:
    """A server's CPU time per query, in microseconds."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


@dataclass
class Result:
    server: str
    load: str
    sent: int
    completed: int
    qps: float
    p50_ms: float
    p99_ms: float
    rcodes: str


_LATENCY = re.compile(r"^> (\S+) \S+ \S+ ([0-9.]+)$", re.MULTILINE)


def parse_dnsperf(server: str, load: str, output: str) -> Result:
    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", output)
        if match is None:
            raise RuntimeError(f"dnsperf output has no {label!r}:\n{output[-2000:]}")
        return float(match.group(1))

    latencies = sorted(float(m.group(2)) for m in _LATENCY.finditer(output))
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    else:
        p50 = p99 = float("nan")
    rcodes = re.search(r"Response codes:\s+(.*)", output)
    return Result(
        server,
        load,
        int(number("Queries sent")),
        int(number("Queries completed")),
        number("Queries per second"),
        p50,
        p99,
        rcodes.group(1).strip() if rcodes else "",
    )


def taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None and shutil.which("taskset") else []


def dnsperf(
    endpoint: Endpoint,
    queries: Path,
    *,
    seconds: float,
    runs: int,
    outstanding: int,
    cpu: str | None,
    out: Path,
) -> str:
    argv = [
        *taskset(cpu),
        "dnsperf",
        "-s",
        str(endpoint.host),
        "-p",
        str(endpoint.port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        "-n",
        str(runs),
        "-q",
        str(outstanding),
        "-t",
        "5",
        "-v",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    text = " ".join(argv) + "\n" + result.stdout + result.stderr
    out.write_text(text)
    if result.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({result.returncode}):\n{text[-2000:]}")
    return text


def start_bench_nsd(zone: str, workdir: Path) -> NsdServer:
    """NSD as tests/support/nsd.py starts it, plus ``rrl-ratelimit: 0``.

    Debian's NSD has response rate limiting on by default (200 qps per source
    block): under benchmark load it answers with TC or drops, which would turn
    both resolvers' cold runs into TCP retries and timeouts.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / _zone_filename(ZONE)).write_text(zone)
    text = nsd_config({ZONE: zone}, workdir, "127.0.0.1", port)
    text = text.replace(
        "server:\n", "server:\n  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n", 1
    )
    conf = workdir / "nsd.conf"
    conf.write_text(text)
    binary = shutil.which("nsd") or "/usr/sbin/nsd"
    daemon = Daemon("nsd", [binary, "-d", "-c", str(conf)], workdir, logs=[workdir / "nsd.log"])
    endpoint = parse_endpoint(f"127.0.0.1:{port}")
    try:
        wait_dns(endpoint, ZONE, "SOA", check=any_response, timeout=60, daemon=daemon)
    except BaseException:
        daemon.stop()
        raise
    return NsdServer(endpoint, workdir, daemon)


def start_totd_faith(
    workdir: Path, upstream: Endpoint, cpu: str | None, workers: int = 1
) -> tuple[Endpoint, Daemon]:
    port = free_port()
    conf = workdir / "totd-faith.toml"
    conf.write_text(
        f'prefixes = ["{PREFIX}"]\n'
        f'[dns]\nlisten = ["127.0.0.1:{port}"]\nupstreams = ["{upstream}"]\n'
        '[log]\nlevel = "warning"\n'
    )
    argv = [*taskset(cpu), sys.executable, "-m", "totd_faith", "dns", "-c", str(conf)]
    if workers > 1:
        # SO_REUSEPORT worker processes (serve/dns --workers), all on the server CPU set.
        argv += ["--workers", str(workers)]
    run_dir = workdir / "totd-faith"
    run_dir.mkdir(exist_ok=True)
    daemon = Daemon("totd-faith", argv, run_dir)
    endpoint = parse_endpoint(f"127.0.0.1:{port}")
    wait_dns(endpoint, "ipv4only.arpa.", "AAAA", check=any_response, daemon=daemon)
    return endpoint, daemon


def start_floor(workdir: Path, upstream: Endpoint, cpu: str | None) -> tuple[Endpoint, Daemon]:
    """floor_server.py on a free port, forwarding its misses to ``upstream``."""
    port = free_port()
    script = Path(__file__).with_name("floor_server.py")
    argv = [*taskset(cpu), sys.executable, str(script), "--listen", str(port)]
    argv += ["--upstream", f"{upstream.host}:{upstream.port}"]
    run_dir = workdir / FLOOR
    run_dir.mkdir(exist_ok=True)
    daemon = Daemon(FLOOR, argv, run_dir)
    endpoint = parse_endpoint(f"127.0.0.1:{port}")
    wait_dns(endpoint, ZONE, "SOA", check=any_response, daemon=daemon)
    return endpoint, daemon


def pin(pid: int, cpu: str | None) -> None:
    if cpu is not None and shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpu, str(pid)], capture_output=True, check=False
        )


def warm(endpoint: Endpoint, hot_file: Path, cpu: str | None, workdir: Path, name: str) -> None:
    dnsperf(
        endpoint,
        hot_file,
        seconds=5,
        runs=2,
        outstanding=10,
        cpu=cpu,
        out=workdir / f"{name}-warmup.txt",
    )


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    if shutil.which("py-spy") is None:
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--format",
            "raw",
            "--rate",
            "400",
            "-d",
            str(int(seconds)),
            "-o",
            str(out),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its children (worker processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            child_user, child_system = process_cpu(int(child))
            user += child_user
            system += child_system
    return user, system


def per_query(before: tuple[float, float], after: tuple[float, float], queries: int) -> Cpu:
    """CPU microseconds per query between two process_cpu readings."""
    n = max(queries, 1)
    return Cpu((after[0] - before[0]) / n * 1e6, (after[1] - before[1]) / n * 1e6)


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    head = "\n".join(lscpu.splitlines()[:10])
    return f"nproc {os.cpu_count()}, {platform.platform()}\n{head}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per hot run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating hot rounds")
    parser.add_argument("--cold-names", type=int, default=20_000)
    parser.add_argument("--cold-limit", type=float, default=60.0, help="seconds cap per cold run")
    parser.add_argument(
        "--cold-rounds",
        type=int,
        default=1,
        help="cold runs per server, alternating, each on a freshly started server",
    )
    parser.add_argument(
        "--tc-names",
        type=int,
        default=0,
        help=f"also a truncated load: this many names with {TC_RECORDS} A records each, "
        "asked once after each cold run (the A reply needs TCP upstream); default none",
    )
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU for the servers ('' = none)")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU for dnsperf and NSD")
    parser.add_argument(
        "--only",
        choices=SERVERS,
        action="append",
        default=None,
        help="run only this server (repeatable); default: all of them",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help=f"leave out {FLOOR} (floor_server.py) from the hot rounds",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the hot and cold runs")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="totd-faith dns --workers N (give --server-cpu a CPU list, e.g. 0,1)",
    )
    args = parser.parse_args()
    server_cpu = args.server_cpu or None
    client_cpu = args.client_cpu or None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-dns-"))
    workdir.mkdir(parents=True, exist_ok=True)
    hot_file, cold_file, tc_file = write_query_files(workdir, args.cold_names, args.tc_names)

    nsd = start_bench_nsd(zone_text(args.cold_names, args.tc_names), workdir / "nsd")
    pin(nsd.daemon.pid, client_cpu)
    results: list[Result] = []
    cold_cpu: dict[str, list[Cpu]] = {}
    tc_cpu: dict[str, list[Cpu]] = {}
    hot_cpu: dict[str, list[Cpu]] = {}
    daemons: list[Daemon] = [nsd.daemon]

    def start(name: str, round_: int) -> tuple[Endpoint, Daemon]:
        if name == "totd-faith":
            sub = workdir / f"totd-faith-{round_}"
            sub.mkdir(exist_ok=True)
            return start_totd_faith(sub, nsd.endpoint, server_cpu, args.workers)
        options, clauses = dns64_options(PREFIX, {ZONE: nsd.endpoint})
        options += "\n" + UNBOUNDS[name]
        unbound = start_unbound(workdir / f"{name}-{round_}", options, clauses)
        pin(unbound.daemon.pid, server_cpu)
        return unbound.endpoint, unbound.daemon

    def measure(
        name: str,
        endpoint: Endpoint,
        pid: int,
        queries: Path,
        load: str,
        cpu_table: dict[str, list[Cpu]],
        *,
        seconds: float,
        runs: int,
        spy: subprocess.Popen[bytes] | None = None,
    ) -> Result:
        """One dnsperf run against ``name``: its result and the server's CPU per query."""
        cpu_before = process_cpu(pid)
        text = dnsperf(
            endpoint,
            queries,
            seconds=seconds,
            runs=runs,
            outstanding=args.outstanding,
            cpu=client_cpu,
            out=workdir / f"{name}-{load}.txt",
        )
        cpu_after = process_cpu(pid)
        if spy is not None:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy.wait()
        result = parse_dnsperf(name, load, text)
        results.append(result)
        cpu_table.setdefault(name, []).append(per_query(cpu_before, cpu_after, result.completed))
        return result

    try:
        names = [n for n in SERVERS if args.only is None or n in args.only]
        servers: list[tuple[str, Endpoint, int]] = []
        for round_ in range(args.cold_rounds):
            last = round_ == args.cold_rounds - 1
            for name in names:
                # Cold, on a server started just now: every name exactly once.
                endpoint, daemon = start(name, round_)
                daemons.append(daemon)
                spy = (
                    profile(daemon.pid, args.cold_limit, workdir / f"{name}-cold{round_}.pyspy")
                    if args.profile and name == "totd-faith"
                    else None
                )
                started = time.monotonic()
                measure(
                    name,
                    endpoint,
                    daemon.pid,
                    cold_file,
                    f"cold{round_}",
                    cold_cpu,
                    seconds=args.cold_limit,
                    runs=1,
                    spy=spy,
                )
                print(
                    f"{name} cold round {round_} done in {time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                )
                if args.tc_names:
                    # Truncated: each name's A reply is too big for UDP upstream,
                    # so it is asked again over TCP.  New names, so misses too.
                    measure(
                        name,
                        endpoint,
                        daemon.pid,
                        tc_file,
                        f"tc{round_}",
                        tc_cpu,
                        seconds=args.cold_limit,
                        runs=1,
                    )
                if last:
                    warm(endpoint, hot_file, client_cpu, workdir, name)
                    servers.append((name, endpoint, daemon.pid))
                else:
                    daemon.stop()
                    daemons.remove(daemon)
        unbound = next((s for s in servers if s[0] == "unbound"), None)
        if unbound is not None and not args.no_floor:
            endpoint, daemon = start_floor(workdir, unbound[1], server_cpu)
            daemons.append(daemon)
            warm(endpoint, hot_file, client_cpu, workdir, FLOOR)
            servers.append((FLOOR, endpoint, daemon.pid))
        # Hot: alternate the servers round by round, so that load from other
        # processes on a shared machine hits both alike; report the median round.
        for round_ in range(args.rounds):
            for name, endpoint, pid in servers:
                spy = (
                    profile(pid, args.duration, workdir / f"{name}-hot{round_}.pyspy")
                    if args.profile and name == "totd-faith"
                    else None
                )
                measure(
                    name,
                    endpoint,
                    pid,
                    hot_file,
                    f"hot{round_}",
                    hot_cpu,
                    seconds=args.duration,
                    runs=1_000_000,
                    spy=spy,
                )
    finally:
        for daemon in reversed(daemons):
            daemon.stop()

    print(f"\nmachine: {machine()}\n")
    print(
        f"workdir: {workdir}; servers on CPU {server_cpu}, dnsperf+NSD on CPU {client_cpu}; "
        f"totd-faith workers: {args.workers}\n"
    )
    print("| load | server | queries sent | completed | qps | p50 ms | p99 ms | rcodes |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r.load} | {r.server} | {r.sent} | {r.completed} | {r.qps:,.0f} | "
            f"{r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.rcodes} |"
        )
    summary: dict[tuple[str, str], Result] = {}
    for name in (*SERVERS, FLOOR):
        hot = sorted(
            (r for r in results if r.server == name and r.load.startswith("hot")),
            key=lambda r: r.qps,
        )
        if hot:
            summary[(name, "hot")] = hot[len(hot) // 2]
        for load in ("cold", "tc"):
            runs = sorted(
                (r for r in results if r.server == name and r.load.startswith(load)),
                key=lambda r: r.qps,
            )
            if runs:
                summary[(name, load)] = runs[len(runs) // 2]
    print("\nsummary (median round of each load)\n")
    print(
        "| load | peer | totd-faith qps | peer qps | ratio "
        "| totd-faith p50/p99 ms | peer p50/p99 ms |"
    )
    print("|---|---|---:|---:|---:|---|---|")
    for load in ("hot", "cold", "tc"):
        for peer in (*UNBOUNDS, FLOOR):
            ours_r, theirs = summary.get(("totd-faith", load)), summary.get((peer, load))
            if ours_r and theirs and theirs.qps:
                print(
                    f"| {load} | {peer} | {ours_r.qps:,.0f} | {theirs.qps:,.0f} | "
                    f"{ours_r.qps / theirs.qps:.2f}x | "
                    f"{ours_r.p50_ms:.3f} / {ours_r.p99_ms:.3f} | "
                    f"{theirs.p50_ms:.3f} / {theirs.p99_ms:.3f} |"
                )
    for load, table in (("cold", cold_cpu), ("tc", tc_cpu), ("hot", hot_cpu)):
        if table:
            print(
                f"\nserver CPU per {load} query (us), per round: user+system (user/system);"
                " median of the totals\n"
            )
            for name, values in table.items():
                listed = ", ".join(f"{v.total:.1f} ({v.user:.1f}/{v.system:.1f})" for v in values)
                median = statistics.median(v.total for v in values)
                print(f"- {name}: {listed}; median {median:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
