"""Hostile mail costs bounded work: header size, field count, encoded words (issue 11)."""

import time

import pytest

from mailwatch.mail import parse
from mailwatch.mail.parse import MAX_FIELD_VALUES, parse_message

# Generous for a shared CI machine; measured on 2 cores: ~0.025 s bounded, ~0.3 s unbounded.
BOUNDED_S = 0.5
UNBOUNDED_80K_S = 3.0


def repeated_fields(count: int) -> bytes:
    return b"From: ann@example.org\r\n" + b"X-A: b\r\n" * count + b"Subject: still here?\r\n"


def timed(*args, **kwargs):
    started = time.perf_counter()
    parsed = parse_message(*args, **kwargs)
    return parsed, time.perf_counter() - started


def test_80000_repeated_fields_parse_fast_and_say_they_were_cut() -> None:
    # 640 KB of header is cut at MAX_HEADER_BYTES, and the message says so.
    parsed, elapsed_s = timed(repeated_fields(80_000), b"Hello")
    assert elapsed_s < BOUNDED_S, f"{elapsed_s:.3f} s"
    assert parsed.header_truncated and "header truncated" in parsed.defects
    assert parsed.from_[0].address == "ann@example.org" and parsed.parse_error is None
    assert len(parsed.headers["x-a"]) == MAX_FIELD_VALUES


def test_header_parsing_is_linear_in_the_number_of_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the bounds, 80,000 fields still take about 8x the time of 10,000, not 64x.
    for name in ("MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_FIELD_VALUES"):
        monkeypatch.setattr(parse, name, 10**9)
    _, small_s = timed(repeated_fields(10_000))
    parsed, large_s = timed(repeated_fields(80_000))
    assert len(parsed.headers["x-a"]) == 80_000 and not parsed.header_truncated
    assert large_s < UNBOUNDED_80K_S and large_s < 20 * max(small_s, 0.01), (small_s, large_s)


def test_a_header_within_the_bound_is_not_marked_cut() -> None:
    # An ordinary header is parsed whole and not flagged.
    parsed = parse_message(b"From: ann@example.org\r\nSubject: hi\r\n\r\n", b"Hello")
    assert not parsed.header_truncated and "header truncated" not in parsed.defects


def test_a_fetch_that_was_cut_is_recorded() -> None:
    # The IMAP layer fetched only the first bytes of a header: the parse records it.
    assert parse_message(b"From: ann@example.org\r\n", header_cut=True).header_truncated


def test_thousands_of_encoded_words_decode_in_bounded_time() -> None:
    # A subject of 50,000 encoded words costs about what one of a few hundred does.
    subject = b"Subject: " + b" ".join([b"=?utf-8?b?w6k=?="] * 50_000) + b"\r\n"
    parsed, elapsed_s = timed(b"From: ann@example.org\r\n" + subject)
    assert elapsed_s < BOUNDED_S, f"{elapsed_s:.3f} s"
    assert parsed.subject.startswith("éé") and len(parsed.subject) <= parse.MAX_SUBJECT_CHARS


def test_a_huge_body_prefix_is_bounded() -> None:
    # Callers passing a whole 5 MB body still get a parse in bounded time.
    parsed, elapsed_s = timed(b"From: ann@example.org\r\n", b"x" * 5_000_000)
    assert elapsed_s < BOUNDED_S and parsed.snippet.startswith("xxx")


def test_absurd_comment_nesting_still_yields_the_sender() -> None:
    # 3,000 nested "(" made the address parser recurse until RecursionError lost the whole parse.
    parsed = parse_message(b"From: " + b"(" * 3000 + b" ann@example.org\r\nSubject: hi\r\n")
    assert parsed.parse_error is None and parsed.from_[0].address == "ann@example.org"


def test_a_thousand_nested_mime_boundaries_cost_no_more_than_a_flat_mail() -> None:
    # Each boundary is checked on every line below it; past MAX_BOUNDARIES the structure is skipped.
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(1000))
    parsed, elapsed_s = timed(b"From: ann@example.org\r\n" + nested[:60000].replace(b"\r\n", b"\r"))
    assert elapsed_s < 0.025 and parsed.from_[0].address == "ann@example.org", f"{elapsed_s:.3f} s (~0.001 s bounded, ~0.05 s not)"


def test_an_address_with_an_empty_domain_label_is_no_address() -> None:
    # "bob@xxx." cannot be written to (and broke the ack's To header): no usable sender.
    assert parse_message(b"From: bob <bob@xxx.>\r\n").from_ == ()


def test_ten_thousand_recipients_cost_bounded_time() -> None:
    # Address fields are parsed up to MAX_ADDRESS_CHARS in all: the parser costs per address.
    parsed, elapsed_s = timed(b"From: ann@example.org\r\n" + b"To: <>, <>, <>, <>\r\n" * 2500)
    assert elapsed_s < BOUNDED_S and parsed.from_[0].address == "ann@example.org"
