"""The report for people, as plain text: the promise, the volume, the questions, in that order."""

from datetime import datetime, timedelta, tzinfo

from mailwatch.durations import rounded, within
from mailwatch.sla import human_time
from mailwatch.wording import by_count, counted


def duration(seconds: float | None) -> str:
    """'2h 5m', 'under a minute', or '-' when there is nothing to measure."""
    return rounded(timedelta(seconds=seconds)) if seconds is not None else "-"


def within_duration(seconds: float | None) -> str:
    """'within 2h 5m', 'within a minute' (never "within under a minute"), or '-'."""
    return within(timedelta(seconds=seconds)) if seconds is not None else "-"


def local(stamp: str, tz: tzinfo) -> str:
    """An ISO 'Z' time of the report as people read it."""
    return human_time(datetime.fromisoformat(stamp.replace("Z", "+00:00")), tz)


def promise_sentence(report: dict) -> str:
    """Whether the team keeps the first-response promise, in one sentence."""
    first = report["first_response"]
    if not first["decided"]:
        return f"No conversation of this period has reached its {duration(report['sla_s'])} deadline yet."
    return (f"{first['within_sla_pct']:.0f}% of conversations got a first answer {within_duration(report['sla_s'])} "
            f"({first['within_sla']} of {first['decided']} whose deadline has come).")


def staffing_sentence(staffing: dict) -> str:
    """What the 400-a-month rule says about the volume, and why."""
    months, rule = staffing["months"], staffing["rule_per_person"]
    if not months:
        return "Staffing: no full month of mail is logged yet, so the volume rule cannot be applied."
    average = staffing["average_per_month"]
    span = f"the last {len(months)} full month{'s' if len(months) > 1 else ''} ({months[0]['month']}" + (
        f" to {months[-1]['month']})" if len(months) > 1 else ")")
    people = staffing["dedicated_people_suggested"]
    averaged = f"averaged {average:.0f} {by_count(round(average), 'customer message', 'customer messages')} a month"
    if not people:
        return (f"Staffing: {span} {averaged}, under the {rule} a month "
                f"from which one person should be dedicated to email.")
    return (f"Staffing: {span} {averaged}; at one dedicated person "
            f"per {rule} a month that calls for {counted(people, 'person', 'people')} on email.")


def render_text(report: dict, tz: tzinfo) -> str:
    """The whole report, one topic a paragraph."""
    period, first, volume, backlog = report["period"], report["first_response"], report["volume"], report["backlog"]
    lines = [
        f"Report from {local(period['since'], tz)} to {local(period['until'], tz)}"
        + (f", mailbox {report['mailbox']}" if report["mailbox"] else ""),
        "",
        promise_sentence(report),
        f"First response: median {duration(first['median_s'])}, 90% {within_duration(first['p90_s'])}, "
        f"longest {duration(first['max_s'])}; answered {first['answered']}, unanswered {first['unanswered']}.",
        f"Volume: {counted(volume['customer_messages'], 'customer message')}, "
        f"{counted(volume['new_threads'], 'new conversation')}.",
        staffing_sentence(report["staffing"]),
        f"Backlog now: {backlog['open']} open, {backlog['overdue']} overdue.",
        "",
        *_questions(report["top_questions"]),
        *_responders(report["responders"]),
        f"Acknowledgments sent: {report['acks']['sent']}; not sent: "
        + (_counts(report["acks"]["suppressed"]) or "none"),
        "Escalations: " + (", ".join(f"{n} at step {step}" for step, n in report["escalations"].items()) or "none"),
    ]
    return "\n".join(lines)


def _questions(questions: list[dict]) -> list[str]:
    if not questions:
        return ["Top questions: none recur yet.", ""]
    lines = ["Top questions (what to put in the FAQ):"]
    for entry in questions:
        covered = f"FAQ: {entry['faq_entry']}" if entry["faq_entry"] else "not in the FAQ"
        lines.append(f"  {entry['count']:>5}  {entry['label'][:60]}  ({covered})")
    return [*lines, ""]


def _responders(responders: list[dict]) -> list[str]:
    if not responders:
        return []
    lines = ["First answers by responder:"]
    lines += [f"  {r['answers']:>5}  {r['who']}  (median {duration(r['median_first_response_s'])})"
              for r in responders]
    return [*lines, ""]


def _counts(counts: dict) -> str:
    """'3 too-old, 1 not-customer': the count first, so "step 1 1" cannot happen."""
    return ", ".join(f"{value} {key}" for key, value in counts.items())
