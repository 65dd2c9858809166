"""Property: a single-part mail parsed header-only with its body attached equals the full parse.

Random charsets (known, unknown, non-text codecs), transfer encodings (quoted-printable,
base64, 7bit, 8bit, nonsense) and bodies, then broken on purpose: base64 cut mid-quantum
or salted with junk, QP escapes cut or invalid. The full parse is the same code with the
shortcut's hint made to match everything, so every mail takes the feed parser.
"""

from __future__ import annotations

import base64
import dataclasses
import quopri
import re
from collections.abc import Mapping
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.mail import parse

CHARSETS = ("utf-8", "iso-8859-1", "windows-1252", "shift_jis", "koi8-r", "us-ascii", "utf8mb4", "x-unknown",
            "rot13", "iso-2022-jp", "")
ENCODINGS = ("quoted-printable", "base64", "7bit", "8bit", "binary", "x-uuencode", "bogus", "")
CONTENT_TYPES = ("text/plain", "text/html", "TEXT/PLAIN", "text", "application/octet-stream", None)
BREAKS = ("none", "cut", "junk", "bad-escape", "line-ends")



def plain(value: object) -> object:
    """A parse result as plain data (the headers mapping compared by its items)."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {key: plain(values) for key, values in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value

def encoded(text: str, charset: str, encoding: str) -> bytes:
    try:
        data = text.encode(charset or "ascii", "replace")
    except (LookupError, TypeError):
        data = text.encode("utf-8")
    if encoding == "base64":
        return base64.encodebytes(data)
    if encoding == "quoted-printable":
        return quopri.encodestring(data)
    return data


def broken(body: bytes, how: str, where: float) -> bytes:
    at = int(len(body) * where)
    if how == "cut":
        return body[:at]
    if how == "junk":
        return body[:at] + b"!*\x00=\xff==" + body[at:]
    if how == "bad-escape":
        return body[:at] + b"=Z=\r\n=4" + body[at:]
    if how == "line-ends":
        return body.replace(b"\n", b"\r")
    return body


@st.composite
def single_part_mails(draw) -> tuple[bytes, bytes]:
    charset, encoding = draw(st.sampled_from(CHARSETS)), draw(st.sampled_from(ENCODINGS))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    lines = [b"From: Ann <ann@example.org>", b"Subject: =?utf-8?q?caf=C3=A9?= help", b"Message-ID: <a@example.org>"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}; charset={charset}".encode())
    if encoding:
        lines.append(f"Content-Transfer-Encoding: {encoding}".encode())
    if draw(st.booleans()):
        lines.append(b"Content-Disposition: attachment; filename=a.txt")
    text = draw(st.text(max_size=300)) + "\n> quoted\nOn Mon, Ann wrote:\n" * draw(st.integers(0, 1))
    body = broken(encoded(text, charset, encoding), draw(st.sampled_from(BREAKS)), draw(st.floats(0, 1)))
    ending = draw(st.sampled_from((b"\r\n", b"\n")))
    return ending.join(lines) + ending * 2, body + draw(st.binary(max_size=20))


@settings(max_examples=400, deadline=None)
@given(mail=single_part_mails())
def test_single_part_fast_path_equals_the_full_parse(mail):
    # The snippet, content type, defects and every header are what the full parse gives.
    header, body = mail
    assert parse._NESTED_HINT.search(header) is None  # the generated mail does take the fast path
    fast = plain(parse.parse_message(header, body, origin="1.2"))
    with patch.object(parse, "_NESTED_HINT", re.compile(rb"")):  # matches everywhere: the full parse
        assert fast == plain(parse.parse_message(header, body, origin="1.2"))
