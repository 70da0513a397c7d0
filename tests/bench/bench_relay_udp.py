"""UDP relay benchmark: iperf3 -u direct, through `totd-faith relay` and through socat.

All on loopback.  iperf3's server listens on 127.0.0.1 (IPv4 only); the
client talks IPv6 to ``[::1]:PORT`` where a relay maps both TCP (iperf3's
control connection) and UDP to the server:

* direct: the client connects to 127.0.0.1:5201 itself (the ceiling);
* totd-faith: ``relay.maps`` ``[::1]:P`` -> 127.0.0.1:5201 for tcp and udp;
* socat: ``UDP6-LISTEN:P,fork UDP4:127.0.0.1:5201`` plus the same for TCP
  (socat's per-peer UDP relay; 6tunnel has no UDP).

Each run sends unlimited-rate (``-b 0``) datagrams of ``--length`` bytes for
``--duration`` seconds, client to server and server to client (``-R``), and
reports what the receiver got (Mbit/s, datagrams/s) and the loss.
``--bitrate 100M`` offers a fixed load instead, to compare loss.

    python tests/bench/bench_relay_udp.py [--duration 5] [--length 1200] [--bitrate 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port  # noqa: E402


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def iperf(
    host: str, port: int, duration: float, length: int, reverse: bool, bitrate: str
) -> dict[str, float]:
    argv = ["iperf3", "-c", host, "-p", str(port), "-u", "-b", bitrate, "-l", str(length)]
    argv += ["-t", str(duration), "-J"] + (["-R"] if reverse else [])
    for _attempt in range(3):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
        result = json.loads(out.stdout)
        if "error" not in result:
            break
        # iperf3's server takes a moment to be ready for the next test.
        time.sleep(1.0)
    else:
        raise RuntimeError(f"{' '.join(argv)}: {result['error']}")
    end = result["end"]["sum"]
    seconds = end["seconds"] or duration
    received = end["packets"] - end["lost_packets"]
    return {
        # What the receiver got, not what the sender offered.
        "mbit": received * length * 8 / seconds / 1e6,
        "pps": received / seconds,
        "loss": end["lost_percent"],
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its live child processes (socat forks)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[1] is the parent pid, fields[11:15] utime, stime and the same for
        # children already reaped (proc(5)).
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--length", type=int, default=1200)
    parser.add_argument(
        "--bitrate", default="0", help="iperf3 -b: 0 is unlimited, e.g. 100M for a fixed offer"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    for tool in ("iperf3", "socat", "totd-faith"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-relay-udp-"))
    workdir.mkdir(parents=True, exist_ok=True)

    server_port = free_port()
    relay_port = free_port("::1")
    socat_port = free_port("::1")
    conf = workdir / "relay.toml"
    conf.write_text(
        "[log]\nconnections = false\n"
        + "".join(
            f'[[relay.maps]]\nlisten = "[::1]:{relay_port}"\n'
            f'target = "127.0.0.1:{server_port}"\nprotocol = "{proto}"\n'
            for proto in ("tcp", "udp")
        )
    )
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, name: str) -> None:
        log = (workdir / f"{name}.log").open("wb")
        # Own session: socat forks a child per UDP peer that outlives its parent,
        # so the whole group is stopped at the end.
        procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    try:
        start("iperf3", "-s", "-B", "127.0.0.1", "-p", str(server_port), name="iperf3")
        start("totd-faith", "relay", "-c", str(conf), name="relay")
        target = f"127.0.0.1:{server_port}"
        start("socat", f"TCP6-LISTEN:{socat_port},bind=[::1],fork,reuseaddr", f"TCP4:{target}",
              name="socat-tcp")  # fmt: skip
        start("socat", f"UDP6-LISTEN:{socat_port},bind=[::1],fork,reuseaddr", f"UDP4:{target}",
              name="socat-udp")  # fmt: skip
        wait_tcp("127.0.0.1", server_port)
        wait_tcp("::1", relay_port)
        wait_tcp("::1", socat_port)
        paths = {
            "direct": ("127.0.0.1", server_port),
            "totd-faith": ("::1", relay_port),
            "socat": ("::1", socat_port),
        }
        # Relay processes whose CPU time per relayed datagram is reported.
        relay_pids = {"totd-faith": [procs[1].pid], "socat": [procs[2].pid, procs[3].pid]}
        print(
            f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
            f"python {platform.python_version()}, {args.length}-byte datagrams, "
            f"{args.duration:g} s per run, iperf3 -u -b {args.bitrate}"
        )
        print(
            f"{'path':<12} {'direction':<18} {'Mbit/s':>9} {'datagrams/s':>12} {'loss %':>7} "
            f"{'relay CPU us/datagram':>22}"
        )
        for reverse in (False, True):
            direction = "server to client" if reverse else "client to server"
            for name, (host, port) in paths.items():
                pids = relay_pids.get(name, [])
                before = sum(cpu_seconds(pid) for pid in pids)
                r = iperf(host, port, args.duration, args.length, reverse, args.bitrate)
                used = sum(cpu_seconds(pid) for pid in pids) - before
                # Datagrams the relay handled: what reached the receiver is a lower bound.
                per = f"{used / (r['pps'] * args.duration) * 1e6:.1f}" if pids else "-"
                print(
                    f"{name:<12} {direction:<18} {r['mbit']:>9.0f} {r['pps']:>12.0f} "
                    f"{r['loss']:>7.1f} {per:>22}"
                )
                sys.stdout.flush()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children still in the group


if __name__ == "__main__":
    main()
