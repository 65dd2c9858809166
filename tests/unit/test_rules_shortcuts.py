"""Properties: the shortcuts rules.py takes for speed decide as the general code does."""

from __future__ import annotations

import string
import unicodedata
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.mail import rules
from mailwatch.mail.parse import ParsedMessage, parse_message


def folded_in_full(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=string.printable, max_size=40) | st.text(max_size=40))
def test_ascii_subjects_fold_as_unicode_folding_does(text):
    # The ASCII shortcut of _fold gives what NFKD, dropping marks and NFC give.
    assert rules._fold(text) == folded_in_full(text)


MARKER_HEADERS = (rules._LIST_HEADERS, rules._LIST_SOFTWARE_HEADERS, rules._AUTOREPLY_HEADERS,
                  rules._HELPDESK_HEADERS, rules._CHALLENGE_HEADERS)


MARKER_NAMES = sorted({name for names in MARKER_HEADERS for name in names})


@given(present=st.sets(st.sampled_from([*MARKER_NAMES, "subject", "to"])))
def test_present_is_a_lookup_of_each_name(present):
    # Whatever mapping holds the headers, _present says what a lookup per name says.
    headers = {name: ("x",) for name in present}
    for mapping in (headers, MappingProxyType(headers)):
        msg = ParsedMessage(message_id="<a@b>", headers=mapping)
        for names in MARKER_HEADERS:
            assert rules._present(msg, names) == [name for name in names if msg.header(name) is not None]


def test_parsed_headers_answer_present():
    # ParsedMessage's own headers mapping gives the dict view _present relies on.
    msg = parse_message(b"From: a@b.example\r\nList-Id: <l.example>\r\n\r\n", b"hi")
    assert rules._present(msg, rules._LIST_HEADERS) == ["list-id"]
    assert rules._present(msg, rules._CHALLENGE_HEADERS) == []
