"""hostexec apply/undo against the real kernel, inside a throw-away namespace.

nft tables, ip rules and routes are per network namespace, so this changes
nothing on the host running the tests.
"""

from __future__ import annotations

import json
import sys
import textwrap

from tests.netns import Namespace, Topology

# Runs inside the namespace: apply twice, check, undo twice, check; print what happened.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from totd_faith import hostexec
    from totd_faith.hostsetup import anyip_steps, tproxy_steps
    from totd_faith.prefix import Nat64Prefix

    prefixes = [Nat64Prefix.parse(p) for p in sys.argv[1:]]
    steps = anyip_steps(prefixes) + tproxy_steps(prefixes, 64646)
    report = {}
    report["first_apply"] = [s.description for s in hostexec.apply(steps)]
    report["second_apply"] = [s.description for s in hostexec.apply(steps)]
    report["applied_after"] = [hostexec.is_applied(s) for s in steps]
    report["first_undo"] = [s.description for s in hostexec.undo(steps)]
    report["second_undo"] = [s.description for s in hostexec.undo(steps)]
    report["applied_after_undo"] = [hostexec.is_applied(s) for s in steps]
    print(json.dumps(report))
    """
)


def run_script(ns: Namespace, *args: str) -> dict[str, list[object]]:
    out = ns.run(sys.executable, "-c", _SCRIPT, *args)
    result: dict[str, list[object]] = json.loads(out.stdout)
    return result


def test_apply_and_undo_are_idempotent(topology: Topology) -> None:
    ns = topology.namespace("setup")
    report = run_script(ns, "2001:db8:64::/96", "2001:db8:1::/48")
    n = 2 + 3  # two AnyIP routes, nft table, rule, local default route
    assert len(report["first_apply"]) == n
    assert report["second_apply"] == []
    assert report["applied_after"] == [True] * n
    assert report["first_undo"] == list(reversed(report["first_apply"]))
    assert report["second_undo"] == []
    assert report["applied_after_undo"] == [False] * n
    # Nothing left behind in the namespace.
    assert ns.run("nft", "list", "ruleset").stdout.strip() == ""
    assert "fwmark" not in ns.run("ip", "-6", "rule", "show").stdout
    assert "2001:db8" not in ns.run("ip", "-6", "route", "show", "table", "local").stdout


def test_undo_leaves_what_it_did_not_add(topology: Topology) -> None:
    """A route the operator added before is 'already applied', so the relay never removes it."""
    ns = topology.namespace("setup")
    ns.run("ip", "-6", "route", "add", "local", "2001:db8:64::/96", "dev", "lo")
    script = textwrap.dedent(
        """
        from totd_faith import hostexec
        from totd_faith.hostsetup import anyip_steps
        from totd_faith.prefix import Nat64Prefix
        steps = anyip_steps([Nat64Prefix.parse("2001:db8:64::/96")])
        applied = hostexec.apply(steps)
        hostexec.undo(applied)
        print(len(applied))
        """
    )
    assert ns.run(sys.executable, "-c", script).stdout.strip() == "0"
    routes = ns.run("ip", "-6", "route", "show", "table", "local", "2001:db8:64::/96").stdout
    assert "local 2001:db8:64::/96" in routes


def test_rendered_script_applies_and_undoes(topology: Topology) -> None:
    """The shell text `setup` prints does the same as apply/undo, and is idempotent too."""
    ns = topology.namespace("setup")
    script = textwrap.dedent(
        """
        import sys
        from totd_faith import hostexec
        from totd_faith.hostsetup import anyip_steps, tproxy_steps
        from totd_faith.prefix import Nat64Prefix
        p = [Nat64Prefix.parse("2001:db8:64::/96")]
        print(hostexec.render(anyip_steps(p) + tproxy_steps(p, 64646),
                              undo_script=sys.argv[1] == "undo"))
        """
    )
    apply_text = ns.run(sys.executable, "-c", script, "apply").stdout
    undo_text = ns.run(sys.executable, "-c", script, "undo").stdout
    for _ in range(2):
        ns.run("sh", "-c", apply_text)
    assert "tproxy ip6 to :64646" in ns.run("nft", "list", "table", "inet", "totd_faith").stdout
    assert "fwmark 0x7466" in ns.run("ip", "-6", "rule", "show").stdout
    for _ in range(2):
        ns.run("sh", "-c", undo_text)
    assert ns.run("nft", "list", "ruleset").stdout.strip() == ""
    assert "fwmark" not in ns.run("ip", "-6", "rule", "show").stdout


def test_a_table_made_for_other_settings_is_replaced(topology: Topology) -> None:
    ns = topology.namespace("setup")
    script = textwrap.dedent(
        """
        import sys
        from totd_faith import hostexec
        from totd_faith.hostsetup import tproxy_steps
        from totd_faith.prefix import Nat64Prefix
        steps = tproxy_steps([Nat64Prefix.parse("2001:db8:64::/96")], int(sys.argv[1]))
        print(len(hostexec.apply(steps)))
        """
    )
    assert ns.run(sys.executable, "-c", script, "1111").stdout.strip() == "3"
    # Same rule and route, other port: only the nft step runs again, replacing the table.
    assert ns.run(sys.executable, "-c", script, "64646").stdout.strip() == "1"
    listing = ns.run("nft", "list", "ruleset").stdout
    assert "to :64646" in listing and ":1111" not in listing
    assert listing.count("table inet totd_faith") == 1
