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


@given(present=st.sets(st.sampled_from(sorted(rules._LIST_NAMES | rules._AUTOREPLY_NAMES) + ["subject", "to"])))
def test_has_any_is_a_lookup_of_each_name(present):
    # Whatever mapping holds the headers, _has_any says what a lookup per name says.
    headers = {name: ("x",) for name in present}
    for mapping in (headers, MappingProxyType(headers)):
        msg = ParsedMessage(message_id="<a@b>", headers=mapping)
        for names in (rules._LIST_NAMES, rules._AUTOREPLY_NAMES, rules._HELPDESK_NAMES, rules._CHALLENGE_NAMES):
            assert rules._has_any(msg, names) == any(msg.header(name) is not None for name in names)


def test_parsed_headers_answer_has_any():
    # ParsedMessage's own headers mapping gives the dict view _has_any relies on.
    msg = parse_message(b"From: a@b.example\r\nList-Id: <l.example>\r\n\r\n", b"hi")
    assert rules._has_any(msg, rules._LIST_NAMES)
    assert not rules._has_any(msg, rules._CHALLENGE_NAMES)
