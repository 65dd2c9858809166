"""Counts read right for 0, 1 and many."""

import pytest

from mailwatch.wording import by_count, counted


@pytest.mark.parametrize(("count", "text"), [(0, "0 emails"), (1, "1 email"), (2, "2 emails")])
def test_counted_noun_agrees_with_its_count(count, text):
    # One thing is singular; none and several are plural.
    assert counted(count, "email") == text


def test_counted_takes_an_irregular_plural():
    # Nouns that do not add -s say so.
    assert counted(1, "reply", "replies") == "1 reply" and counted(3, "reply", "replies") == "3 replies"


def test_by_count_picks_the_phrase_that_agrees():
    # The verb and pronoun follow the count too.
    assert by_count(1, "is past its deadline", "are past their deadline") == "is past its deadline"
    assert by_count(4, "is past its deadline", "are past their deadline") == "are past their deadline"
