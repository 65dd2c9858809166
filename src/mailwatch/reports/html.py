"""`--html FILE` and the weekly email: one self-contained page (inline CSS and SVG, no URL) a lead reads on a phone.

The three answers come first — is the promise kept, does the volume call for a
dedicated person, which questions belong in the FAQ — and the charts behind them follow.
"""

from datetime import tzinfo
from html import escape

from mailwatch.reports.charts import Line, bar_chart, heatmap
from mailwatch.reports.text import duration, local, promise_sentence, staffing_sentence, within_duration

STYLE = """
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --bar: #2f6fdb; --ref: #d2452f; --line: #d9dee7; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f4f6fa; }
main { max-width: 760px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5rem; margin: 0.2em 0; } h2 { font-size: 1.1rem; margin: 0 0 0.4em; }
.period { color: var(--muted); margin-top: 0; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px; margin: 12px 0; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 10px; }
.answer { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
.answer .figure { font-size: 1.8rem; font-weight: 700; }
.answer.ok .figure { color: #1c7c3c; } .answer.warn .figure { color: #b5441b; }
svg { width: 100%; height: auto; display: block; }
svg .bar { fill: var(--bar); } svg .cell { fill: var(--bar); }
svg .axis { stroke: var(--muted); } svg .ref { stroke: var(--ref); stroke-width: 2; stroke-dasharray: 6 4; }
svg text { font: 15px system-ui, sans-serif; fill: var(--muted); } svg .value { fill: var(--ink); font-size: 13px; }
svg .ref-label { fill: var(--ref); font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 4px; }
table { width: 100%; border-collapse: collapse; font-size: 0.95rem; }
th, td { text-align: left; padding: 6px 4px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n { text-align: right; white-space: nowrap; } .missing { color: #b5441b; font-weight: 600; }
"""
GOOD_SLA_PCT = 90  # from here the promise counts as kept on the page's first card


def short(seconds: float | None) -> str:
    """'4h', '2d', 'longer' for a histogram edge."""
    if seconds is None:
        return "longer"
    return f"{seconds / 86400:g}d" if seconds >= 86400 and seconds % 86400 == 0 else f"{seconds / 3600:g}h"


def render_html(report: dict, tz: tzinfo) -> str:
    """The whole page."""
    period = report["period"]
    title = "Support report" + (f" — {report['mailbox']}" if report["mailbox"] else "")
    sections = [_answers(report), _first_response(report), _weekly(report), _hours(report), _monthly(report),
                _backlog(report), _questions(report), _others(report)]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{escape(title)}</h1><p class=\"period\">{escape(local(period['since'], tz))} – "
            f"{escape(local(period['until'], tz))}</p>{''.join(sections)}</main></body></html>")


def _card(kind: str, heading: str, figure: str, sentence: str) -> str:
    return (f'<div class="answer {kind}"><div>{escape(heading)}</div><div class="figure">{escape(figure)}</div>'
            f"<div>{escape(sentence)}</div></div>")


def _answers(report: dict) -> str:
    first, staffing = report["first_response"], report["staffing"]
    pct = first["within_sla_pct"]
    missing = [q for q in report["top_questions"] if not q["faq_entry"]]
    people = staffing["dedicated_people_suggested"]
    return '<div class="answers">' + "".join([
        _card("ok" if pct is not None and pct >= GOOD_SLA_PCT else "warn",
              f"Answered {within_duration(report['sla_s'])}", "-" if pct is None else f"{pct:.0f}%",
              promise_sentence(report)),
        _card("warn" if people else "ok", "Dedicated people for email", str(people), staffing_sentence(staffing)),
        _card("warn" if missing else "ok", "Recurring questions not in the FAQ", str(len(missing)),
              "See the table of top questions below." if missing else "Every recurring question has an FAQ entry."),
    ]) + "</div>"


def _first_response(report: dict) -> str:
    first = report["first_response"]
    bars = [(f"≤{short(row['upto_s'])}" if row["upto_s"] else "longer", row["count"]) for row in first["histogram"]]
    sla_bar = next(i for i, row in enumerate(first["histogram"]) if row["upto_s"] == report["sla_s"])
    promise = Line(f"{duration(report['sla_s'])} promise", after_bar=sla_bar)
    chart = bar_chart("First responses by wait", bars, [promise])
    return (f"<section><h2>First response</h2><p>Median {escape(duration(first['median_s']))}, 90% "
            f"{escape(within_duration(first['p90_s']))}, longest {escape(duration(first['max_s']))}; "
            f"{first['answered']} answered, {first['unanswered']} waiting.</p>{chart}</section>")


def _weekly(report: dict) -> str:
    bars = [(row["week"][5:], row["within_sla_pct"] or 0) for row in report["by_week"]]
    chart = bar_chart("Share answered within the promise, by week", bars, [Line(f"{GOOD_SLA_PCT}%", GOOD_SLA_PCT)],
                      top=100, value_label=lambda v: f"{v:.0f}%")
    return f"<section><h2>Promise kept, by week</h2>{chart}</section>"


def _hours(report: dict) -> str:
    return (f"<section><h2>When customers write</h2><p>Customer messages by weekday and hour "
            f"({escape(report['period']['timezone'])}).</p>{heatmap('Messages by weekday and hour', report['by_hour'])}"
            f"</section>")


def _monthly(report: dict) -> str:
    staffing = report["staffing"]
    bars = [(row["month"], row["customer_messages"]) for row in staffing["months"]]
    rule = staffing["rule_per_person"]
    peak = max([value for _, value in bars] + [rule])
    lines = [Line(f"{n} × {rule}: {n} {'people' if n > 1 else 'person'}", n * rule)
             for n in range(1, int(peak // rule) + 2) if n * rule <= peak * 1.1 or n == 1]
    chart = bar_chart("Customer messages per full month", bars, lines)
    return (f"<section><h2>Volume and staffing</h2><p>{escape(staffing_sentence(staffing))}</p>{chart}</section>")


def _backlog(report: dict) -> str:
    backlog = report["backlog"]
    bars = [(f"≥{short(row['older_than_s'])}" if row["older_than_s"] else "<4h", row["count"])
            for row in backlog["by_age"]]
    chart = bar_chart("Open conversations by age", bars)
    return (f"<section><h2>Backlog</h2><p>{backlog['open']} open now, {backlog['overdue']} past their deadline."
            f"</p>{chart}</section>")


def _questions(report: dict) -> str:
    rows = "".join(
        f'<tr><td class="n">{q["count"]}</td><td>{escape(q["label"])}<br><small>'
        f'{escape(", ".join(f"#{t}" for t in q["tickets"]))}</small></td><td>'
        + (escape(q["faq_entry"]) if q["faq_entry"] else '<span class="missing">not in the FAQ</span>')
        + "</td></tr>" for q in report["top_questions"])
    body = (f"<table><tr><th>Mails</th><th>Question</th><th>FAQ</th></tr>{rows}</table>" if rows
            else "<p>No question recurs yet.</p>")
    return f"<section><h2>Top questions</h2>{body}</section>"


def _others(report: dict) -> str:
    rows = "".join(f'<tr><td>{escape(r["who"] or "-")}</td><td class="n">{r["answers"]}</td>'
                   f'<td class="n">{escape(duration(r["median_first_response_s"]))}</td></tr>'
                   for r in report["responders"])
    acks = report["acks"]
    suppressed = ", ".join(f"{reason} {n}" for reason, n in acks["suppressed"].items()) or "none"
    escalations = ", ".join(f"step {step}: {n}" for step, n in report["escalations"].items()) or "none"
    return (f"<section><h2>Responders</h2><table><tr><th>Who</th><th>First answers</th><th>Median</th></tr>{rows}"
            f"</table><p>Acknowledgments sent: {acks['sent']}; not sent: {escape(suppressed)}. "
            f"Escalations: {escape(escalations)}.</p></section>")
