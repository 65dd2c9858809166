"""The command line as users run it: exit codes, messages, `threads` output."""

import json
import subprocess
import sys

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
    assert main(["--config", str(path), "thread", "answered", "9999"]) == 1


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
