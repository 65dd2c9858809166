"""The HTML report in real headless Chromium: every chart drawn, nothing fetched from anywhere."""

import re

import pytest

from mailwatch.config.models import FaqEntry
from mailwatch.db.engine import Database
from mailwatch.reports import Period, ReportScope, build_report
from mailwatch.reports.html import render_html
from tests.chromium import png_pixels, render
from tests.integration.test_report import BERLIN, SINCE, SLA_S, UNTIL, plant, planted_threads

BAR_BLUE = (0x2F, 0x6F, 0xDB)  # the charts' bar colour in reports/html.py
URL_LIKE = re.compile(r"https?:|//[a-z0-9]|url\(|@import|<(?:script|link|img|iframe)\b", re.IGNORECASE)
FAQ = (FaqEntry(question="How do I get a refund?", url="https://acme.example/refunds", keywords=("refund",)),)


@pytest.fixture
def page(sqlite_url, tmp_path):
    db = Database(sqlite_url)
    db.ensure_schema()
    plant(db, planted_threads())
    with db.session() as session:
        report = build_report(session, ReportScope(Period(SINCE, UNTIL, BERLIN), SLA_S, "support", faq=FAQ), UNTIL)
    db.dispose()
    path = tmp_path / "report.html"
    path.write_text(render_html(report, BERLIN), encoding="utf-8")
    return path


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))


def test_the_page_draws_every_chart_on_a_phone_and_fetches_nothing(page, tmp_path):
    # A lead opens one file on a phone: five charts and the questions table, no request leaves it.
    assert not URL_LIKE.search(page.read_text())
    rendered = render(page, tmp_path)
    assert rendered.page_requests == []
    assert rendered.dom.count("<svg") == 5
    for title in ("First responses by wait", "by week", "weekday and hour", "per full month", "by age"):
        assert title in rendered.dom
    assert "Where is my order?" in rendered.dom and "How do I get a refund?" in rendered.dom
    width, height, pixels = png_pixels(rendered.screenshot)
    assert (width, height) == (412, 2600)
    assert len(set(pixels)) > 50  # not a blank page
    assert sum(near(pixel, BAR_BLUE) for pixel in pixels) > 20_000  # bars and heatmap cells were painted


def test_the_network_check_sees_a_page_that_fetches(tmp_path):
    # The check above can fail: a page with one remote image is caught asking for it.
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!doctype html><p>hi</p><img src="http://leak.example.test/x.png">')
    assert render(leaky, tmp_path).page_requests == ["http://leak.example.test/x.png"]
