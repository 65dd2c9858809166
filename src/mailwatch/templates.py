"""Jinja templates in a sandbox, rendered into ready-to-send mail.

Users override any packaged template by putting a file of the same name in
`service.templates`. Templates are compiled and test-rendered by `mailwatch check`,
so a typo is reported with its file and line at start, not when mail arrives.
"""

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address as HeaderAddress
from pathlib import Path

import structlog
from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from mailwatch.errors import TemplateProblem
from mailwatch.mail.compose import ComposedMail, compose
from mailwatch.mail.parse import INVISIBLE
from mailwatch.resources import packaged_dir
from mailwatch.wording import by_count, counted

log = structlog.get_logger(__name__)

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # never inside a header value
SUBJECT_LIMIT = 200  # characters of a customer's subject we repeat (corpus has 5,000)
REFERENCES_KEPT = 10  # the tail of a long References chain is what threads a reply


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """Text made safe for a header: one line, no control characters, bounded length.

    "=?" is split because Python's header registry decodes anything shaped like an RFC 2047
    word in a value it is given: a customer's literal "=?bogus?q?=F0…" would come back as
    undecodable bytes and make the whole ack impossible to serialise (fuzz seed 21).
    """
    flat = " ".join(CONTROL.sub(" ", INVISIBLE.sub("", text)).split()).replace("=?", "= ?")
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class Templates:
    """The sandboxed Jinja environment: user folder first, packaged defaults second."""

    def __init__(self, override_dir: Path | None = None) -> None:
        packaged = packaged_dir("templates")
        self.env = _environment([override_dir, packaged] if override_dir else [packaged])
        # A user template that fails on some customer's data must not stop that mail.
        self.fallback = _environment([packaged]) if override_dir else None

    def render(self, name: str, context: Mapping[str, object], env: SandboxedEnvironment | None = None) -> str:
        """Render one template, turning any Jinja failure into a TemplateProblem."""
        try:
            return (env or self.env).get_template(name).render(context)
        except TemplateSyntaxError as exc:
            raise TemplateProblem([f"{exc.filename or name}: line {exc.lineno}: {exc.message}"]) from None
        except TemplateError as exc:
            raise TemplateProblem([f"{name}: line {_template_line(exc, name)}: {exc}"]) from None

    def render_mail(self, kind: str, context: Mapping[str, object]) -> RenderedMail:
        """Render `{kind}.subject.j2`, `.txt.j2` and `.html.j2`; the packaged ones if an override fails."""
        try:
            return self._render_mail(kind, context)
        except TemplateProblem as exc:
            if self.fallback is None:
                raise
            log.error("template_failed", kind=kind, problems=exc.problems, hint="sent with the packaged template")
            return self._render_mail(kind, context, self.fallback)

    def _render_mail(self, kind: str, context: Mapping[str, object], env: SandboxedEnvironment | None = None) -> RenderedMail:
        return RenderedMail(
            subject=one_line(self.render(f"{kind}.subject.j2", context, env), limit=400),
            text=self.render(f"{kind}.txt.j2", context, env),
            html=self.render(f"{kind}.html.j2", context, env),
        )

    def check(self, samples: Mapping[str, Mapping[str, object]]) -> list[str]:
        """Render every kind against a sample context; the problems found, if any."""
        problems: list[str] = []
        for kind, context in samples.items():
            try:
                self._render_mail(kind, context)  # no fallback: check reports the user's mistakes
            except TemplateProblem as exc:
                problems.extend(exc.problems)
        return problems


def _environment(folders: Sequence[Path]) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(folder)) for folder in folders]),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # Counts in words, so user templates can say "1 conversation" as easily as ours do.
    env.globals.update(counted=counted, by_count=by_count)
    return env


def _template_line(exc: BaseException, name: str) -> int | str:
    """The template line a runtime error happened on (Jinja rewrites tracebacks)."""
    tb, line = exc.__traceback__, "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def our_message_id(ticket: int, now: datetime, domain: str) -> str:
    """A Message-ID that `rules` recognises as mailwatch's own (loop protection)."""
    return f"<mailwatch.{ticket}.{int(now.timestamp())}.{secrets.token_hex(6)}@{domain}>"


def header_address(name: str, address: str) -> str:
    """A To/From value that quotes names with commas or quotes, and never breaks a header."""
    try:
        return str(HeaderAddress(display_name=one_line(name, 120), addr_spec=address))
    except (ValueError, IndexError, HeaderParseError):  # e.g. an address Python cannot parse back
        return address


def build_email(
    rendered: RenderedMail, *, sender: str, to: str, message_id: str, date: str,
    in_reply_to: str | None = None, references: Sequence[str] = (),
    extra_headers: Mapping[str, str] | None = None,
) -> ComposedMail:
    """A multipart/alternative message with safe, single-line headers, as outbox-ready bytes.

    Written by `compose`, not `EmailMessage`: its header registry re-parsed every value and
    was most of an ack's CPU (issue 18). Every kind of mail we send goes this one way.
    """
    subject = one_line(rendered.subject, limit=400)
    headers = [("From", sender), ("To", to), ("Subject", subject), ("Date", date), ("Message-ID", message_id)]
    if in_reply_to:
        headers.append(("In-Reply-To", in_reply_to))
        headers.append(("References", " ".join([*references[-(REFERENCES_KEPT - 1):], in_reply_to])))
    headers.extend((key, one_line(value)) for key, value in (extra_headers or {}).items())
    return ComposedMail(message_id, subject, compose(headers, rendered.text, rendered.html))
