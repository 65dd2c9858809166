"""mail/parse.py: raw bytes → ParsedMessage, on the public corpus and on small inline mail."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.mail.parse import (
    MAX_ID_CHARS,
    MAX_SNIPPET_CHARS,
    MAX_SUBJECT_CHARS,
    Address,
    ParsedMessage,
    html_to_text,
    neutralise,
    parse_message,
    split_raw,
)
from mailwatch.mail.rules import Identity, classify

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def _manifest() -> list[dict]:
    path = CORPUS / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


MANIFEST = _manifest()
BY_FILE = {entry["file"]: entry for entry in MANIFEST}
needs_corpus = pytest.mark.skipif(not MANIFEST, reason=f"corpus not found at {CORPUS}")


def corpus(prefix: str) -> ParsedMessage:
    (path,) = CORPUS.glob(f"{prefix}-*.eml")
    return parse_message(*split_raw(path.read_bytes()))


def message(text: str, body: str = "Hello, please help.\n") -> ParsedMessage:
    """Parses an inline, dedented header block and body."""
    return parse_message(textwrap.dedent(text).lstrip().encode("utf-8"), body.encode("utf-8"))


# --- the corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_corpus_message_parses_with_its_message_id(entry: dict) -> None:
    # Every corpus file parses without error and keeps its Message-ID, or gets a synthesised one.
    parsed = parse_message(*split_raw((CORPUS / entry["file"]).read_bytes()))
    assert parsed.parse_error is None
    if entry["message_id"] is None:
        assert parsed.message_id_synthesised
        assert parsed.message_id.startswith("<synthesised.") and parsed.message_id.endswith("@mailwatch.invalid>")
    else:
        assert (parsed.message_id, parsed.message_id_synthesised) == (entry["message_id"], False)


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["threads_to"]], ids=lambda e: e["file"])
def test_corpus_reply_references_its_parent(entry: dict) -> None:
    # In-Reply-To/References name the Message-ID of the message a reply threads under.
    parsed = parse_message(*split_raw((CORPUS / entry["file"]).read_bytes()))
    parent_id = BY_FILE[entry["threads_to"]]["message_id"]
    assert parent_id in (parsed.in_reply_to, *parsed.references)


@needs_corpus
def test_folded_references_keep_every_id_in_order() -> None:
    # References folded over two lines yield both IDs, oldest first (corpus 26).
    parsed = corpus("26")
    first, reply = BY_FILE["23-thread-first.eml"]["message_id"], BY_FILE["24-thread-customer-reply.eml"]["message_id"]
    assert parsed.references == (first, reply)
    assert parsed.in_reply_to == BY_FILE["24-thread-customer-reply.eml"]["message_id"]


@needs_corpus
def test_utf8_encoded_words_decode_with_emoji() -> None:
    # Two B/Q encoded-words split mid-word decode to one subject with its 4-byte emoji (corpus 02).
    parsed = corpus("02")
    assert parsed.subject == "Återbetalning för order 58213 – fortfarande inte mottagen 🙁"
    assert parsed.from_ == (Address("Zoë Lindström", "zoe.lindstrom@example.net"),)


@needs_corpus
def test_adjacent_latin1_words_join_without_space() -> None:
    # Adjacent encoded-words join without the folding whitespace (RFC 2047 6.2, corpus 03).
    parsed = corpus("03")
    assert parsed.subject == "Problème de facturation : carte débitée deux fois"
    assert parsed.from_[0].name == "Renée Lefèvre"


@needs_corpus
def test_raw_utf8_headers_decode_as_utf8() -> None:
    # Raw UTF-8 header bytes (RFC 6532) become proper text, not surrogates (corpus 07).
    parsed = corpus("07")
    assert parsed.from_ == (Address("Łukasz Żółkiewski", "lukasz.zolkiewski@example.org"),)
    assert parsed.subject == "Zamówienie nr 7781 – brak faktury VAT"
    assert parsed.to[0].name == "Dział Wsparcia Acme"


@needs_corpus
def test_quoted_display_name_with_comma_stays_one_address() -> None:
    # A quoted name holding a comma and escaped quotes is one mailbox (corpus 08).
    parsed = corpus("08")
    assert parsed.from_ == (Address('O\'Brien, Siobhan "Shiv"', "siobhan.obrien@example.com"),)
    assert [a.address for a in parsed.cc] == ["declan.murphy@example.com"]
    assert parsed.from_[0].formatted() == '"O\'Brien, Siobhan \\"Shiv\\"" <siobhan.obrien@example.com>'


@needs_corpus
def test_overlong_subject_is_truncated() -> None:
    # A 5453-character subject is cut to MAX_SUBJECT_CHARS (corpus 34).
    parsed = corpus("34")
    assert len(parsed.subject) == MAX_SUBJECT_CHARS
    assert parsed.subject.startswith("Import fails every night: Traceback")


@needs_corpus
def test_decoded_crlf_in_subject_is_neutralised() -> None:
    # An encoded CR LF cannot inject a Bcc: the subject stays one line (corpus 35).
    parsed = corpus("35")
    assert parsed.subject == "Hi Bcc: victim@example.net"
    assert all(a.address != "victim@example.net" for a in (*parsed.to, *parsed.cc))


@needs_corpus
def test_nul_and_control_bytes_leave_the_snippet() -> None:
    # NUL and other control bytes never reach the snippet (corpus 36).
    snippet = corpus("36").snippet
    assert snippet and not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in snippet)
    assert "report.csv" in snippet


@needs_corpus
def test_unknown_charset_falls_back_to_utf8() -> None:
    # utf8mb4 is not a codec: subject and body decode as UTF-8 and the defect is recorded (corpus 31).
    parsed = corpus("31")
    assert parsed.subject == "Café machine order — wrong model delivered"
    assert "Café Pro 2" in parsed.snippet
    assert "unknown charset utf8mb4" in parsed.defects


@needs_corpus
def test_body_mislabelled_as_utf8_decodes_as_cp1252() -> None:
    # Latin-1 bytes under charset=utf-8 decode by fallback, not replacement characters (corpus 30).
    assert "Rechnung für März" in corpus("30").snippet


@needs_corpus
def test_html_only_body_becomes_text_without_markup() -> None:
    # HTML becomes plain text: entities decoded, tags and the tracking pixel gone (corpus 04).
    snippet = corpus("04").snippet
    assert "cracked — the box" in snippet and "doesn't say" in snippet
    assert "<" not in snippet and "gif" not in snippet


@needs_corpus
def test_snippet_drops_quoted_text_and_attribution() -> None:
    # Quoted lines, the "On … wrote:" line and the U+FEFF inside them leave the snippet (corpus 21, 24).
    reply = corpus("24").snippet
    assert reply.startswith("Forgot to add") and reply.endswith("Sent from my iPhone")
    assert "\ufeff" not in reply and "wrote" not in reply
    assert "wrote" not in corpus("21").snippet


@needs_corpus
def test_damaged_base64_and_missing_boundary_still_give_text() -> None:
    # Broken base64 decodes as far as it can (32); a cut-off multipart keeps its text part (33).
    broken = corpus("32")
    assert "screenshot of the error" in broken.snippet
    assert "InvalidBase64CharactersDefect" in broken.defects
    cut = corpus("33")
    assert cut.snippet.startswith("Hello, Uploads over 10 MB fail")
    assert "CloseBoundaryNotFoundDefect" in cut.defects


@needs_corpus
def test_dates_are_utc_or_none() -> None:
    # Date parses to aware UTC, a trailing comment is fine, a missing Date is None (corpus 04, 28, 29).
    assert corpus("04").date == datetime(2025, 6, 9, 11, 25, 12, tzinfo=timezone.utc)
    assert (corpus("28").date, corpus("28").date_header) == (None, None)
    assert corpus("29").date == datetime(2099, 6, 17, 8, 42, 5, tzinfo=timezone.utc)


@needs_corpus
def test_bounce_report_fields() -> None:
    # A DSN has a null Return-Path and a multipart/report content type (corpus 14).
    parsed = corpus("14")
    assert (parsed.return_path, parsed.content_type, parsed.report_type) == ("", "multipart/report", "delivery-status")
    assert parsed.from_ == (Address("Mail Delivery System", "MAILER-DAEMON@mail.example.net"),)


@needs_corpus
def test_attachment_is_not_the_snippet() -> None:
    # The customer's text part is the snippet, never the PDF attachment (corpus 06).
    assert corpus("06").snippet.startswith("Hi, The attached invoice INV-2025-0611")


# --- synthesised Message-IDs ------------------------------------------------------------

NO_ID = b"From: a@example.com\r\nSubject: hi\r\n\r\n"


def test_synthesised_id_is_stable() -> None:
    # Two parses of the same header bytes give the same synthesised ID.
    first, second = parse_message(NO_ID), parse_message(NO_ID, b"other body")
    assert first.message_id == second.message_id and first.message_id_synthesised


def test_synthesised_id_ignores_line_endings_and_final_blank_line() -> None:
    # The same header fetched with LF endings or without its blank line gets the same ID.
    assert parse_message(NO_ID.replace(b"\r\n", b"\n")).message_id == parse_message(NO_ID).message_id
    assert parse_message(NO_ID.rstrip()).message_id == parse_message(NO_ID).message_id


def test_synthesised_id_differs_between_headers() -> None:
    # Different header bytes never share a synthesised ID, so dedup cannot merge them (corpus 27).
    other = NO_ID.replace(b"hi", b"hello")
    assert parse_message(other).message_id != parse_message(NO_ID).message_id


def test_empty_message_id_is_synthesised() -> None:
    # "Message-ID: <>" and an empty Message-ID count as missing.
    for value in (b"<>", b"", b"   "):
        parsed = parse_message(b"Message-ID: " + value + b"\r\nFrom: a@example.com\r\n")
        assert parsed.message_id_synthesised and parsed.message_id.startswith("<synthesised.")


def test_message_id_whitespace_is_removed_and_bare_id_bracketed() -> None:
    # A folded ID loses its whitespace; an ID without brackets is kept, bracketed.
    assert message("Message-ID: <abc\n  def@example.com>\n").message_id == "<abcdef@example.com>"
    assert message("Message-ID: abc@example.com\n").message_id == "<abc@example.com>"


def test_overlong_ids_hash_alike_in_message_id_and_references() -> None:
    # An ID too long to index is hashed, the same way wherever it appears, so threading still works.
    long_id = "<" + "x" * MAX_ID_CHARS + "@example.com>"
    original = message(f"Message-ID: {long_id}\nFrom: a@example.com\n")
    reply = message(f"Message-ID: <r@example.com>\nIn-Reply-To: {long_id}\nReferences: {long_id}\n")
    assert len(original.message_id) <= MAX_ID_CHARS
    assert reply.in_reply_to == original.message_id == reply.references[0]


# --- headers ----------------------------------------------------------------------------


def test_encoded_comma_in_display_name_does_not_split() -> None:
    # Addresses are parsed before names are decoded, so an encoded comma stays inside the name.
    parsed = message("From: =?utf-8?q?Doe=2C_J=C3=BCrgen?= <jd@example.com>\n")
    assert parsed.from_ == (Address("Doe, Jürgen", "jd@example.com"),)


def test_entries_without_at_sign_are_dropped() -> None:
    # Only entries with a mailbox (local@domain) survive; group syntax and junk do not.
    parsed = message("To: undisclosed-recipients:;, junk, <>, Real <real@example.com>\n")
    assert parsed.to == (Address("Real", "real@example.com"),)


def test_address_case_is_kept() -> None:
    # The address is kept as written; comparisons lowercase it elsewhere.
    assert message("From: Pat <Pat.Doe@Example.COM>\n").from_[0].address == "Pat.Doe@Example.COM"


def test_unknown_charset_in_header_is_recorded() -> None:
    # An encoded word in an unknown charset decodes as UTF-8 and notes the charset.
    parsed = message("Subject: =?x-klingon?q?Qapla=C3=A9?=\n")
    assert parsed.subject == "Qaplaé"
    assert "unknown charset x-klingon" in parsed.defects


def test_damaged_encoded_word_is_shown_as_sent() -> None:
    # An encoded word that cannot be decoded stays as it came, without failing the parse.
    parsed = message("Subject: =?utf-8?b?A?=\n")
    assert parsed.parse_error is None and parsed.subject == "=?utf-8?b?A?="


def test_headers_map_lowercased_names_to_all_values() -> None:
    # `headers` keeps every occurrence, decoded, under the lowercased name; header() is case-insensitive.
    parsed = message("X-Thing: one\nx-thing: =?utf-8?q?t=C3=A5?=\nReceived: a\n b\n")
    assert parsed.headers["x-thing"] == ("one", "tå")
    assert parsed.header("X-THING") == "one" and parsed.header("absent") is None
    assert parsed.header("received") == "a b"


def test_controls_in_any_header_become_spaces() -> None:
    # Tabs, NUL and DEL in a header value turn into single spaces.
    parsed = parse_message(b"Subject: a\tb\x00c\x7fd   e\r\n")
    assert parsed.subject == "a b c d e"


def test_naive_date_is_taken_as_utc() -> None:
    # A -0000 ("no zone information") date is read as UTC; garbage is None, the text is kept.
    naive = message("Date: Mon, 9 Jun 2025 11:25:12 -0000\n")
    assert naive.date == datetime(2025, 6, 9, 11, 25, 12, tzinfo=timezone.utc)
    garbage = message("Date: the day after tomorrow\n")
    assert (garbage.date, garbage.date_header) == (None, "the day after tomorrow")


def test_return_path_forms() -> None:
    # Return-Path is the address inside <>, "" for the null sender, None when absent.
    assert message("Return-Path: <b@example.com>\n").return_path == "b@example.com"
    assert message("Return-Path: <>\n").return_path == ""
    assert message("From: a@example.com\n").return_path is None


def test_formatted_address_is_safe_for_headers() -> None:
    # formatted() quotes specials, encodes non-ASCII names and never emits CR or LF.
    zoe = Address("Zoë", "z@example.net")
    assert zoe.formatted().isascii() and message(f"From: {zoe.formatted()}\n").from_ == (zoe,)
    assert "\n" not in Address("Eve\r\nBcc: x@example.com", "e@example.com").formatted()
    assert Address("", "a@example.com").formatted() == "a@example.com"


# --- body -------------------------------------------------------------------------------


def test_html_skips_script_and_style_and_marks_quotes() -> None:
    # Script and style text is invisible; blockquote lines are marked as quoted.
    text = html_to_text("<style>p{}</style><script>alert(1)</script><p>Hi</p><blockquote>old</blockquote>")
    assert "alert" not in text and "p{}" not in text
    assert "> old" in text and "Hi" in text


def test_unclosed_tag_tail_stays_linear() -> None:
    # A body prefix cut inside tags must not make html.parser rescan the tail once per "<".
    started = time.perf_counter()
    assert html_to_text("<p>Hi</p>" + "<a b=" * 5000).startswith("\nHi")
    assert time.perf_counter() - started < 1.0  # quadratic rescanning took about 2 s here


def test_quoted_only_body_keeps_its_quote() -> None:
    # When a body is nothing but quoted text, the quote is the snippet rather than nothing.
    parsed = message("From: a@example.com\n", "> only a quote\n")
    assert parsed.snippet == "> only a quote"


def test_outlook_original_message_is_cut() -> None:
    # Everything from Outlook's "-----Original Message-----" on is quoted history.
    parsed = message("From: a@example.com\n", "New text\n-----Original Message-----\nFrom: b\nOld text\n")
    assert parsed.snippet == "New text"


def test_snippet_is_bounded() -> None:
    # The snippet never exceeds MAX_SNIPPET_CHARS.
    assert len(message("From: a@example.com\n", "word " * 1000).snippet) <= MAX_SNIPPET_CHARS


def test_truncated_base64_text_part_decodes_best_effort() -> None:
    # A body prefix cut in the middle of a base64 part still yields its first words.
    header = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n"
    parsed = message(header, "SGVsbG8gd29ybGQsIHBsZWFzZSBoZWxw"[:-3])
    assert parsed.snippet.startswith("Hello world")


def test_split_raw_handles_lf_and_missing_body() -> None:
    # split_raw cuts at the first blank line with CRLF or LF endings, or keeps it all as header.
    assert split_raw(b"A: 1\n\nbody\n\nmore") == (b"A: 1\n\n", b"body\n\nmore")
    assert split_raw(b"A: 1\r\n\r\nbody") == (b"A: 1\r\n\r\n", b"body")
    assert split_raw(b"A: 1\r\n") == (b"A: 1\r\n", b"")
    assert split_raw(b"\r\nbody") == (b"\r\n", b"body")


# --- never raises -----------------------------------------------------------------------

HEADER_NAMES = [
    "From", "To", "Cc", "Reply-To", "Sender", "Subject", "Message-ID", "In-Reply-To", "References", "Date",
    "Return-Path", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Auto-Submitted",
    "X-Auto-Response-Suppress", "Precedence", "List-Id", "X-Spam-Status", "MIME-Version",
]
FRAGMENTS = [
    "=?utf-8?q?", "=?utf8mb4?b?", "=?iso-8859-1?Q?=E9", "?=", "<", ">", "\"", "\\", ",", ";", "@", ":", "(", ")",
    "\r\n", "\n", "\r\n ", "\t", "multipart/mixed; boundary=b", "text/html; charset=", "base64", "quoted-printable",
    "report-type=delivery-status", "\x00", "\x85", "é", "🙁", "\ud7ff", "*=utf-8''%E9", "--b", "<p>", "<![if",
]
header_value = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=12).map("".join)
header_block = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_value), max_size=10).map(
    lambda pairs: "".join(f"{name}: {value}\r\n" for name, value in pairs).encode("utf-8", "surrogatepass")
)
body_block = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=30).map(
    lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
)
IDENTITY = Identity(own_addresses=frozenset({"support@acme.example"}), staff=("@acme.example",))


def _assert_clean(parsed: ParsedMessage) -> None:
    assert isinstance(parsed, ParsedMessage)
    assert parsed.parse_error is None, parsed.parse_error
    assert not any(d.startswith("no snippet") for d in parsed.defects), parsed.defects
    for text in (parsed.subject, parsed.snippet, parsed.message_id, *(a.formatted() for a in parsed.from_)):
        text.encode("utf-8")  # no lone surrogates anywhere
        assert "\r" not in text and "\n" not in text
    classify(parsed, IDENTITY)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_random_bytes_never_raise(header: bytes, body: bytes) -> None:
    # Any bytes at all parse without raising and without needing the safety net.
    _assert_clean(parse_message(header, body))
    _assert_clean(parse_message(*split_raw(header + body)))


@settings(max_examples=150, deadline=None)
@given(header_block, body_block)
def test_random_header_text_never_raises(header: bytes, body: bytes) -> None:
    # Header-shaped text full of encoded words, brackets, controls and MIME parts parses cleanly.
    _assert_clean(parse_message(header, body))


def test_unexpected_failure_is_salvaged(monkeypatch: pytest.MonkeyPatch) -> None:
    # If parsing fails unexpectedly, the caller still gets the Message-ID and the error, not an exception.
    def boom(msg: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("mailwatch.mail.parse._raw_headers", boom)
    parsed = parse_message(b"Subject: x\r\nMessage-ID: <keep@example.com>\r\n")
    assert (parsed.message_id, parsed.message_id_synthesised) == ("<keep@example.com>", False)
    assert parsed.parse_error == "RuntimeError: boom"
    assert parse_message(NO_ID).message_id_synthesised


def test_wrong_argument_types_do_not_raise() -> None:
    # Even a caller's type slip returns a ParsedMessage rather than raising.
    parsed = parse_message("Subject: str, not bytes\n", None)  # type: ignore[arg-type]
    assert parsed.subject == "str, not bytes"


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200d", "\u2060", "\u200f", "\u061c"])
def test_bidi_overrides_and_zero_width_characters_are_stripped(char: str) -> None:
    # Invisible characters that reorder or hide text never reach a subject, an address name or a snippet.
    raw = f"From: Pat{char} <pat@example.com>\nSubject: Refund{char} for order 12{char}34\nMessage-ID: <b@x>\n\n"
    parsed = parse_message(raw.encode(), f"Please pay to IBAN{char} XX{char}00\n".encode())
    assert parsed.subject == "Refund for order 1234"
    assert parsed.from_[0].name == "Pat" and parsed.snippet == "Please pay to IBAN XX00"
    assert neutralise(f"a{char}b") == "ab"


def test_one_line_strips_invisible_characters_from_headers_we_write() -> None:
    # The header-safe form used for subjects we send drops them too.
    from mailwatch.templates import one_line

    assert one_line("Re: \u202eevil\u202c [#1001]") == "Re: evil [#1001]"
