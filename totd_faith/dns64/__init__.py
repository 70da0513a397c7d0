"""DNS64 core (RFC 6147, RFC 7050, RFC 8880): a sans-IO module the DNS shell drives.

``Dns64(config, hosts).resolve(query, client)`` is a generator: it yields the
queries to send upstream, receives the replies (or None), and returns the
response for the client.  See :mod:`totd_faith.dns64.resolver`.

Modules: ``resolver`` (the decision procedure), ``synthesis`` (exclusion,
CNAME/DNAME chains, TTL, prefixes), ``localzones`` (ipv4only.arpa and static
hosts), ``messages`` (upstream queries and client responses).

Decisions where the RFCs leave room (each is cited again at its code):

- A error after an empty AAAA answer: RFC 6147 section 5.1.6 says the error "is
  used as the basis for the answer", so the client gets the A query's RCODE
  (SERVFAIL when it timed out, section 5.1.3), not the AAAA NODATA, which it
  would cache negatively although the name may well have an A record.  An
  empty A answer (or nothing we may synthesize) gives the original AAAA
  response (section 5.4).
- TTL: min(A TTL, SOA TTL, SOA MINIMUM) of the negative AAAA answer (section
  5.1.7 with RFC 2308 section 5), 600 s cap without an SOA.
- IPv4 addresses no translator can reach (0/8, 127/8, 224/4, 240/4) are never
  synthesized, whatever dns64.mapped says: the same rule as ``zone export``.
- Exclusion (section 5.1.4): excluded AAAA records are removed (with the RRSIG
  over the trimmed RRset, and AD); only-excluded counts as empty, so with
  nothing to synthesize the client gets the A query's negative answer
  (section 5.1.6: chain and SOA kept), never the trimmed positive reply,
  which would have NS and no SOA: a referral (RFC 2308 section 2.2).
- DNSSEC (section 5.5): we do not validate.  DO+CD: no synthesis (AAAA, PTR
  CNAMEs, static hosts' AAAA), the data is forwarded for the client to
  validate; only ipv4only.arpa is still answered (RFC 8880 sections 5, 7.1).
  Otherwise synthesized answers have no AD and no RRSIG over A records.
- PTR (section 5.3.1): option 2, a CNAME to the in-addr.arpa name, for full
  32-nibble names inside a prefix whose IPv4 address we would synthesize; the
  rest (partial names, unmapped or non-global-in-WKP addresses, non-zero
  u-octet) is forwarded unchanged.  The in-addr.arpa target is answered
  locally when it is ours (hosts; 192.0.0.170/171 with ipv4only.arpa, RFC 8880
  section 7.2.1), so one path serves every case.
- ipv4only.arpa (RFC 8880 section 7.1 item 4), for DNS64 clients: A, AAAA
  (every prefix, WKP included, dns64.mapped ignored so discovery always
  works), DS forwarded, every other type (SOA and NS too: the RFC gives no
  such data) NODATA, names below it NXDOMAIN; negative answers carry no SOA,
  TTL 3600.  Clients outside dns64.clients have it forwarded, as by a plain
  forwarder.  170/171.0.0.192.in-addr.arpa asked directly are forwarded
  (section 7.2 item 4).
- Static hosts: A, synthesized AAAA (same rules as upstream data) and PTR (the
  first name given for an address) with dns.hosts_ttl; other types NODATA
  without an SOA (not a zone we serve; nothing for clients to cache
  negatively); names below a host name go upstream.
"""

from totd_faith.dns64.resolver import Dns64, IPAddress, Resolution

__all__ = ["Dns64", "IPAddress", "Resolution"]
