"""Properties: each shortcut parse.py takes for speed gives what the general code gives.

The general code is the standard library or the regex the shortcut avoids, run on the
same random input, so a shortcut can only be faster, never different.
"""

from __future__ import annotations

import re
import string
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.mail import parse

# Characters that matter to Python's address parser, and some that it treats as letters.
ADDRESS_ALPHABET = string.ascii_letters[:6] + string.digits[:3] + ' \t.@<>,;:"()[]\\=?+-_\'' + "\xa0ëÉ日\u3000"
# What the snippet's cleaning treats specially, and ordinary text around it.
TEXT_ALPHABET = "ab >-\r\n\t\x00\x0b\x0c\x1f\x7f\x85\x9f\u2028\u2029\u200b\u202e\ufeff\u061cé\ud800\udfff"


def mailbox_like() -> st.SearchStrategy[str]:
    words = st.text(alphabet=ADDRESS_ALPHABET, max_size=12)
    shaped = st.builds(lambda name, local, domain, gap: f"{name}{gap}<{local}@{domain}>", words, words, words,
                       st.sampled_from(("", " ", "  ", "\t")))
    bare = st.builds(lambda local, domain: f"{local}@{domain}", words, words)
    return st.one_of(shaped, bare, st.text(alphabet=ADDRESS_ALPHABET, max_size=40))


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(mailbox_like(), min_size=1, max_size=3))
def test_plain_mailboxes_read_as_the_address_parser_reads_them(lines):
    # The regex reading of "Name <a@b>" equals getaddresses, and anything else goes to it.
    assert parse._mailboxes(lines) == getaddresses(lines)


def test_the_usual_from_takes_the_shortcut():
    # The shortcut must actually apply to the mail most customers send.
    for line in ("Zoë  Customer12 <customer12@example.com>", "<a.b@c.example>", "ann@example.org",
                 "Ann Q. Example <ann@example.org>", "=?utf-8?q?Zo=C3=AB?= <z@example.org>"):
        assert parse._PLAIN_MAILBOX.fullmatch(line), line


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=TEXT_ALPHABET, max_size=60) | st.text(max_size=60))
def test_snippet_cleaning_equals_the_regexes(text):
    # translate/str.replace give what the two substitutions and the line-break regex give.
    cleaned = parse._CONTROL_BUT_LINE_BREAKS.sub(" ", parse.INVISIBLE.sub("", text))
    assert parse._without_controls(text) == cleaned
    assert parse._lines(text) == parse._LINE_BREAK.split(text)
    assert parse._one_line(text) == parse._LINE_BREAK.sub(" ", text)


PARAM_VALUES = ('text/plain; charset="utf-8"', "TEXT/HTML; Charset=ISO-8859-1; charset=x", "multipart/report; "
                "report-type=delivery-status; boundary=b", "application/pdf; name*=utf-8''r%C3%A9.pdf",
                "attachment; filename=\"a b.txt\"; FILENAME=c", "inline", "bogus", "", "a/b/c; x=\"unterminated",
                "text/plain; charset*0=us; charset*1=-ascii")


@settings(max_examples=400, deadline=None)
@given(content_type=st.sampled_from((None, *PARAM_VALUES)), disposition=st.sampled_from((None, *PARAM_VALUES)),
       asked=st.lists(st.tuples(st.sampled_from(("charset", "CHARSET", "name", "filename", "report-type", "boundary",
                                                 "x", "missing")),
                                st.sampled_from(("content-type", "content-disposition", "Content-Type")),
                                st.booleans()), max_size=8))
def test_a_settled_part_answers_as_a_message(content_type, disposition, asked):
    # The memo returns what Message itself returns, for every parameter, header and failobj.
    lines = [f"Content-Type: {content_type}"] * (content_type is not None)
    lines += [f"Content-Disposition: {disposition}"] * (disposition is not None)
    raw = ("\r\n".join(["Subject: x", *lines]) + "\r\n\r\nbody\r\n").encode()
    plain = BytesParser(policy=policy.compat32).parsebytes(raw)
    part = BytesParser(parse._Part, policy=policy.compat32).parsebytes(raw)
    part.settle()
    missing = object()
    for _ in range(2):  # the second round reads the memo
        assert part.get_content_type() == plain.get_content_type()
        assert part.get_content_charset() == plain.get_content_charset()
        assert part.get_filename(missing) == plain.get_filename(missing)
        for param, header, unquote in asked:
            assert part.get_param(param, missing, header, unquote) == plain.get_param(param, missing, header, unquote)
    assert isinstance(part, Message)


def test_cleaning_scans_nothing_it_need_not():
    # ASCII text never meets the regexes; other clean text meets one search only.
    assert parse._without_controls("plain\ttext\r\n") == "plain text\r\n"
    assert parse._without_controls("café\u200b") == "café"
    assert re.search(parse._SNIPPET_UNCLEAN, "café") is None


@st.composite
def header_blocks(draw) -> bytes:
    names = st.sampled_from((b"Subject", b"From", b"X-Odd!~", b"DKIM-Signature", b"\xc3\xa9", b"Received") * 4
                            + (b"From ", b"", b"Bad Name"))
    one_line = st.binary(max_size=20).map(lambda value: value.replace(b"\r", b" ").replace(b"\n", b" "))
    values = one_line | one_line | st.binary(max_size=20) | st.sampled_from(
        (b" plain", b"", b" =?utf-8?q?x?=", b"\t\r\n\tfolded", b" a\rb: c", b" \r\n", b"\r\nFrom x"))
    lines = []
    for n in range(draw(st.integers(1, 6))):
        kind = "field" if n == 0 else draw(st.sampled_from(("field",) * 6 + ("continuation",) * 3 + ("raw",)))
        if kind == "field":
            lines.append(draw(names) + b":" + draw(values))
        elif kind == "continuation":
            lines.append(draw(st.sampled_from((b" ", b"\t"))) + draw(values))
        else:
            lines.append(draw(st.binary(max_size=15)))
    ends = st.sampled_from((b"\r\n", b"\n", b"\r"))
    return b"".join(line + draw(ends) for line in lines).rstrip(b"\r\n")


@settings(max_examples=500, deadline=None)
@given(head=header_blocks())
def test_a_plain_header_reads_as_the_feed_parser_reads_it(head):
    # Fields, raw values, defects and the Unix From equal the header-only feed parse; else the parser does it.
    fast = parse._plain_header(head)
    if fast is None:
        return
    full = BytesParser(parse._Part, policy=policy.compat32).parsebytes(head + b"\r\n\r\n", headersonly=True)
    assert fast._headers == full._headers
    assert [repr(d) for d in fast.defects] == [repr(d) for d in full.defects]
    assert (fast.get_unixfrom(), fast.get_default_type(), fast.get_payload() or "") == (
        full.get_unixfrom(), full.get_default_type(), full.get_payload())


def test_a_usual_header_takes_the_plain_reading():
    # The shortcut must apply to real mail: folded DKIM, Received and 8-bit names included.
    head = (b"Return-Path: <a@b.example>\r\nReceived: from x\r\n\tby y; Mon, 1 Jan 2024\r\n"
            b"DKIM-Signature: v=1;\r\n\tb=abc\r\nFrom: Zo\xc3\xab <z@b.example>\r\nSubject: hi")
    assert parse._plain_header(head) is not None


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=TEXT_ALPHABET + "=?:\udcc3\udca9", max_size=40) | st.text(max_size=40))
def test_ascii_values_skip_only_what_cannot_change_them(text):
    # neutralise and _unfolded give what their general path gives.
    assert parse.neutralise(text) == " ".join(parse._CONTROL.sub(" ", parse.INVISIBLE.sub("", text)).split())
    try:
        unfolded = parse._FOLD.sub("", parse._text(parse._raw_bytes(text)))
    except UnicodeEncodeError:  # a surrogate no 8-bit byte escapes to: never in a parsed value
        with pytest.raises(UnicodeEncodeError):
            parse._unfolded(text)
    else:
        assert parse._unfolded(text) == unfolded
