"""A real browser on the action page: headless Chromium at a phone's width, driven by chromium-driver.

It opens the link from the escalation email in the SMTP sink, clicks Answered, and the
thread is answered; the screenshot of the page is not blank.
"""

import asyncio
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.chromium import FLAGS, chromium_binary, png_pixels
from tests.integration.web_helpers import FakeClock, escalated, thread_rows, web_config
from tests.mailfactory import customer_mail

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402 - after the skip
from selenium.webdriver.common.by import By  # noqa: E402

PHONE_WIDTH = 412
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def chromium_driver() -> str:
    driver = shutil.which("chromedriver")
    if driver is None:
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    return driver


def phone_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for flag in FLAGS:  # offline as the other page tests, but the daemon's loopback address resolves
        options.add_argument(flag + ", EXCLUDE 127.0.0.1" if flag.startswith("--host-resolver-rules=") else flag)
    browser = webdriver.Chrome(options=options, service=Service(chromium_driver()))
    # A window cannot be narrower than 500 px: emulate the phone's screen instead, as DevTools does.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": PHONE_WIDTH, "height": 1400, "deviceScaleFactor": 1, "mobile": True})
    return browser


def distinct_colours(png: Path) -> int:
    _, _, pixels = png_pixels(png)
    return len(set(pixels[::7]))


@SQLITE_ONLY
def test_a_phone_browser_opens_the_emailed_link_clicks_answered_and_the_thread_is_answered(
        dovecot, imap_user, config_file, smtp_sink, tmp_path):
    path = web_config(config_file, smtp_sink, tmp_path)
    dovecot.append(imap_user, customer_mail(1))
    clock = FakeClock(datetime.now(UTC) + timedelta(days=1))
    page_png, answered_png = tmp_path / "page.png", tmp_path / "answered.png"

    def click_answered(link: str) -> str:
        browser = phone_browser()
        try:
            browser.get(link)
            assert browser.execute_script("return window.innerWidth") == PHONE_WIDTH
            browser.save_screenshot(str(page_png))
            browser.find_element(By.ID, "note").send_keys("called back")
            browser.find_element(By.XPATH, "//button[text()='Answered']").click()
            browser.find_element(By.CLASS_NAME, "done")  # the page after the 303
            browser.save_screenshot(str(answered_png))
            return browser.page_source
        finally:
            browser.quit()

    async def scenario() -> str:
        async with escalated(path, clock, smtp_sink, threads=1) as run:
            (ticket, link), = run.links.items()
            assert thread_rows(run.daemon)[ticket]["status"] == "open"
            page = await asyncio.to_thread(click_answered, link)
            assert thread_rows(run.daemon)[ticket]["status"] == "answered"
            return page

    page = asyncio.run(scenario())
    assert "Marked answered." in page and "called back" in page
    for png in (page_png, answered_png):
        assert distinct_colours(png) > 3, png  # text, buttons and badges, not one flat colour
    if keep := os.environ.get("MAILWATCH_KEEP_SCREENSHOTS"):
        for png in (page_png, answered_png):
            shutil.copy(png, Path(keep) / f"issue17-{png.name}")
