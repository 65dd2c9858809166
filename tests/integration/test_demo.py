"""`scripts/demo` as a new user runs it: the emails it sent are kept where it says."""

from email.parser import BytesParser
from email.policy import default

from mailwatch.testing.demo import run_demo


def test_demo_keeps_every_email_it_sent_in_the_folder_it_names(tmp_path, capsys, monkeypatch):
    # The acknowledgments and the escalation survive the demo as .eml files, and the last line says where.
    # As a new user runs it: as root on a fresh machine, without the suite's MAILWATCH_ALLOW_ROOT.
    monkeypatch.delenv("MAILWATCH_ALLOW_ROOT", raising=False)
    mail_dir = tmp_path / "mail"
    (mail_dir).mkdir()
    (mail_dir / "99-to-stale@example.com.eml").write_bytes(b"Subject: from an earlier run\n\n")
    run_demo(tmp_path, mail_dir)
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("Every email the demo sent (")
    assert f"is in {mail_dir}/ as .eml files" in out
    saved = sorted(mail_dir.glob("*.eml"))
    subjects = [BytesParser(policy=default).parsebytes(path.read_bytes())["Subject"] for path in saved]
    assert len(saved) >= 3 and "from an earlier run" not in subjects
    assert any(subject.startswith("Re: Cannot log in") for subject in subjects)  # an acknowledgment
    assert any(subject.startswith("[Acme Support] OVERDUE") or "Due in" in subject for subject in subjects)
    assert any(path.name.endswith("-to-lead@acme.example.eml") for path in saved)
