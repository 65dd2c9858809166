"""The cheaper parse gives exactly the ParsedMessage of the parse it replaced, field for field.

`tests/reference/parse_before.py` is the implementation as it was before the fast paths
(issue 18), kept verbatim so this comparison is against real code, not remembered results.
Every mail of both shared corpora is parsed whole, as IMAP fetches it (bounded header,
8 KiB body prefix) and cut mid-body; then the fuzzer's mutations of them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import fetched_from, mutate, seeds
from mailwatch.mail import parse
from tests.reference import parse_before

try:
    POOL = seeds()
except SystemExit:  # the shared corpora are absent
    POOL = []
needs_pool = pytest.mark.skipif(not POOL, reason="the shared corpora are not there")
ODD_CUT_BYTES = 777  # a body prefix ending mid base64 quantum, mid QP escape, mid multibyte character
FUZZ_MAILS = 300  # seeded mutations checked on every run; hypothesis adds its own below


def plain(value: object) -> object:
    """A value with the module's own classes replaced by plain data, so two modules compare."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {key: plain(values) for key, values in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value


def assert_same(header: bytes, body: bytes, header_cut: bool = False) -> None:
    new = parse.parse_message(header, body, origin="7.42", header_cut=header_cut)
    old = parse_before.parse_message(header, body, origin="7.42", header_cut=header_cut)
    assert plain(new) == plain(old)


def assert_same_fetched(raw: bytes) -> None:
    fetched = fetched_from(raw, 1, datetime.now(UTC))
    assert_same(fetched.header, fetched.body_prefix, fetched.header_cut)


@needs_pool
def test_every_corpus_mail_parses_exactly_as_before():
    # Whole, as fetched, and cut short: the same fields, headers, snippet and defects.
    for raw in POOL:
        header, body = parse.split_raw(raw)
        assert_same(header, body)
        assert_same(header, body[:ODD_CUT_BYTES])
        assert_same_fetched(raw)


@needs_pool
def test_seeded_fuzz_mutations_parse_exactly_as_before():
    # The mutations bench.fuzz throws at ingest: flipped bytes, splices, hostile fields, line ends.
    for n in range(FUZZ_MAILS):
        rng = random.Random(n)
        assert_same_fetched(mutate(rng, rng.choice(POOL), POOL))


@needs_pool
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.sampled_from(POOL or [b""]), rnd=st.randoms(use_true_random=False), noise=st.binary(max_size=400),
       where=st.floats(0, 1))
def test_any_mutated_mail_parses_exactly_as_before(seed, rnd, noise, where):
    # As test_fuzz_property mutates: a mutated corpus mail with raw noise spliced in.
    raw = mutate(rnd, seed, POOL)
    cut = int(len(raw) * where)
    assert_same_fetched(raw[:cut] + noise + raw[cut:])
