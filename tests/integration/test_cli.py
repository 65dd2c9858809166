"""The command line as users run it: exit codes, messages, `threads` output."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.cli import main
from mailwatch.db.engine import Database
from tests.mailfactory import customer_mail


def mailwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailwatch.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_config_exits_2_naming_file_and_key(tmp_path):
    # A mistake is reported as FILE: key: reason before anything connects.
    path = tmp_path / "mailwatch.toml"
    path.write_text('[service]\nname = "x"\nfoo = 1\n\n[[mailbox]]\nname = "s"\naddress = "s@x.example"\n'
                    '[mailbox.imap]\nhost = "imap.x.example"\npassword_env = "NOPE_UNSET"\n')
    result = mailwatch("--config", str(path), "check", "--offline")
    assert result.returncode == 2
    assert f"{path}: service.foo: unknown key" in result.stderr
    assert f"{path}: mailbox[0].imap.password_env" in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    # No file at all is a config error too, with the path in the message.
    result = mailwatch("--config", str(tmp_path / "nope.toml"), "check", "--offline")
    assert result.returncode == 2 and "nope.toml" in result.stderr


def test_check_offline_renders_templates_and_rejects_a_broken_one(config_file, smtp_sink, tmp_path):
    # `check --offline` compiles and test-renders templates; a typo is exit 2 with file and line.
    path = config_file(ack=True, smtp=smtp_sink)
    assert mailwatch("--config", str(path), "check", "--offline").returncode == 0
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "ack.html.j2").write_text("<p>\n{{ ticket }\n</p>\n")
    path.write_text(path.read_text().replace('staff = ["@acme.example"]', f'staff = ["@acme.example"]\ntemplates = "{folder}"'))
    result = mailwatch("--config", str(path), "check", "--offline")
    assert result.returncode == 2 and "ack.html.j2: line 2" in result.stderr


def test_check_online_reaches_imap_smtp_and_database(config_file, smtp_sink):
    # `check` logs in to IMAP, reaches the database and the SMTP server.
    result = mailwatch("--config", str(config_file(ack=True, smtp=smtp_sink)), "check")
    assert result.returncode == 0, result.stderr
    assert "INBOX has 0 messages" in result.stdout and "smtp:" in result.stdout


def test_check_online_fails_on_wrong_password(config_file, tmp_path):
    # A refused login is a failure (exit 1) that names the server, never the password.
    path = config_file()
    (tmp_path / "imap-password").write_text("wrong-password-123\n")
    result = mailwatch("--config", str(path), "check")
    assert result.returncode == 1
    assert "login refused" in result.stderr and "wrong-password-123" not in result.stderr + result.stdout


def test_poll_then_threads_json_lists_the_design_fields(dovecot, imap_user, config_file, capsys):
    # `threads --json` prints every field DESIGN.md names, times in ISO 8601 UTC.
    path = config_file()
    dovecot.append_many(imap_user, [customer_mail(1), customer_mail(2)])
    assert main(["--config", str(path), "poll"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "threads", "--json"]) == 0
    threads = json.loads(capsys.readouterr().out)
    assert len(threads) == 2
    for field in ("ticket", "mailbox", "subject", "customer", "status", "first_received_at",
                  "deadline_at", "answered_at", "escalation_level", "messages"):
        assert field in threads[0]
    assert threads[0]["status"] == "open" and threads[0]["first_received_at"].endswith("Z")
    assert threads[0]["customer"] == "customer1@example.com" and threads[0]["messages"] == 1


def test_thread_commands_answer_close_and_reopen(dovecot, imap_user, config_file, capsys):
    # Staff can stop, end and restart a thread's clock by hand.
    path = config_file()
    dovecot.append(imap_user, customer_mail(1))
    main(["--config", str(path), "poll"])
    capsys.readouterr()
    for action, status in (("answered", "answered"), ("reopen", "open"), ("close", "closed")):
        assert main(["--config", str(path), "thread", action, "1001"]) == 0
        assert capsys.readouterr().out.strip() == f"#1001: {status}"
    assert main(["--config", str(path), "threads", "--open", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["--config", str(path), "thread", "answered", "9999"]) == 64


def test_schema_newer_than_the_code_is_refused(config_file, settings, capsys):
    # A database migrated by a newer mailwatch is never written to by an older one.
    database = Database(settings.service.database)
    database.upgrade()
    with database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    database.dispose()
    assert main(["--config", str(config_file()), "poll"]) == 1
    assert "newer than this mailwatch" in capsys.readouterr().err


def test_db_upgrade_migrates_an_empty_database(config_file, settings, capsys):
    # `db upgrade` brings an empty database to the current schema.
    assert main(["--config", str(config_file()), "db", "upgrade"]) == 0
    database = Database(settings.service.database)
    assert database.schema_revision() == database.head_revision()
    database.dispose()


def test_report_counts_messages_answers_and_the_sla(dovecot, imap_user, config_file, capsys, corpus):
    # The report shows what came in, what got answered and how fast, as JSON and as text.
    path = config_file(service_extra='authserv_ids = ["mx.acme.example"]')  # 26 is authenticated by Acme's MX
    for name in ("23-thread-first.eml", "24-thread-customer-reply.eml", "26-staff-reply.eml",
                 "01-plain-ascii.eml", "14-postfix-dsn-bounce.eml"):
        dovecot.append(imap_user, (corpus / name).read_bytes())
    assert main(["--config", str(path), "poll"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["volume"]["customer_messages"], report["volume"]["new_threads"]) == (3, 2)
    first = report["first_response"]
    assert (first["answered"], first["unanswered"], first["within_sla"]) == (1, 1, 1)
    assert first["median_s"] == first["p90_s"] == first["max_s"]
    assert report["backlog"]["open"] == 1 and report["backlog"]["overdue"] == 0
    assert report["period"]["until"].endswith("Z") and report["period"]["timezone"] == "Europe/Berlin"
    assert main(["--config", str(path), "report", "--since", "2020-01-01"]) == 0
    text = capsys.readouterr().out
    assert "answered 1, unanswered 1" in text
    assert "within under" not in text and "Volume: 3 customer messages, 2 new conversations." in text


def test_reopening_a_thread_keeps_its_first_response_in_the_report(dovecot, imap_user, config_file, capsys, corpus):
    # 'thread close' + 'thread reopen' once turned "answered 1, median 2h" into "answered 0".
    path = config_file(service_extra='authserv_ids = ["mx.acme.example"]')  # 26 is authenticated by Acme's MX
    for name in ("23-thread-first.eml", "26-staff-reply.eml"):
        dovecot.append(imap_user, (corpus / name).read_bytes())
    assert main(["--config", str(path), "poll"]) == 0
    assert main(["--config", str(path), "threads", "--json"]) == 0
    answered = [t for t in json.loads(capsys.readouterr().out.split("\n", 1)[1]) if t["answered_at"]]
    ticket = str(answered[0]["ticket"])
    capsys.readouterr()
    assert main(["--config", str(path), "report", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["first_response"]
    assert main(["--config", str(path), "thread", "close", ticket]) == 0
    assert main(["--config", str(path), "thread", "reopen", ticket]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "report", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["first_response"]
    assert before["answered"] == after["answered"] == 1 and after["median_s"] == before["median_s"]


def test_report_writes_csv_and_html_and_refuses_unknown_mailboxes(dovecot, imap_user, config_file, capsys, corpus,
                                                                   tmp_path):
    # --csv DIR and --html FILE write files; a mailbox or a date that does not exist is an error, not an empty report.
    path = config_file()
    dovecot.append(imap_user, (corpus / "23-thread-first.eml").read_bytes())
    assert main(["--config", str(path), "poll"]) == 0
    assert main(["--config", str(path), "report", "--since", "30d", "--mailbox", "support",
                 "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert main(["--config", str(path), "report", "--csv", str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "summary.csv").read_text().splitlines()[1].split(",")[3:5] == ["1", "1"]
    assert main(["--config", str(path), "report", "--mailbox", "nope"]) == 1
    assert main(["--config", str(path), "report", "--since", "2026-12-01", "--until", "2026-11-01"]) == 1
    with pytest.raises(SystemExit):
        main(["--config", str(path), "report", "--since", "last week"])


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SLA = """
[sla]
first_response = "24h"

[[escalation]]
after = "20h"
to = ["lead@acme.example"]

[[escalation]]
after = "24h"
to = ["manager@acme.example"]
"""


def into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run mailwatch writing into a pipe nobody reads any more, as `| head -1` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "mailwatch.cli", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


@SQLITE_ONLY
@pytest.mark.parametrize("command", [["threads"], ["threads", "--json"], ["report", "--json"]])
def test_piping_into_head_is_quiet(config_file, command):
    # A reader that stops early is not a failure: no traceback, exit 0.
    result = into_closed_pipe("--config", str(config_file()), *command)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert "Exception ignored" not in result.stderr


@SQLITE_ONLY
def test_config_is_accepted_after_the_subcommand_too(dovecot, imap_user, config_file, capsys):
    # `mailwatch threads --config X` works like `mailwatch --config X threads`.
    path = str(config_file())
    dovecot.append(imap_user, customer_mail(1))
    assert main(["poll", "--config", path]) == 0
    assert main(["threads", "--json", "--config", path]) == 0
    assert main(["thread", "answered", "1001", "--config", path]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "#1001: answered"


def test_help_describes_every_command_and_action():
    # `--help` at every level says what the command does, not just its usage line.
    top = mailwatch("--help").stdout
    for command in ("check", "db", "run", "poll", "threads", "report", "thread"):
        assert f"    {command} " in top
    assert "exit codes:" in top and "64" in top
    assert "The daemon: watch" in mailwatch("run", "--help").stdout
    upgrade = mailwatch("db", "upgrade", "--help").stdout
    assert upgrade.startswith("usage: mailwatch db upgrade") and "Alembic migrations" in upgrade
    thread = mailwatch("thread", "--help").stdout
    assert all(f"    {action} " in thread for action in ("answered", "close", "reopen"))
    assert "phone" in mailwatch("thread", "answered", "--help").stdout


def test_usage_errors_exit_64_not_the_config_code():
    # 2 means "the configuration"; a wrong command line has its own code.
    result = mailwatch("threads", "--nope")
    assert result.returncode == 64 and "unrecognized arguments: --nope" in result.stderr


@SQLITE_ONLY
def test_unknown_ticket_is_printed_once_and_exits_64(dovecot, imap_user, config_file):
    # One line on stderr, no log line repeating it, and README's code for a wrong command line.
    result = mailwatch("--config", str(config_file()), "thread", "answered", "9999")
    assert result.returncode == 64
    assert [line for line in result.stderr.splitlines() if "9999" in line] == ["mailwatch: no thread with ticket 9999"]


@SQLITE_ONLY
def test_answering_an_answered_thread_says_when_and_how(dovecot, imap_user, config_file, capsys):
    # The second `thread answered` changes nothing and says who stopped the clock, and when.
    path = str(config_file())
    dovecot.append(imap_user, customer_mail(1))
    main(["--config", path, "poll"])
    assert main(["--config", path, "thread", "answered", "1001"]) == 0
    assert main(["--config", path, "thread", "answered", "1001"]) == 0
    first, second = capsys.readouterr().out.splitlines()[-2:]
    assert first == "#1001: answered"
    assert second.startswith("#1001: already answered at ") and second.endswith(" via command")
    assert main(["--config", path, "thread", "close", "1001"]) == 0
    assert main(["--config", path, "thread", "close", "1001"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "#1001: already closed"


def long_subject_mail(n: int) -> bytes:
    return customer_mail(n).replace(f"Subject: Question number {n}".encode(),
                                    f"Subject: Question number {n} about a very long and winding matter of "
                                    "invoices, refunds, parcels and passwords".encode())


@SQLITE_ONLY
def test_threads_table_names_the_zone_shows_who_answered_and_fits_the_terminal(
        dovecot, imap_user, config_file, capsys, monkeypatch):
    # The zone is named, answers show who and how, and an 80-column terminal cuts subjects, never times.
    path = str(config_file())
    dovecot.append_many(imap_user, [long_subject_mail(1), long_subject_mail(2)])
    main(["--config", path, "poll"])
    main(["--config", path, "thread", "answered", "1002"])
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--config", path, "threads"]) == 0
    zone, header, *rows = capsys.readouterr().out.splitlines()
    assert zone.startswith("Times in Europe/Berlin; now ") and zone.endswith(("CET", "CEST"))
    assert header.split() == ["TICKET", "STATUS", "DEADLINE", "LEFT", "CUSTOMER", "SUBJECT"]
    assert all(len(line) <= 80 for line in [zone, header, *rows])
    deadline = (datetime.now(UTC) + timedelta(hours=24)).astimezone(load_zone()).strftime("%Y-%m-%d %H:")
    assert deadline in rows[0] and rows[0].endswith("…")
    monkeypatch.setenv("COLUMNS", "400")
    main(["--config", path, "threads"])
    zone, header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["TICKET", "STATUS", "RECEIVED", "DEADLINE", "LEFT", "MSGS", "CUSTOMER", "ANSWERED",
                              "SUBJECT"]
    assert rows[0].endswith("invoices, refunds, parcels and passwords") and "via command" in rows[1]


def load_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


@SQLITE_ONLY
def test_backlog_thread_shows_steps_passed_apart_from_escalations_sent(dovecot, imap_user, config_file, capsys,
                                                                       smtp_sink):
    # An old thread found on a first start passed both steps without paging anyone: level 2, none sent.
    path = str(config_file(extra=SLA, smtp=smtp_sink))
    dovecot.append(imap_user, customer_mail(1), msg_time=datetime.now(UTC) - timedelta(days=3))
    assert main(["--config", path, "poll"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    main(["--config", path, "threads", "--json"])
    (thread,) = json.loads(capsys.readouterr().out)
    assert (thread["escalation_level"], thread["escalations_sent"]) == (2, 0)


@SQLITE_ONLY
def test_json_times_end_in_z_everywhere(dovecot, imap_user, config_file, capsys):
    # `threads --json` and `report --json` write UTC the same way: 2026-12-02T06:00:00Z.
    path = str(config_file())
    dovecot.append(imap_user, customer_mail(1))
    main(["--config", path, "poll"])
    capsys.readouterr()
    main(["--config", path, "report", "--json"])
    report = json.loads(capsys.readouterr().out)
    main(["--config", path, "threads", "--json"])
    (thread,) = json.loads(capsys.readouterr().out)
    period = report["period"]
    for stamp in (period["since"], period["until"], thread["first_received_at"], thread["deadline_at"]):
        assert stamp.endswith("Z") and "+00:00" not in stamp


@SQLITE_ONLY
def test_poll_counts_read_right_for_one(dovecot, imap_user, config_file, capsys):
    # "logged 1 new message", never "1 new messages".
    dovecot.append(imap_user, customer_mail(1))
    assert main(["--config", str(config_file()), "poll"]) == 0
    assert capsys.readouterr().out.strip() == (
        "logged 1 new message, escalated 0 steps, sent 0 emails (0 deferred, 0 failed)")


@SQLITE_ONLY
def test_check_without_smtp_username_does_not_claim_a_login(dovecot, imap_user, config_file, smtp_sink):
    # No username means no login was tried; one message reads "1 message".
    dovecot.append(imap_user, customer_mail(1))
    result = mailwatch("--config", str(config_file(ack=True, smtp=smtp_sink)), "check")
    assert result.returncode == 0, result.stderr
    assert f"smtp: 127.0.0.1:{smtp_sink.port} connected (no username configured, so no login tried)" in result.stdout
    assert "accepted the login" not in result.stdout
    assert "mailbox support: INBOX has 1 message\n" in result.stdout


@SQLITE_ONLY
def test_check_names_a_missing_sent_folder_and_lists_the_servers(dovecot, imap_user, config_file):
    # A sent_folder the server lacks is a configuration mistake (exit 2) naming the key and the real folders.
    dovecot.append(imap_user, customer_mail(1), folder="Sent")
    dovecot.append(imap_user, customer_mail(2), folder="Drafts")
    path = config_file(mailbox_extra='sent_folder = "Sent Items"')
    result = mailwatch("--config", str(path), "check")
    assert result.returncode == 2
    problem = result.stderr.strip().splitlines()[-1]
    assert problem.startswith(f'{path}: mailbox[0].sent_folder: no folder "Sent Items" on 127.0.0.1; the server has: ')
    assert sorted(problem.split("the server has: ")[1].split(", ")) == ["Drafts", "INBOX", "Sent (\\Sent)"]


@SQLITE_ONLY
def test_poll_with_a_dead_mailbox_says_its_error_once(config_file):
    # The error is in the log line once; the summary only names the mailbox, and the exit code is 1.
    from mailwatch.testing.devservers import free_port

    result = mailwatch("--config", str(config_file(imap_port=free_port())), "poll")
    assert result.returncode == 1
    assert (result.stdout + result.stderr).count("IMAP connection to 127.0.0.1") == 1
    assert result.stdout.strip().endswith("; 1 mailbox failed: support")
