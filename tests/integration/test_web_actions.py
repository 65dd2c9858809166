"""The action page on a real daemon: links from the escalation email in the SMTP sink, real Dovecot and database.

GET changes nothing however often it is opened; each POST from the page's forms changes its
thread as `threads --json` shows; forged posts, changed or expired links and oversize
bodies are refused and change nothing.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from structlog.testing import capture_logs

from mailwatch.db.models import Thread
from tests.integration.web_helpers import (
    LEAD, FakeClock, escalated, form_fields, thread_rows, threads_json, web_config)
from tests.mailfactory import customer_mail

HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-store"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC) + timedelta(days=1))


def assert_secure(response: aiohttp.ClientResponse) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, name
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-") and "script" not in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp


async def post(http: aiohttp.ClientSession, link: str, action: str, fields: dict) -> aiohttp.ClientResponse:
    ticket = link.split("/t/")[1].split("?")[0]
    async with http.post(urljoin(link, f"{ticket}/{action}"), data=fields, allow_redirects=False) as response:
        await response.read()
        return response


def test_get_a_hundred_times_changes_nothing_and_each_action_changes_its_thread(
        dovecot, imap_user, config_file, smtp_sink, clock, tmp_path):
    path = web_config(config_file, smtp_sink, tmp_path)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(4)])

    async def scenario() -> None:
        async with escalated(path, clock, smtp_sink, threads=4) as run, aiohttp.ClientSession() as http:
            assert len(run.links) == 4
            before = await threads_json(path)
            for _ in range(25):
                for link in run.links.values():
                    async with http.get(link) as response:
                        assert response.status == 200
                        assert_secure(response)
                        page = await response.text()
            assert await threads_json(path) == before
            answered, taken, snoozed, closed = sorted(run.links)
            pages = {}
            for ticket, action, extra in ((answered, "answered", {"note": "called back <b>"}), (taken, "take", {}),
                                          (snoozed, "snooze", {"until": snooze_time(run)}), (closed, "close", {})):
                async with http.get(run.links[ticket]) as response:
                    fields = form_fields(await response.text())
                response = await post(http, run.links[ticket], action, fields | extra)
                assert response.status == 303, (action, response.status)
                assert_secure(response)
                async with http.get(urljoin(str(response.url), response.headers["Location"])) as shown:
                    assert shown.status == 200
                    pages[action] = await shown.text()
            after = await threads_json(path)
            assert after[answered]["status"] == "answered"
            assert after[closed]["status"] == "closed"
            with run.daemon.db.session() as session:
                assert session.get(Thread, taken).taken_by == LEAD
            assert after[snoozed]["deadline_at"] != before[snoozed]["deadline_at"]
            assert "Marked answered." in pages["answered"] and "called back &lt;b&gt;" in pages["answered"]
            assert f"taken by {LEAD}" in pages["take"]
            assert "snoozed until" in pages["snooze"]
            report = await run.daemon.jobs.sweep(run.arrived + timedelta(hours=3, minutes=1))
            assert {item.ticket for item in report.escalated} & {answered, taken, snoozed, closed} == set()

    asyncio.run(scenario())


def flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def snooze_time(run) -> str:
    local = (run.daemon.clock() + timedelta(days=1)).astimezone(ZoneInfo("Europe/Berlin"))
    return local.strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_forged_posts_changed_or_expired_links_and_big_bodies_are_refused_and_change_nothing(
        dovecot, imap_user, config_file, smtp_sink, clock, tmp_path, caplog):
    path = web_config(config_file, smtp_sink, tmp_path)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(2)])

    async def scenario() -> list[str]:
        async with escalated(path, clock, smtp_sink, threads=2) as run, aiohttp.ClientSession() as http:
            before = thread_rows(run.daemon)
            (one, link), (other, other_link) = sorted(run.links.items())
            async with http.get(link) as response:
                fields = form_fields(await response.text())
            async with http.get(other_link) as response:
                other_fields = form_fields(await response.text())
            for forged in ({"k": fields["k"]}, fields | {"form": flip_last(fields["form"])},
                           fields | {"form": other_fields["form"]}):
                response = await post(http, link, "answered", forged)
                assert response.status == 403, forged
                assert_secure(response)
            assert (await post(http, link, "answered", other_fields)).status == 403  # B's link and form for A
            assert (await post(http, link, "answered", fields | {"note": "x" * 20_000})).status == 413
            # In the middle: base64url's last character may carry unused bits, so changing it can decode the same.
            middle = len(link) - 20
            tampered = link[:middle] + ("A" if link[middle] != "A" else "B") + link[middle + 1:]
            async with http.get(tampered) as response:
                assert response.status == 403 and "fresh link" in await response.text()
                assert_secure(response)
            async with http.get(link.replace(f"/t/{one}?", f"/t/{other}?")) as response:
                assert response.status == 403
            clock.advance(days=8)
            async with http.get(link) as response:
                assert response.status == 410 and "next escalation digest" in await response.text()
            assert (await post(http, link, "answered", fields)).status == 410
            assert thread_rows(run.daemon) == before
        with pytest.raises(OSError):  # the daemon's shutdown closed the listener
            await asyncio.open_connection("127.0.0.1", run.port)
        return [link.split("?k=")[1] for link in run.links.values()]

    with capture_logs() as logs:
        tokens = asyncio.run(scenario())
    outcomes = [event.get("outcome") for event in logs if event["event"].startswith("web_")]
    assert outcomes.count("bad form token") == 3 and "invalid" in outcomes and "expired" in outcomes
    for token in tokens:  # neither our events nor aiohttp's loggers print a link token
        assert token not in repr(logs) and token not in caplog.text
