"""`scripts/demo`: mailwatch end to end on a throwaway Dovecot and SQLite database.

It writes a config into a temporary folder, delivers a handful of typical support
mails (customers, a reply in a thread, an out-of-office, a bounce, a newsletter, a
staff answer), runs `mailwatch poll`, shows the acknowledgments that reached the SMTP
sink, waits for the (demo-short) escalation step, polls again to show the escalation
email, and shows `mailwatch threads`. Every email it sent is written as an .eml file
to a folder it names at the end (default `demo/mail`), to open in a mail client.
"""

import argparse
import tempfile
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path

from mailwatch import cli
from mailwatch.testing.devservers import Dovecot, SmtpSink
from mailwatch.wording import counted

ACCOUNT = "support"
MAIL_DIR = Path("demo/mail")  # relative to where the demo runs: scripts/demo runs it at the repo root


def mail(sender: str, subject: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Acme Support <support@acme.example>"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(textwrap.dedent(body))
    return message.as_bytes()


def sample_mail() -> list[bytes]:
    """A small, realistic morning in a support inbox."""
    return [
        mail("Daniel Okafor <daniel@example.com>", "Cannot log in since the update",
             "Hi, since yesterday's update I cannot log in. Please help!", Message_ID="<demo-1@example.com>"),
        mail("Zoë Lindström <zoe@example.net>", "Återbetalning för order 58213",
             "Hej! Jag väntar fortfarande på min återbetalning.", Message_ID="<demo-2@example.net>"),
        mail("Daniel Okafor <daniel@example.com>", "Re: Cannot log in since the update",
             "Also: the password reset mail never arrives.", Message_ID="<demo-3@example.com>",
             In_Reply_To="<demo-1@example.com>", References="<demo-1@example.com>"),
        mail("Lena Fischer <lena@example.org>", "Automatic reply: your invoice",
             "I am out of the office until Monday.", Auto_Submitted="auto-replied"),
        mail("Mail Delivery System <MAILER-DAEMON@mx.example.org>", "Undelivered Mail Returned to Sender",
             "This is the mail system. Your message could not be delivered.", Return_Path="<>"),
        mail("Widget Weekly <news@widgetweekly.example>", "This week's best widgets",
             "Ten widgets you will love.", Precedence="bulk", List_Unsubscribe="<mailto:unsub@widgetweekly.example>"),
        # Staff mail answers only as Acme's MX delivers it: authenticated, in its own header.
        mail("Alice Nguyen <alice@acme.example>", "Re: Återbetalning för order 58213",
             "Hi Zoë, the refund went out today.", In_Reply_To="<demo-2@example.net>",
             References="<demo-2@example.net>",
             Authentication_Results="mx.acme.example; dkim=pass header.d=acme.example; "
                                    "dmarc=pass (p=reject dis=none) header.from=acme.example"),
    ]


def write_config(folder: Path, dovecot: Dovecot, sink: SmtpSink) -> Path:
    (folder / "imap-password").write_text(dovecot.password)
    config = folder / "mailwatch.toml"
    config.write_text(textwrap.dedent(f"""\
        [service]
        name = "Acme Support"
        phone = "+1 800 555 0100"
        timezone = "Europe/Berlin"
        database = "sqlite:///{folder / 'mailwatch.db'}"
        staff = ["@acme.example"]
        authserv_ids = ["mx.acme.example"]

        [[mailbox]]
        name = "support"
        address = "support@acme.example"
          [mailbox.imap]
          host = "127.0.0.1"
          port = {dovecot.tls_port}
          security = "tls"
          ca_file = "{dovecot.ca_file}"
          username = "{ACCOUNT}"
          password_file = "{folder / 'imap-password'}"

        [smtp]
        host = "127.0.0.1"
        port = {sink.port}
        security = "none"
        from = "Acme Support <support@acme.example>"

        [acknowledgment]
        enabled = true

        # Demo-short deadlines: answer within 10 seconds, escalate after 4 and 10.
        [sla]
        first_response = "10s"
        sweep_interval = "1s"

        [[escalation]]
        after = "4s"
        to = ["lead@acme.example"]

        [[escalation]]
        after = "10s"
        to = ["manager@acme.example"]

        [faq]
        url = "https://acme.example/help"
        entries = [
          {{ question = "How do I get a refund?", url = "https://acme.example/help/refunds", keywords = ["refund", "återbetalning"] }},
          {{ question = "I cannot log in", url = "https://acme.example/help/login", keywords = ["log in", "password"] }},
        ]

        [logging]
        format = "console"
        level = "warning"
        """))
    return config


def step(title: str, *argv: str) -> None:
    print(f"\n$ mailwatch {' '.join(argv[2:])}    # {title}")
    # Throwaway local servers in a temporary folder: the demo may run as root (README's first
    # command on a fresh machine), though a real installation runs as its own user.
    code = cli.main(["--allow-root", *argv])
    if code != 0:
        raise SystemExit(f"demo: `mailwatch {' '.join(argv[2:])}` exited with {code}")


def show_mail(title: str, received: list) -> None:
    print(f"\n{title}")
    for mail in received:
        print(f"  to {', '.join(mail.recipients):24} {mail.message['Subject']}")
    if received:
        print("\nThe first one reads:\n")
        print(textwrap.indent(received[0].message.get_body(("plain",)).get_content().replace("\r\n", "\n"), "    "))


def save_mail(received: list, mail_dir: Path) -> list[Path]:
    """Write each email as `01-to-lead@acme.example.eml`, replacing an earlier run's files."""
    mail_dir.mkdir(parents=True, exist_ok=True)
    for old in mail_dir.glob("*.eml"):
        old.unlink()
    paths = []
    for number, mail in enumerate(received, start=1):
        path = mail_dir / f"{number:02d}-to-{'+'.join(mail.recipients)}.eml"
        path.write_bytes(mail.content)
        paths.append(path)
    return paths


def run_demo(folder: Path, mail_dir: Path = MAIL_DIR) -> None:
    dovecot = Dovecot.create()  # its own folder: it runs unprivileged and must reach it
    sink = SmtpSink()
    dovecot.start()
    sink.start()
    try:
        config = write_config(folder, dovecot, sink)
        print(f"Dovecot on 127.0.0.1:{dovecot.tls_port} (TLS), SMTP sink on 127.0.0.1:{sink.port}, "
              f"config and SQLite in {folder}")
        dovecot.append_many(ACCOUNT, sample_mail())
        print(f"delivered {len(sample_mail())} messages to {ACCOUNT}'s INBOX")
        base = ("--config", str(config))
        step("log everything new, acknowledge new customers", *base, "poll")
        acks = sink.received
        show_mail(f"The SMTP sink received {len(acks)} acknowledgments (none for the machines, one per thread):", acks)
        step("nothing is logged or acknowledged twice", *base, "poll")
        step("the conversations", *base, "threads")
        print("\n... 5 seconds pass and nobody answers Daniel (Zoë was answered by Alice) ...")
        time.sleep(5)
        step("the escalation sweep runs with every cycle (and every 30 s under `mailwatch run`)", *base, "poll")
        show_mail("The team lead got this escalation:", sink.received[len(acks):])
        step("what still needs an answer, most urgent first", *base, "threads", "--open")
        step("how the team is doing", *base, "report")
        saved = save_mail(sink.received, mail_dir.resolve())
        print(f"\nEvery email the demo sent ({counted(len(saved), 'email')}) is in {mail_dir.resolve()}/ "
              "as .eml files: open them in a mail client.")
    finally:
        sink.stop()
        dovecot.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it afterwards")
    parser.add_argument("--mail", type=Path, default=MAIL_DIR, metavar="DIR",
                        help=f"write every email sent here as .eml files (default: {MAIL_DIR})")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run_demo(args.keep.resolve(), args.mail)
        return
    with tempfile.TemporaryDirectory(prefix="mailwatch-demo-") as folder:
        run_demo(Path(folder), args.mail)


if __name__ == "__main__":
    main()
