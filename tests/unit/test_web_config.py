"""The [web] table: where action links point, and the key that signs them."""

from datetime import timedelta
from pathlib import Path

import pytest

from mailwatch.config import load_settings
from tests.unit.test_config import ENVIRON, problems_in, with_section, write  # noqa: F401 (fixture)

KEY = "a-signing-key-of-at-least-32-bytes-long!"
WEB = """
    [web]
    base_url = "{url}"
    secret_env = "WEB_SECRET"
"""


def _web(url: str = "https://support.acme.example/mailwatch/") -> str:
    return with_section(WEB.format(url=url))


def test_no_web_table_means_no_links(write) -> None:
    assert load_settings(write(with_section("")), ENVIRON).web is None


def test_web_table_loads_with_defaults_and_hides_the_key(write) -> None:
    web = load_settings(write(_web()), {**ENVIRON, "WEB_SECRET": KEY}).web
    assert (web.host, web.port, web.link_lifetime) == ("127.0.0.1", 8025, timedelta(days=7))
    assert web.secret_key == KEY.encode()
    assert KEY not in repr(web) and KEY not in str(web.model_dump()) and KEY not in web.model_dump_json()


@pytest.mark.parametrize("url, reason", [
    ("http://support.acme.example/mailwatch/", "must be https"),
    ("https://support.acme.example/mailwatch", 'must end with "/"'),
    ("https://support.acme.example/?x=1/", "no query"),
    ("ftp://support.acme.example/", "not an http(s) URL"),
])
def test_a_base_url_links_cannot_safely_use_is_refused(write, url: str, reason: str) -> None:
    problems = problems_in(write(_web(url)), {**ENVIRON, "WEB_SECRET": KEY})
    assert len(problems) == 1 and "web.base_url" in problems[0] and reason in problems[0]


def test_http_is_allowed_for_a_loopback_base_url(write) -> None:
    web = load_settings(write(_web("http://127.0.0.1:8025/")), {**ENVIRON, "WEB_SECRET": KEY}).web
    assert web.base_url == "http://127.0.0.1:8025/"


def test_a_short_key_is_refused_without_showing_it(write) -> None:
    problems = problems_in(write(_web()), {**ENVIRON, "WEB_SECRET": "short-key"})
    assert len(problems) == 1 and "web.secret_env" in problems[0] and "32 bytes" in problems[0]
    assert "short-key" not in problems[0]


def test_a_missing_key_is_refused(write) -> None:
    problems = problems_in(write(with_section('[web]\nbase_url = "https://a.example/"\n')), ENVIRON)
    assert len(problems) == 1 and "web.secret" in problems[0] and "required" in problems[0]


def test_the_key_may_come_from_a_file(write, tmp_path: Path) -> None:
    (tmp_path / "web-secret").write_text(KEY + "\n")
    text = with_section('[web]\nbase_url = "https://a.example/"\nsecret_file = "web-secret"\n')
    assert load_settings(write(text), ENVIRON).web.secret_key == KEY.encode()
