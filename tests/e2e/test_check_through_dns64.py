"""``totd-faith check`` through a real ``totd-faith dns`` in front of NSD, in a namespace.

NSD has only an A record; the DNS64 proxy synthesizes an address inside
2001:db8:64::/96; an AnyIP route delivers the prefix to the namespace's loopback,
where a listener waits, so ``check`` connects to the synthesized address.  All of it
runs inside one network namespace that the test creates and removes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.netns import Topology, skip_unless_netns, wait_tcp, wait_udp_dns
from tests.support.nsd import nsd_config, zone_filename

ORIGIN = "check.test."
ZONE = f"""$ORIGIN {ORIGIN}
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS  ns
ns      IN A   192.0.2.53
one     IN A   192.0.2.1
"""
PREFIX = "2001:db8:64::/96"
SYNTHESIZED = "2001:db8:64::c000:201"
LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
while True:
    s.accept()[0].close()
"""


def test_check_connects_to_synthesized_address(tmp_path: Path) -> None:
    skip_unless_netns()
    (tmp_path / zone_filename(ORIGIN)).write_text(ZONE)
    nsd_conf = tmp_path / "nsd.conf"
    nsd_conf.write_text(nsd_config({ORIGIN: ZONE}, tmp_path, "127.0.0.1", 53))
    conf = tmp_path / "totd-faith.toml"
    conf.write_text(
        f'prefixes = ["{PREFIX}"]\n[dns]\nlisten = ["127.0.0.1:5353"]\n'
        'upstreams = ["127.0.0.1:53"]\n'
    )
    with Topology() as topo:
        ns = topo.namespace("check")
        ns.run("ip", "-6", "route", "add", "local", PREFIX, "dev", "lo")
        ns.popen("nsd", "-d", "-c", str(nsd_conf))
        ns.popen(sys.executable, "-m", "totd_faith", "dns", "-c", str(conf))
        ns.popen(sys.executable, "-c", LISTENER, "7777")
        wait_udp_dns(ns, "127.0.0.1", 53, ORIGIN, "SOA")
        wait_udp_dns(ns, "127.0.0.1", 5353, "one." + ORIGIN, "AAAA")
        wait_tcp(ns, SYNTHESIZED, 7777)
        result = ns.run(
            sys.executable,
            "-m",
            "totd_faith",
            "check",
            "one.check.test",
            "7777",
            "-c",
            str(conf),
            "-n",
            "2",
            "-i",
            "0",
            check=False,
        )
        refused = ns.run(
            sys.executable,
            "-m",
            "totd_faith",
            "check",
            "one.check.test",
            "7778",
            "-c",
            str(conf),
            "-n",
            "1",
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"one.check.test: {SYNTHESIZED} ({PREFIX} -> 192.0.2.1), from 127.0.0.1:5353"
    )
    assert sum(" connected time=" in line for line in lines) == 2
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused" in refused.stdout
