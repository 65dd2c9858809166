"""Small, realistic messages made on the fly for tests."""

from email.message import EmailMessage


def customer_mail(n: int, sender: str = "customer", body_size: int = 200) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {n} <{sender}{n}@example.com>"
    message["To"] = "support@acme.example"
    message["Subject"] = f"Question number {n}"
    message["Message-ID"] = f"<q{n}.{sender}@example.com>"
    message["Date"] = "Mon, 09 Jun 2025 10:00:00 +0000"
    message.set_content(f"Hello, this is question {n}.\n" + "x" * body_size)
    return message.as_bytes()
