"""Reply acceptance (RFC 5452 section 9.1): ID, QR and the echoed question must match."""

from __future__ import annotations

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
    assert not reply_matches(b"", 7, question)
