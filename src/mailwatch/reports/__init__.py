"""`mailwatch report`: how the team keeps its promises, what the volume calls for, which questions recur."""

from mailwatch.config import Settings
from mailwatch.errors import MailwatchError
from mailwatch.reports.aggregate import ReportScope, build_report
from mailwatch.reports.period import Period, build_period
from mailwatch.reports.text import render_text

__all__ = ["Period", "ReportScope", "build_period", "build_report", "render_text", "scope_for"]


def scope_for(settings: Settings, period: Period, mailbox: str | None = None) -> ReportScope:
    """The report's scope under a configuration: its SLA, Sent folders and FAQ."""
    if mailbox is not None and mailbox not in {box.name for box in settings.mailboxes}:
        raise MailwatchError(f"no mailbox named {mailbox!r} in {settings.source}")
    sent = tuple((box.name, box.sent_folder) for box in settings.mailboxes if box.sent_folder)
    return ReportScope(period=period, sla_s=settings.sla.first_response.total_seconds(), mailbox=mailbox,
                       sent_folders=sent, faq=settings.faq.entries)
