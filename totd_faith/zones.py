"""Static hosts -> DNS data for IPv6-only clients: zones, hosts lines, Unbound lines.

The hand work of the classic totd/faithd setup (compute ``PREFIX::c0a8:102``
for cvsup on 192.168.1.2 and type it into a zone) done from a hosts file.
Pure computation on :class:`~totd_faith.hosts.HostEntry` values; zones are
built with dnspython's zone and rdata types, never with string templates.

Rules (the README repeats them):

* Placement: a single-label name (``cvsup``) is relative to the origin and
  becomes ``cvsup.<origin>``; a dotted name (``cvsup.example.org``, trailing
  dot or not) is fully qualified and must be the origin or under it.  Names
  elsewhere are an error, or left out with ``skip_foreign``.
* Names are exported in lower case (DNS names compare without case, RFC 4343),
  so ``CVSup`` and ``cvsup`` are one name.
* One AAAA per distinct (name, address); a name listed with several addresses
  gets several AAAA records.
* PTR: one per synthesized address, pointing at the canonical name of the
  first hosts line (in the order the files were given) that has the address.
  hosts(5) makes the first name on a line the canonical name, and one PTR per
  address is what resolvers and gethostbyaddr() expect.
* Addresses that a translator can never reach (0.0.0.0/8, 127.0.0.0/8,
  multicast, 240.0.0.0/4 and the broadcast address) are skipped with a
  warning, which lets a copy of /etc/hosts be exported as is.
* Output is sorted (names in DNS order, addresses numerically) so the same
  hosts data gives byte-identical output whatever the line order, except
  where order means something: the canonical name of an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.AAAA
import dns.zone

from totd_faith.errors import HostsFileError, OperatorError, PrefixError
from totd_faith.hosts import HostEntry, is_host_name
from totd_faith.prefix import Nat64Prefix

#: Default TTL of exported records (the same as ``dns64.hosts_ttl``).
DEFAULT_TTL = 3600

#: Default SOA serial.  Deterministic, so unchanged hosts give unchanged
#: output; pass a real serial (e.g. YYYYMMDDnn) when secondaries transfer it.
DEFAULT_SERIAL = 1

#: Default name server: the host itself.  It is outside every zone we export,
#: so no glue address is needed (named-checkzone requires an address record
#: for an NS target inside the zone); right for a zone that a local resolver
#: or name server loads.  Give the real server's name when the zone is delegated.
DEFAULT_NS = dns.name.from_text("localhost.")

# SOA timers from RIPE-203 (recommendations for DNS SOA values); the minimum
# field is the negative-caching TTL (RFC 2308 section 4).
SOA_REFRESH = 86_400
SOA_RETRY = 7_200
SOA_EXPIRE = 3_600_000
SOA_MINIMUM = 3_600

#: RFC 1035 section 3.3.13: SERIAL is an unsigned 32-bit number.
MAX_SERIAL = 2**32 - 1
#: RFC 2181 section 8: a TTL is 0 .. 2**31 - 1 seconds.
MAX_TTL = 2**31 - 1

# Destinations no translator can reach, so a synthesized address for them is
# useless (and for loopback, a relay would connect to its own host):
_UNREACHABLE = (
    # RFC 1122 section 3.2.1.3 (a) and (g): "this host" and loopback addresses
    # MUST NOT appear outside a host.
    (ipaddress.IPv4Network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "a loopback address"),
    # RFC 5771: multicast; RFC 1112 section 4 and RFC 919: reserved and broadcast.
    (ipaddress.IPv4Network("224.0.0.0/4"), "a multicast address"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "a reserved or broadcast address"),
)

_IN = dns.rdataclass.IN


@dataclass(frozen=True, slots=True)
class HostRecord:
    """One exported (name, address) pair and the hosts line it first came from."""

    name: dns.name.Name
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address
    entry: HostEntry


@dataclass(frozen=True, slots=True)
class HostTable:
    """The synthesized host data, already placed, deduplicated and sorted."""

    prefix: Nat64Prefix
    origin: dns.name.Name
    #: Sorted by (name in DNS order, address); one per distinct pair.
    records: tuple[HostRecord, ...]
    #: ``(address, names)`` sorted by address; ``names[0]`` is the canonical
    #: name (the PTR target), the rest follow in DNS order.
    addresses: tuple[tuple[ipaddress.IPv6Address, tuple[dns.name.Name, ...]], ...]

    def has_name(self, name: dns.name.Name) -> bool:
        return any(record.name == name for record in self.records)


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """SOA and NS data for an exported zone."""

    serial: int = DEFAULT_SERIAL
    ttl: int = DEFAULT_TTL
    ns: dns.name.Name = DEFAULT_NS
    #: The mailbox in the SOA RNAME; None means ``hostmaster.<origin>``
    #: (RFC 2142 section 7).
    contact: dns.name.Name | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.serial <= MAX_SERIAL:
            raise OperatorError(
                f"serial {self.serial} is out of range: the SOA serial is an unsigned "
                f"32-bit number, 0 to {MAX_SERIAL} (RFC 1035 section 3.3.13)"
            )
        if not 0 <= self.ttl <= MAX_TTL:
            raise OperatorError(
                f"TTL {self.ttl} is out of range: 0 to {MAX_TTL} seconds (RFC 2181 section 8)"
            )
        if not self.ns.is_absolute():
            raise OperatorError(f"name server {self.ns} must be an absolute name")


def place_name(name: dns.name.Name, origin: dns.name.Name) -> dns.name.Name:
    """Where a hosts-file ``name`` lives: single labels go under ``origin``.

    Also lower-cases the name (RFC 4343: case does not distinguish names).
    """
    if len(name.labels) == 2:  # one label plus the root
        name = dns.name.Name(name.labels[:1]).derelativize(origin)
    return name.canonicalize()


def dns_order(name: dns.name.Name) -> tuple[bytes, ...]:
    """Sort key for lower-case names in DNS canonical order (RFC 4034 section 6.1).

    Labels compare from the root down as unsigned octet strings, which is how
    Python compares ``bytes``; much faster than comparing ``Name`` objects.
    """
    return name.labels[::-1]


def unreachable_reason(address: ipaddress.IPv4Address) -> str | None:
    """Why ``address`` can never be a translation target, or None if it can."""
    for network, reason in _UNREACHABLE:
        if address in network:
            return reason
    return None


def build_table(
    entries: Sequence[HostEntry],
    prefix: Nat64Prefix,
    origin: dns.name.Name,
    *,
    skip_foreign: bool = False,
) -> tuple[HostTable, list[str]]:
    """Place, check, synthesize and sort ``entries`` (in file order); return warnings too.

    Raises :class:`HostsFileError` naming the hosts line for a name outside
    ``origin`` (unless ``skip_foreign``) or an address the prefix must not carry.
    """
    if not origin.is_absolute():
        raise OperatorError(f"origin {origin} must be an absolute name")
    origin = origin.canonicalize()
    warnings: list[str] = []
    first: dict[tuple[dns.name.Name, ipaddress.IPv6Address], HostRecord] = {}
    canonical: dict[ipaddress.IPv6Address, dns.name.Name] = {}
    foreign: list[HostEntry] = []
    for entry in entries:
        where = f"{entry.filename}:{entry.lineno}"
        reason = unreachable_reason(entry.address)
        if reason is not None:
            warnings.append(
                f"{where}: skipped {entry.name.to_text(omit_final_dot=True)}: "
                f"{entry.address} is {reason}, which no translator can reach"
            )
            continue
        name = place_name(entry.name, origin)
        if not name.is_subdomain(origin):
            if skip_foreign:
                foreign.append(entry)
                continue
            raise HostsFileError(
                entry.filename,
                entry.lineno,
                f"{name} is outside the origin {origin} (export it with its own --origin, "
                "or use --skip-foreign to leave such names out)",
            )
        try:
            # RFC 6052 section 3.1: the Well-Known Prefix must not carry
            # non-global IPv4 addresses; embed() enforces it.
            ipv6 = prefix.embed(entry.address)
        except PrefixError as exc:
            raise HostsFileError(entry.filename, entry.lineno, str(exc)) from None
        key = (name, ipv6)
        if key not in first:
            first[key] = HostRecord(name, entry.address, ipv6, entry)
        # hosts(5): the first name of the first line with an address is its
        # canonical name.  Entries of one line arrive in order, so "first seen".
        canonical.setdefault(ipv6, name)
    if foreign:
        example = foreign[0]
        warnings.append(
            f"left out {len(foreign)} name(s) outside the origin {origin}, the first "
            f"{example.name} at {example.filename}:{example.lineno}"
        )
    records = tuple(sorted(first.values(), key=lambda r: (dns_order(r.name), int(r.ipv6))))
    by_address: dict[ipaddress.IPv6Address, set[dns.name.Name]] = {}
    for record in records:
        by_address.setdefault(record.ipv6, set()).add(record.name)
    addresses = tuple(
        (
            address,
            (
                canonical[address],
                *sorted(by_address[address] - {canonical[address]}, key=dns_order),
            ),
        )
        for address in sorted(by_address, key=int)
    )
    return HostTable(prefix, origin, records, addresses), warnings


def _add(zone: dns.zone.Zone, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
    """Add ``rdata`` at ``name`` (relative to the zone origin), keeping insertion order."""
    zone.find_rdataset(name, rdata.rdtype, create=True).add(rdata, ttl)


def _with_comment(rdata: dns.rdata.Rdata, comment: str) -> dns.rdata.Rdata:
    # Rdata is immutable; replace(rdcomment=) would build and validate it a second
    # time, so set the slot the way dnspython's own zone reader does.
    object.__setattr__(rdata, "rdcomment", comment)
    return rdata


def _new_zone(
    origin: dns.name.Name, settings: ZoneSettings, contact_domain: dns.name.Name
) -> dns.zone.Zone:
    zone = dns.zone.Zone(origin, _IN, relativize=True)
    contact = settings.contact or dns.name.Name(("hostmaster",)).derelativize(contact_domain)
    # dnspython's rdata constructors carry no annotations, hence the ignores.
    soa = dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
        _IN,
        dns.rdatatype.SOA,
        settings.ns,
        contact,
        settings.serial,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        SOA_MINIMUM,
    )
    ns = dns.rdtypes.ANY.NS.NS(_IN, dns.rdatatype.NS, settings.ns)  # type: ignore[no-untyped-call]
    # The zone is relativized, so its apex is the empty name, not the origin.
    _add(zone, dns.name.empty, settings.ttl, soa)
    _add(zone, dns.name.empty, settings.ttl, ns)
    return zone


def forward_zone(table: HostTable, settings: ZoneSettings) -> dns.zone.Zone:
    """The zone of ``table.origin``: SOA, NS and one AAAA per (name, address).

    Nodes are added in DNS canonical order (the table is sorted), so the zone
    prints in that order without sorting again.
    """
    if settings.ns.is_subdomain(table.origin) and not table.has_name(settings.ns):
        # named-checkzone refuses an NS target inside the zone without an address.
        raise OperatorError(
            f"the name server {settings.ns} is inside {table.origin} but no hosts line "
            "gives it an address: add it to a hosts file or name a server outside the zone"
        )
    zone = _new_zone(table.origin, settings, table.origin)
    for record in table.records:  # sorted, so each rdataset is in address order
        aaaa = dns.rdtypes.IN.AAAA.AAAA(  # type: ignore[no-untyped-call]
            _IN, dns.rdatatype.AAAA, str(record.ipv6)
        )
        # The comment shows readers which IPv4 address is embedded.
        _add(
            zone,
            record.name.relativize(table.origin),
            settings.ttl,
            _with_comment(aaaa, str(record.ipv4)),
        )
    zone.check_origin()
    return zone


def reverse_zone(table: HostTable, settings: ZoneSettings) -> dns.zone.Zone:
    """The ip6.arpa zone of the prefix: SOA, NS and one PTR per synthesized address.

    Every owner name has the same number of nibble labels, so address order is
    DNS canonical order (RFC 4034 section 6.1: '0'-'9' sort before 'a'-'f').
    """
    origin = table.prefix.reverse_origin
    zone = _new_zone(origin, settings, table.origin)
    for address, names in table.addresses:
        ptr = dns.rdtypes.ANY.PTR.PTR(  # type: ignore[no-untyped-call]
            _IN, dns.rdatatype.PTR, names[0]
        )
        owner = _reverse_owner(address, table.prefix.length)
        _add(zone, owner, settings.ttl, _with_comment(ptr, str(table.prefix.extract(address))))
    zone.check_origin()
    return zone


def _reverse_owner(address: ipaddress.IPv6Address, prefix_length: int) -> dns.name.Name:
    """The ip6.arpa name of ``address`` relative to the prefix's reverse zone.

    RFC 3596 section 2.5: one label per nibble, least significant first.  Built
    from the integer because parsing the full name text dominated large exports.
    """
    nibbles = format(int(address), "032x")[::-1]
    return dns.name.Name(tuple(nibbles[: (128 - prefix_length) // 4]))


def _header(table: HostTable, comment: str) -> list[str]:
    return [
        "Generated by totd-faith zone export: edit the hosts files, not this file.",
        f"prefix {table.prefix}, origin {table.origin}",
        *([comment] if comment else []),
    ]


def bind_text(zone: dns.zone.Zone, table: HostTable, comment: str = "") -> str:
    """A master file (RFC 1035 section 5) with ``$ORIGIN``, sorted by name."""
    # sorted=False: the builders add nodes in DNS canonical order already, and
    # sorting tens of thousands of names again with Name comparisons is slow.
    body = zone.to_text(
        sorted=False, relativize=True, want_origin=True, want_comments=True, nl="\n"
    )
    header = "".join(f"; {line}\n" for line in _header(table, comment))
    return header + body.rstrip("\n") + "\n"


def hosts_text(table: HostTable, comment: str = "") -> str:
    """IPv6 hosts-file lines: address, canonical name, the other names, # IPv4 address."""
    lines = [f"# {line}" for line in _header(table, comment)]
    for address, names in table.addresses:
        names_text = " ".join(_fqdn(name) for name in names)
        lines.append(f"{address} {names_text}  # {table.prefix.extract(address)}")
    return "\n".join(lines) + "\n"


def unbound_text(table: HostTable, ttl: int = DEFAULT_TTL, comment: str = "") -> str:
    """Unbound ``server:`` lines: local-data AAAA and local-data-ptr.

    The origin becomes a ``typetransparent`` local zone: Unbound answers the
    AAAA records given here and resolves every other name and type as usual
    (so the IPv4 A records from real DNS keep working).
    """
    lines = [f"# {line}" for line in _header(table, comment)]
    lines += ["server:", f'    local-zone: "{table.origin}" typetransparent']
    lines += [
        f'    local-data: "{record.name} {ttl} IN AAAA {record.ipv6}"' for record in table.records
    ]
    lines += [
        f'    local-data-ptr: "{address} {ttl} {names[0]}"' for address, names in table.addresses
    ]
    return "\n".join(lines) + "\n"


def _check_names_warnings(table: HostTable, settings: ZoneSettings, reverse: bool) -> list[str]:
    """Names BIND's check-names refuses in a primary zone (its default there is
    ``fail``): AAAA owners, PTR targets and the NS name must be host names
    (RFC 1123 section 2.1).  Other DNS servers take any name (RFC 2181 section 11)."""
    if reverse:
        names = [owners[0] for _, owners in table.addresses]
    else:
        names = [record.name for record in table.records]
    bad = list(dict.fromkeys(name for name in names if not is_host_name(name)))
    if not is_host_name(settings.ns):
        bad.append(settings.ns)
    if not bad:
        return []
    shown = ", ".join(_fqdn(name) for name in bad[:3]) + (", ..." if len(bad) > 3 else "")
    return [
        f"{len(bad)} name(s) are not host names (RFC 1123 section 2.1: letters, digits and "
        f"hyphens, no hyphen at either end of a label): {shown}; BIND refuses them in a "
        "primary zone unless named.conf relaxes it (check-names primary warn;), NSD and "
        "Unbound take them as they are"
    ]


def _fqdn(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def export(
    entries: Iterable[HostEntry],
    prefix: Nat64Prefix,
    origin: dns.name.Name,
    *,
    form: str = "bind",
    reverse: bool = False,
    settings: ZoneSettings | None = None,
    skip_foreign: bool = False,
    comment: str = "",
) -> tuple[str, list[str]]:
    """Everything ``totd-faith zone export`` does between reading and writing.

    ``form`` is ``bind``, ``hosts`` or ``unbound``; ``reverse`` selects the
    ip6.arpa zone and applies to ``bind`` only.
    """
    settings = settings or ZoneSettings()
    if reverse and form != "bind":
        raise OperatorError(
            f"--reverse applies to the bind format only (the {form} format already "
            "carries the reverse mapping)"
        )
    table, warnings = build_table(list(entries), prefix, origin, skip_foreign=skip_foreign)
    if not table.records:
        warnings.append("the hosts files give no names to export; the output has none")
    if form == "bind":
        zone = reverse_zone(table, settings) if reverse else forward_zone(table, settings)
        warnings += _check_names_warnings(table, settings, reverse)
        return bind_text(zone, table, comment), warnings
    if form == "hosts":
        return hosts_text(table, comment), warnings
    if form == "unbound":
        return unbound_text(table, settings.ttl, comment), warnings
    raise OperatorError(f"unknown format {form!r}: use bind, hosts or unbound")
