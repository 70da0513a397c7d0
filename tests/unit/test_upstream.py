"""Reply acceptance (RFC 5452 section 9.1): ID, QR and the echoed question must match."""

from __future__ import annotations

import dns.edns
import dns.message

from totd_faith.dnswire import HEADER_SIZE, skip_name
from totd_faith.upstream import reply_matches


def _question(wire: bytes) -> bytes:
    return wire[HEADER_SIZE : skip_name(wire, HEADER_SIZE) + 4].lower()


def test_matching_reply_is_accepted_whatever_the_letter_case():
    query = dns.message.make_query("www.example.", "A")
    query.id = 1234
    question = _question(query.to_wire())
    response = dns.message.make_response(dns.message.make_query("WWW.Example.", "A"))
    response.id = 1234
    assert reply_matches(response.to_wire(), 1234, question)


def test_wrong_id_question_type_or_direction_is_rejected():
    query = dns.message.make_query("www.example.", "A")
    question = _question(query.to_wire())
    good = dns.message.make_response(query)
    good.id = 7
    assert reply_matches(good.to_wire(), 7, question)
    assert not reply_matches(good.to_wire(), 8, question)
    other_type = dns.message.make_response(dns.message.make_query("www.example.", "AAAA"))
    other_type.id = 7
    assert not reply_matches(other_type.to_wire(), 7, question)
    other_name = dns.message.make_response(dns.message.make_query("mail.example.", "A"))
    other_name.id = 7
    assert not reply_matches(other_name.to_wire(), 7, question)
    as_query = bytearray(good.to_wire())
    as_query[2] &= 0x7F
    assert not reply_matches(bytes(as_query), 7, question)
    assert not reply_matches(good.to_wire()[:20], 7, question)
    assert not reply_matches(good.to_wire()[:11], 7, question)
    for qdcount in (b"\x00\x00", b"\x00\x02", b"\x01\x01"):  # RFC 5452 9.1: one question
        other_count = bytearray(good.to_wire())
        other_count[4:6] = qdcount
        assert not reply_matches(bytes(other_count), 7, question)
    assert not reply_matches(b"", 7, question)


def test_query_wire_matches_dnspython_for_the_cores_upstream_queries():
    import dns.flags
    import dns.name

    from totd_faith.dns64.messages import upstream_query
    from totd_faith.upstream import query_wire

    for flags, edns_kwargs in (
        (dns.flags.RD, {}),
        (dns.flags.RD | dns.flags.CD, {"use_edns": 0, "want_dnssec": True}),
        (dns.flags.RD | dns.flags.AD, {"use_edns": 0, "payload": 4096}),
    ):
        client = dns.message.make_query("Www.Example.", "AAAA", **edns_kwargs)
        client.flags = flags
        for rdtype in (28, 1):
            message = upstream_query(client, client.question[0].name, rdtype, 1, 1232)
            message.id = 0
            assert query_wire(message) == message.to_wire()
    # Shapes the fast renderer does not handle still go through dnspython.
    with_option = dns.message.make_query("example.", "A", use_edns=0, options=[])
    with_option.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(65001, b"x")])
    with_option.id = 0
    assert query_wire(with_option) == with_option.to_wire()


def test_random_numbers_are_not_repeated_by_a_forked_child():
    # RFC 5452 section 9.2: a worker process forked from the server must not draw
    # the same IDs and socket choices as its parent (or its siblings).
    import os

    from totd_faith import upstream

    upstream._random32()  # the parent has a block of numbers buffered
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, b",".join(b"%d" % upstream._random32() for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = [int(n) for n in pipe.read().split(b",")]
    os.waitpid(pid, 0)
    parent = [upstream._random32() for _ in range(8)]
    assert len(child) == 8
    assert child != parent
    assert all(0 <= n < 2**32 for n in child + parent)
