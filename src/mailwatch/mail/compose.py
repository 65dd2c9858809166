"""RFC 5322 / MIME bytes for mailwatch's own mail, written directly.

`EmailMessage` parses every header value it is given through its header registry and
re-folds it on output: for an ack that was most of its CPU cost (issue 18), and the
values are already sanitised single lines (`templates.one_line`, `header_address`). This
writes the same mail straight to bytes: headers folded at 78 characters where a space
allows, non-ASCII as RFC 2047 encoded words, a multipart/alternative text + HTML body
in 7bit, quoted-printable or base64, CRLF line ends. Output is 7-bit clean, so it needs
no 8BITMIME from the server.
"""

import binascii
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

LINE_LIMIT = 78  # RFC 5322 2.1.1: "SHOULD" fold header lines and body lines at 78 characters
WORD_PAYLOAD = 54  # characters of Q text per encoded word: 66 in all with "=?utf-8?q?" and "?="
B_WORD_BYTES = 39  # bytes of UTF-8 per base64 word: 52 characters of payload
PRINTABLE = re.compile(r"[\x21-\x7e]+")  # a token sent as it is (no space, no control, ASCII)
ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")  # a display name needing no quotes
ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+")  # a name's word sent plain beside encoded words (no "=?")
Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")  # RFC 2047 5(3)
HIGH_BYTES = bytes(range(0x80, 0x100))  # what quoted-printable triples
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not in 7bit text (RFC 2045 2.7); CR LF are ours


@dataclass(frozen=True)
class ComposedMail:
    """A mail ready for the outbox: its bytes, and the two headers the outbox indexes."""

    message_id: str
    subject: str
    content: bytes


def compose(headers: Sequence[tuple[str, str]], text: str, html: str) -> bytes:
    """A multipart/alternative mail: `headers` in order (values unencoded), then text and HTML parts."""
    parts = [_part("plain", text), _part("html", html)]
    boundary = _boundary(parts)
    lines = [_header(name, value) for name, value in headers]
    lines += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"', ""]
    head = "\r\n".join(lines).encode("ascii")
    separator = f"\r\n--{boundary}\r\n".encode("ascii")
    return head + separator + separator.join(parts) + f"\r\n--{boundary}--\r\n".encode("ascii")


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:  # the caller's bug: one line per header, never an injected one
        raise ValueError(f"{name} header value contains a line break")
    if name.lower() in ADDRESS_HEADERS:
        return fold(f"{name}:", address_tokens(value))
    if name.lower() in ID_HEADERS:  # an ID is never split; one that does not fit goes on its own line
        ids = [token if token.isascii() else " ".join(encoded_words(token)) for token in value.split()]
        return fold(f"{name}:", ids, wrap_first=True)
    return fold(f"{name}:", unstructured_tokens(value))


def fold(start: str, tokens: Iterable[str], wrap_first: bool = False) -> str:
    """`start` and the tokens joined by spaces, a line break before a token that would pass 78.

    The first token stays beside the name unless `wrap_first`: a value beginning on the next
    line reads back with a leading space, harmless only in a list of IDs.
    """
    lines, line = [], start
    for token in tokens:
        if len(line) + 1 + len(token) > LINE_LIMIT and (wrap_first or line != start):
            lines.append(line)
            line = ""
        line = f"{line} {token}"
    lines.append(line)
    return "\r\n".join(lines)


def unstructured_tokens(value: str) -> list[str]:
    """Subject-style text as tokens: plain ASCII words as they are, runs of the others as encoded words.

    Spaces between two encoded words vanish when decoded, so a run of non-ASCII (or too
    long) words is encoded together, spaces included; a plain word keeps its space.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if PRINTABLE.fullmatch(word) and len(word) < LINE_LIMIT:
            if run:
                tokens += encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        elif word or run:
            run.append(word)
    if run:
        tokens += encoded_words(" ".join(run))
    return tokens


def address_tokens(value: str) -> list[str]:
    """'Name <addr>', '"Quoted, Name" <addr>' or a bare address, with the name encoded if needed."""
    if not (value.endswith(">") and "<" in value):
        return [_addr_spec(value)]
    cut = value.rindex("<")
    name, addr = _unquoted(value[:cut].strip()), _addr_spec(value[cut + 1:-1])
    if not name:
        return [addr]
    if PRINTABLE.fullmatch(name.replace(" ", "")) and "  " not in name:
        return [*_phrase(name).split(" "), f"<{addr}>"]
    return [*phrase_tokens(name), f"<{addr}>"]


def phrase_tokens(name: str) -> list[str]:
    """A non-ASCII display name: plain atoms as they are, each run of other words one encoded word.

    One word per run, however long: Python's address parser keeps the space between two
    encoded words of a name (RFC 2047 says drop it), so splitting a run would read back
    differently there than in a mail client. RFC 2047's 75-character limit yields for the
    rare name that long; readers accept longer words.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if word and ATOM.fullmatch(word):
            if run:
                tokens.append(_one_word(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.append(_one_word(" ".join(run)))
    return tokens


def _unquoted(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _phrase(name: str) -> str:
    """An ASCII display name as an atom sequence, or a quoted string when it holds specials."""
    if ATEXT.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(address: str) -> str:
    """The address; a non-ASCII one (no ASCII form without SMTPUTF8) as encoded words, as before."""
    if address.isascii():
        return address
    return "@".join(" ".join(encoded_words(piece)) if not piece.isascii() else piece for piece in address.split("@"))


ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})  # one mailbox each, for us
ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})  # <id> tokens, never encoded words


def encoded_words(text: str) -> list[str]:
    """RFC 2047 words for `text` (UTF-8, Q or B whichever is shorter), each at most 66 characters.

    66, not 75: the first word still fits beside "Subject: " within 78. A word never splits
    a character, so each decodes on its own. Q uses only the characters RFC 2047 allows
    inside a display name too.
    """
    if _b_is_shorter(text):
        return [_b_word(chunk) for chunk in _chunks(text, B_WORD_BYTES, lambda char: len(char.encode()))]
    return [f"=?utf-8?q?{chunk}?=" for chunk in _chunks(_q_chars(text), WORD_PAYLOAD, len)]


def _one_word(text: str) -> str:
    return _b_word(text) if _b_is_shorter(text) else f"=?utf-8?q?{''.join(_q_chars(text))}?="


def _b_is_shorter(text: str) -> bool:
    data = text.encode("utf-8")
    escaped = len(data) - sum(byte in Q_SAFE or byte == 0x20 for byte in data)
    return 6 * escaped > len(data)  # Q adds two characters per escaped byte, B a third to every byte


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(text.encode(), newline=False).decode()}?="


def _q_chars(text: str) -> list[str]:
    return ["_" if char == " " else char if len(char.encode()) == 1 and ord(char) in Q_SAFE
            else "".join(f"={byte:02X}" for byte in char.encode()) for char in text]


def _chunks(items: Iterable[str], limit: int, size: Callable[[str], int]) -> list[str]:
    """Consecutive items joined in groups whose total `size` stays within `limit`."""
    groups: list[str] = []
    current, used = "", 0
    for item in items:
        cost = size(item)
        if used + cost > limit and current:
            groups.append(current)
            current, used = "", 0
        current, used = current + item, used + cost
    if current:
        groups.append(current)
    return groups


def _part(subtype: str, body: str) -> bytes:
    """One text part: lines normalised to CRLF, the lightest 7-bit-safe transfer encoding."""
    lines = body.encode("utf-8").splitlines()
    data = b"\r\n".join(lines) + b"\r\n"
    if data.isascii() and not CONTROL_BYTES.search(data) and max(map(len, lines), default=0) <= LINE_LIMIT:
        encoding, payload = "7bit", data
    elif 6 * (len(data) - len(data.translate(None, HIGH_BYTES))) > len(data):  # as for encoded words
        encoding, payload = "base64", _base64_lines(data)
    else:
        encoding, payload = "quoted-printable", binascii.b2a_qp(data, istext=True)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return head.encode("ascii") + payload


def _base64_lines(data: bytes) -> bytes:
    step = 57  # bytes per 76-character base64 line (RFC 2045 6.8)
    return b"".join(binascii.b2a_base64(data[i:i + step]).replace(b"\n", b"\r\n") for i in range(0, len(data), step))


def _boundary(parts: Sequence[bytes]) -> str:
    """A boundary no part contains: "=_" cannot occur in quoted-printable or base64 text."""
    while True:
        boundary = f"=_mailwatch_{secrets.token_hex(12)}"
        if not any(boundary.encode() in part for part in parts):
            return boundary
