"""Raw message bytes → ParsedMessage, whatever the bytes hold.

mailwatch fetches only a message's header and a bounded prefix of its body, so this
module works on those two pieces. It decodes every header itself (raw UTF-8 per
RFC 6532, RFC 2047 encoded words, charsets Python does not know), neutralises control
characters so no value can carry a line break into a header we write later, and keeps a
short snippet of the customer's own words. `parse_message` never raises: a message it
cannot understand comes back with `parse_error` set and a stable synthesised Message-ID.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import io
import re
from collections.abc import Iterator, KeysView, Mapping
from itertools import islice
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email import errors, policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, formataddr, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from types import MappingProxyType

MAX_SUBJECT_CHARS = 1000  # RFC 5322 lines stop at 998; corpus 34 sends 5453 characters
MAX_SNIPPET_CHARS = 500  # a preview for logs and listings, not the message
MAX_ID_CHARS = 250  # longer Message-IDs are replaced by a hash so they fit an indexed column
SYNTHESISED_DOMAIN = "mailwatch.invalid"  # .invalid (RFC 2606) never collides with a real ID
_ERROR_CHARS = 500  # parse_error is a diagnosis, not a dump
MAX_HEADER_BYTES = 65536  # a header beyond this is cut (and says so): real ones stay far below
MAX_BODY_BYTES = 65536  # of a body prefix; the snippet needs a fraction of it
MAX_DECODED_CHARS = 16384  # of one header value decoded; the rest is never shown or matched
MAX_HEADER_FIELDS = 1000  # fields parsed and decoded; real mail has a few dozen, loops a few hundred
MAX_FIELD_VALUES = 100  # values kept of one field name (Received chains stay far below)
MAX_BOUNDARIES = 40  # more "boundary=" than this and the MIME structure is not parsed at all
MAX_ADDRESS_CHARS = 4096  # of one address field, all its values: about a hundred recipients
MAX_COMMENT_PARENS = 50  # deeper comment nesting makes Python's address parser recurse until it fails
MAX_PARTS = 50  # MIME parts looked at; a prefix of 8 KiB rarely holds more
SNIPPET_SOURCE_CHARS = 6000  # enough text to find 500 characters of the customer's own words

# C0/C1 controls, Unicode line separators and lone surrogates: none belong in a header
# value, and CR/LF would let a decoded subject inject headers (corpus 35).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_BUT_LINE_BREAKS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Bidi overrides, embeddings, isolates and marks, and zero-width characters (BOM included):
# invisible, yet they reorder or hide what a person reads ("Trojan Source", CVE-2021-42574).
INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Either of the two above, for one scan that tells whether a body needs them at all.
_SNIPPET_UNCLEAN = re.compile(f"{_CONTROL_BUT_LINE_BREAKS.pattern}|{INVISIBLE.pattern}")
# What _CONTROL_BUT_LINE_BREAKS makes a space within ASCII, as a str.translate table.
_ASCII_CONTROLS = {c: " " for c in range(128) if _CONTROL_BUT_LINE_BREAKS.match(chr(c))}
_WHITESPACE = re.compile(r"\s+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")  # RFC 5322 unfolding removes only the line break
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RAW_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ANGLE_TOKEN = re.compile(r"<([^<>]*)>")
_ENCODED_WORD = r"=\?[^?]*\?[qQbB]\?[^?]*\?="
# A run of encoded words separated only by whitespace, which RFC 2047 6.2 says to drop (corpus 03).
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD}(?:\s*{_ENCODED_WORD})*")
# An atom as email._parseaddr reads one (its "specials" and white space end it), and a word of a
# display name, where it allows dots ("Ann Q. Example"). Backslashes and Unicode white space,
# which it treats in ways of its own (it drops an atom that str.strip() empties), are left to it.
_ATOM = r'[^()<>@,:;."\[\]\\\s]+'
_NAME_WORD = r'[^()<>@,:;"\[\]\\\s]+'
_DOT_ATOMS = rf"{_ATOM}(?:\.{_ATOM})*"
# One mailbox of plain atoms: "Ann Q. Example <ann@example.org>", "<ann@example.org>", "ann@example.org".
# Every repetition is unambiguous, so a long value that does not match fails in linear time.
_PLAIN_MAILBOX = re.compile(
    rf"[ \t]*(?:(?P<name>{_NAME_WORD}(?:[ \t]+{_NAME_WORD})*)?[ \t]*<(?P<address>{_DOT_ATOMS}@{_DOT_ATOMS})>"
    rf"|(?P<bare>{_DOT_ATOMS}@{_DOT_ATOMS}))[ \t]*"
)
_PHRASE_SPACE = re.compile(r"[ \t]+")
_ABSENT = object()  # a parameter the header does not have, as _Part remembers it
_FIELD_START = re.compile(r"[\041-\071\073-\176]+:")  # a field name as the feed parser's headerRE allows it
_NESTED_TYPES = frozenset({"multipart", "message"})  # main types whose body the feed parser parses into parts
_NESTED_HINT = re.compile(rb"multipart|message/", re.IGNORECASE)  # where a header may declare a nested type
_ASCII_COMPATIBLE = frozenset({"ascii", "utf-8"})  # codecs whose "replace" output is worse than cp1252
_HIDDEN_HTML = frozenset({"script", "style", "head", "title", "template"})  # text nobody reads
_BLOCK_HTML = frozenset(
    {"p", "div", "br", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "blockquote"}
)  # tags that end a line of text
# "On Mon, 9 Jun 2025, Ann <a@x> wrote:" and its translations, above a quoted block.
_ATTRIBUTION = re.compile(
    r"(?:\bwrote|\bwrites|schrieb|a écrit|escribió|ha scritto|schreef|skrev|kirjoitti|napisał|pisze|escreveu"
    r"|написал|написала|írta|yazdı)\b[^:]*:\s*$",
    re.IGNORECASE,
)
# Outlook's separator above the quoted original.
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|originalmeddelande|oprindelig meddelelse)\s*-{2,}\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Address:
    """One mailbox: a decoded display name and the address exactly as written."""

    name: str
    address: str

    def formatted(self) -> str:
        """RFC 5322 form with quoting and RFC 2047 for non-ASCII names; never contains CR/LF."""
        name, address = neutralise(self.name), _WHITESPACE.sub("", neutralise(self.address))
        try:
            return formataddr((name, address))
        except UnicodeError:  # an RFC 6531 address has no ASCII form; it only works with SMTPUTF8
            return address


def _empty_headers() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ParsedMessage:
    """What mailwatch knows about one message; every string is decoded and free of controls."""

    message_id: str
    message_id_synthesised: bool = False
    from_: tuple[Address, ...] = ()
    sender: Address | None = None
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    subject: str = ""
    date_header: str | None = None
    date: datetime | None = None  # aware, UTC; the sender's clock, never the SLA clock
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    content_type: str = "text/plain"
    report_type: str | None = None
    return_path: str | None = None  # "" for "<>", None when the header is absent
    # lowercased header name → every value in order, decoded and neutralised
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_headers, hash=False)
    snippet: str = ""
    header_truncated: bool = False  # the header was longer than what was fetched or parsed
    part_types: tuple[str, ...] = ()  # every MIME part's content type in the prefix, at most MAX_PARTS
    defects: tuple[str, ...] = ()
    parse_error: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header (name case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def split_raw(raw: bytes) -> tuple[bytes, bytes]:
    """Splits a whole message at its first blank line into (header, body), as IMAP fetches them."""
    if raw.startswith((b"\r\n", b"\n")):
        return raw[: raw.index(b"\n") + 1], raw[raw.index(b"\n") + 1 :]
    found = _HEADER_END.search(raw)
    if found is None:
        return raw, b""
    return raw[: found.end()], raw[found.end() :]


def parse_message(header: bytes, body_prefix: bytes = b"", origin: str = "", header_cut: bool = False) -> ParsedMessage:
    """Parses a header block and a (possibly truncated) body prefix; never raises.

    `origin` names where the bytes came from (e.g. "UIDVALIDITY.UID"); a synthesised
    Message-ID ends with it, so two identical mails without an ID are still two messages.
    `header_cut`: the caller fetched only the header's first bytes. The work is bounded
    whatever the input: the header is cut at MAX_HEADER_BYTES, the body at MAX_BODY_BYTES.
    """
    header, body_prefix = _as_bytes(header), _as_bytes(body_prefix)[:MAX_BODY_BYTES]
    header, cut_here = _bounded_header(header)
    origin = re.sub(r"[^A-Za-z0-9.-]", "", origin if isinstance(origin, str) else "")[:40]
    try:
        parsed = _parse(header, body_prefix, origin)
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the loop (STYLE.md)
        parsed = _salvage(header, body_prefix, origin, exc)
    if header_cut is True or cut_here:
        return replace(parsed, header_truncated=True, defects=(*parsed.defects, "header truncated"))
    return parsed


def _bounded_header(header: bytes) -> tuple[bytes, bool]:
    """The header's first MAX_HEADER_BYTES and MAX_HEADER_FIELDS lines, and whether it was cut.

    Cut mid-line, as an IMAP partial fetch cuts it: a 70 KB Subject keeps its start.
    """
    cut = len(header) > MAX_HEADER_BYTES
    header = header[:MAX_HEADER_BYTES]
    ends = _RAW_LINE_END.finditer(header)
    end = next(islice(ends, MAX_HEADER_FIELDS - 1, None), None)  # the end of line MAX_HEADER_FIELDS
    if end is not None and end.end() < len(header.rstrip(b"\r\n")):
        return header[: end.end()], True
    return header, cut


def neutralise(text: str) -> str:
    """One clean line: controls and line breaks become spaces, invisible characters go, whitespace collapses."""
    if text.isascii() and text.isprintable():
        return " ".join(text.split())  # no control and no invisible character: most values, tested cheaply
    return " ".join(_CONTROL.sub(" ", INVISIBLE.sub("", text)).split())


def decode_header_value(raw: str, notes: list[str] | None = None) -> str:
    """A raw header value → display text: RFC 6532 bytes and RFC 2047 words decoded, neutralised.

    Only the first MAX_DECODED_CHARS are decoded: nothing reads further, and a value of
    thousands of encoded words must not cost more than a normal one.
    """
    return neutralise(_decode_encoded_words(_unfolded(raw)[:MAX_DECODED_CHARS], notes if notes is not None else []))


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, blockquotes marked with '>'; fetches nothing it references."""
    parser = _HtmlText()
    try:
        parser.feed(_defused(html))
        parser.close()
    except Exception:  # noqa: BLE001 - _markupbase raises AssertionError on some bad declarations
        pass  # keep the text collected so far
    return parser.text()


def _defused(html: str) -> str:
    """Escapes each '<' after the last '>' (a cut-off tail): html.parser rescans it once per '<'."""
    end = html.rfind(">") + 1
    return html[:end] + html[end:].replace("<", "&lt;")


# --- the parse itself -------------------------------------------------------------------


def _parse(header: bytes, body_prefix: bytes, origin: str) -> ParsedMessage:
    msg = _message(header, body_prefix)
    notes: list[str] = []
    raw = _raw_headers(msg)
    headers = DecodedHeaders(raw, notes)
    message_id, synthesised = _message_id(raw.get("message-id", ()), header, body_prefix, origin)
    parts = list(_parts(msg))
    content_type, report_type = _content_type(msg)
    senders = _addresses(raw.get("sender", ())[:1], notes)
    replied_to = _id_tokens(raw.get("in-reply-to", ()))
    snippet = _snippet(parts, notes)  # before _defects: decoding the body adds Python's defects
    return ParsedMessage(
        message_id=message_id,
        message_id_synthesised=synthesised,
        from_=_addresses(raw.get("from", ()), notes),
        sender=senders[0] if senders else None,
        reply_to=_addresses(raw.get("reply-to", ()), notes),
        to=_addresses(raw.get("to", ()), notes),
        cc=_addresses(raw.get("cc", ()), notes),
        subject=(_first(headers, "subject") or "")[:MAX_SUBJECT_CHARS],
        date_header=_first(headers, "date") or None,
        date=_date(_first(headers, "date") or ""),
        in_reply_to=replied_to[0] if replied_to else None,
        references=_id_tokens(raw.get("references", ())),
        content_type=content_type,
        report_type=report_type,
        return_path=_return_path(raw.get("return-path", ())),
        headers=headers,
        snippet=snippet,
        part_types=_part_types(parts),
        defects=_defects(parts, notes),
    )


def _message(header: bytes, body_prefix: bytes) -> Message:
    """The message tree, a single-part one without feeding its body through the parser line by line.

    The feed parser makes the whole rest of a single-part message its payload, line by line
    (a third of all parse time); parsing the header alone and attaching the body as that
    payload gives the same tree. Multipart and message/* bodies need the full parse.
    """
    head = header.rstrip(b"\r\n")
    # Only a hint: a header naming neither type would parse twice for nothing; the result never depends on it.
    if head and not _NESTED_HINT.search(head):
        top = _plain_header(head) or BytesParser(_Part, policy=policy.compat32).parsebytes(
            head + b"\r\n\r\n", headersonly=True)
        # A header with a line that is no field leaves the rest as body: that one takes the full parse.
        if top.get_content_maintype() not in _NESTED_TYPES and not top.get_payload():
            top.set_payload(body_prefix.decode("ascii", "surrogateescape"))  # as the feed parser keeps 8-bit bytes
            return top
    joined = _joined(header, body_prefix)
    # Each MIME boundary is checked against every line below it: thousands nested cost seconds.
    mime = joined.lower().count(b"boundary") <= MAX_BOUNDARIES
    return BytesParser(_Part, policy=policy.compat32).parsebytes(joined, headersonly=not mime)


class _Part(Message):
    """A compat32 Message that, once parsed, works out its content type and each parameter once.

    A mail's part is asked for its type and parameters about ten times (the walk, the
    snippet, the part types, charset, filename, report-type), each a fresh parse of the
    header in Python. The parser still sets headers while it builds a part, so the memo
    starts only when `_parts` hands the part out; nothing sets a header after that.
    """

    def __init__(self, policy: policy.Compat32 = policy.compat32) -> None:
        super().__init__(policy)
        self._memo: dict[object, object] | None = None

    def settle(self) -> None:
        if self._memo is None:
            self._memo = {}

    def get_content_type(self) -> str:
        if self._memo is None:
            return super().get_content_type()
        if "" not in self._memo:
            self._memo[""] = super().get_content_type()
        return self._memo[""]  # type: ignore[return-value]

    def get_param(self, param, failobj=None, header="content-type", unquote=True):  # type: ignore[no-untyped-def]
        # Message.get_param's answer: the first parameter of that name, from one parse per header.
        if self._memo is None:
            return super().get_param(param, failobj, header, unquote)
        key = (header, unquote)
        if key not in self._memo:
            self._memo[key] = super().get_params(_ABSENT, header, unquote)
        params = self._memo[key]
        if params is _ABSENT:
            return failobj
        wanted = param.lower()
        return next((value for name, value in params if name.lower() == wanted), failobj)


def _plain_header(head: bytes) -> _Part | None:
    """What the header-only feed parse gives for a header of nothing but fields; None for any other.

    The feed parser reads a header line by line through layers of Python; for fields and
    their continuation lines it only groups the lines and hands each group to the policy's
    header_source_parse, which this does with the same line splitting and the same policy.
    A first line that continues nothing, a Unix "From " line or a line that is no field
    (all rare) is left to the feed parser, with its defects.
    """
    lines = io.StringIO(head.decode("ascii", "surrogateescape") + "\r\n", newline="").readlines()
    msg = _Part(policy.compat32)
    field: list[str] = []
    for line in lines:
        if field and line[0] in " \t":
            field.append(line)
            continue
        if _FIELD_START.match(line) is None:
            return None
        if field:
            msg.set_raw(*policy.compat32.header_source_parse(field))
        field = [line]
    if field:
        msg.set_raw(*policy.compat32.header_source_parse(field))
    return msg


def _salvage(header: bytes, body_prefix: bytes, origin: str, exc: Exception) -> ParsedMessage:
    """The little that survives an unexpected failure: a Message-ID and the reason."""
    found = re.search(rb"(?im)^message-id:[ \t]*(<[^<>\r\n]{1,240}>)", header)
    message_id = _WHITESPACE.sub("", _CONTROL.sub(" ", found.group(1).decode("latin-1"))) if found else ""
    return ParsedMessage(
        message_id=message_id or _synthesised_id(header, body_prefix, origin),
        message_id_synthesised=not message_id,
        parse_error=neutralise(f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS],
    )


def _as_bytes(data: object) -> bytes:
    """Tolerates bytes-like and str input, so the never-raises promise holds for callers' slips."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "replace")
    return b""


def _joined(header: bytes, body: bytes) -> bytes:
    """Header and body as one message, with exactly one blank line between them."""
    head = header.rstrip(b"\r\n")
    return head + b"\r\n\r\n" + body if head else b"\r\n" + body


def _synthesised_id(header: bytes, body_prefix: bytes = b"", origin: str = "") -> str:
    """An ID for a message without one: a hash of everything fetched, then the origin.

    Headerless mails all have the same (empty) header, so the body counts too; the
    origin tells apart byte-identical copies. `synthesised_stem` is the part that stays
    the same when the mail is met again under another UIDVALIDITY.
    """
    # Line endings and the closing blank line vary between fetch paths; the hash must not.
    canonical = _RAW_LINE_END.sub(b"\r\n", header).rstrip(b"\r\n")
    digest = hashlib.sha256(canonical + b"\r\n\r\n" + _RAW_LINE_END.sub(b"\r\n", body_prefix)).hexdigest()[:32]
    return f"<synthesised.{digest}{'.' + origin if origin else ''}@{SYNTHESISED_DOMAIN}>"


def synthesised_stem(message_id: str) -> str | None:
    """"<synthesised.HASH" of a synthesised ID (content only, origin dropped), else None."""
    found = re.match(r"<synthesised\.[0-9a-f]{32}", message_id)
    return found.group(0) if found else None


# --- headers ----------------------------------------------------------------------------


def _raw_headers(msg: Message) -> dict[str, tuple[str, ...]]:
    """Lowercased name → raw values (surrogate-escaped bytes, still folded and encoded)."""
    # Lists, then tuples once: appending to a tuple per field made 80,000 fields quadratic.
    raw: dict[str, list[str]] = {}
    for name, value in islice(msg.raw_items(), MAX_HEADER_FIELDS):
        values = raw.setdefault(_field_name(name), [])
        if len(values) < MAX_FIELD_VALUES:
            values.append(str(value))
    return {name: tuple(values) for name, values in raw.items()}


def _field_name(name: str) -> str:
    """A field name as a key: decoded, neutralised, lowercased."""
    if name.isascii() and name.isprintable() and " " not in name:
        return name.lower()  # nothing for neutralise to change: the usual case, and a cheap test
    return neutralise(_text(_raw_bytes(name))).lower()


class DecodedHeaders(Mapping[str, tuple[str, ...]]):
    """Lowercased name → decoded values; a field is decoded when first read, as most never are.

    Fields holding an encoded word are decoded at once, in header order: only they can add
    a defect note ("unknown charset ..."), and the notes must not depend on what is read.
    """

    def __init__(self, raw: dict[str, tuple[str, ...]], notes: list[str]) -> None:
        self._raw = raw
        self._decoded = {
            name: tuple(decode_header_value(v, notes) for v in values)
            for name, values in raw.items() if any("=?" in v for v in values)
        }

    def __getitem__(self, name: str) -> tuple[str, ...]:
        found = self._decoded.get(name)
        if found is None:
            found = self._decoded[name] = tuple(decode_header_value(v) for v in self._raw[name])
        return found

    def get(self, name: str, default: tuple[str, ...] | None = None  # type: ignore[override]
            ) -> tuple[str, ...] | None:
        # Mapping.get goes through a KeyError for every absent name: the rules ask for ~50 that are.
        return self[name] if name in self._raw else default

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def keys(self) -> KeysView[str]:
        return self._raw.keys()  # the dict's own view: its membership test runs in C (rules._present)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"DecodedHeaders({dict(self.items())!r})"


def _first(values: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _raw_bytes(value: str) -> bytes:
    """The bytes a raw value came from: BytesParser keeps 8-bit bytes as surrogate escapes."""
    return value.encode("utf-8", "surrogateescape")


def _text(raw: bytes) -> str:
    """Header bytes as UTF-8 (RFC 6532), else latin-1, which cannot fail."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decoded(raw: str) -> str:
    """_text(_raw_bytes(raw)): an ASCII value holds no escaped 8-bit byte and decodes to itself."""
    return raw if raw.isascii() else _text(_raw_bytes(raw))


def _unfolded(raw: str) -> str:
    text = _decoded(raw)
    return _FOLD.sub("", text) if "\n" in text else text


def _decode_encoded_words(text: str, notes: list[str]) -> str:
    """Decodes each run of RFC 2047 words in place; the text between them is already decoded."""
    return _ENCODED_RUN.sub(lambda run: _decode_run(run.group(0), notes), text)


def _decode_run(run: str, notes: list[str]) -> str:
    try:
        chunks = decode_header(run)
    except Exception:  # noqa: BLE001 - HeaderParseError on damaged base64: show the words as sent
        _note(notes, "undecodable encoded word")
        return run
    return "".join(_decode_chunk(data, charset, notes) for data, charset in chunks)


def _decode_chunk(data: bytes | str, charset: str | None, notes: list[str]) -> str:
    if isinstance(data, str):
        return data
    if charset is None:
        return _text(data)
    return _decode_declared(data, charset.split("*", 1)[0], notes)  # RFC 2231 adds "*language"


def _decode_declared(data: bytes, charset: str, notes: list[str]) -> str:
    """Decodes with a declared charset, replacing bad bytes; an unknown one falls back to UTF-8."""
    codec = _codec(charset, notes)
    if codec is not None:
        try:
            return data.decode(codec, "replace")
        except (LookupError, UnicodeError, ValueError, TypeError):  # non-text codecs such as rot13
            _note(notes, f"undecodable charset {_short(charset)}")
    return data.decode("utf-8", "replace")


def _codec(charset: str, notes: list[str]) -> str | None:
    """Python's codec name for a MIME charset, or None (noted) when Python does not know it."""
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError, TypeError):
        _note(notes, f"unknown charset {_short(charset)}")
        return None


# --- addresses, IDs, dates --------------------------------------------------------------


def _addresses(values: tuple[str, ...], notes: list[str]) -> tuple[Address, ...]:
    """Parses the raw values first, then decodes names, so an encoded comma cannot split one."""
    lines, budget = [], MAX_ADDRESS_CHARS  # for all values together: the parser costs per address
    for value in values:
        line = _CONTROL.sub(" ", _unfolded(value)[:budget])
        lines.append(_tame_comments(line))
        budget -= len(line)
        if budget <= 0:
            break
    if not lines:
        return ()  # most mails have no Sender, Reply-To or Cc: skip building the parser for nothing
    found = (_address(name, address, notes) for name, address in _mailboxes(lines))
    return tuple(address for address in found if address is not None)


def _mailboxes(lines: list[str]) -> list[tuple[str, str]]:
    """getaddresses(lines); read directly when each line is one plain mailbox, as in most mail.

    Python's address parser walks a value character by character in Python code, some
    30 µs for "Ann Example <ann@example.org>"; for that shape it gives the name's words
    joined by one space and the address, which one regex match gives too.
    """
    found = []
    for line in lines:
        plain = _PLAIN_MAILBOX.fullmatch(line)
        if plain is None:
            return getaddresses(lines)  # quotes, comments, groups, several mailboxes: the real parser
        name, address = plain.group("name", "address")
        found.append((_PHRASE_SPACE.sub(" ", name) if name else "", address or plain["bare"]))
    return found


def _tame_comments(line: str) -> str:
    """Flattens absurd comment nesting, which would exhaust the address parser's recursion."""
    return line.replace("(", " ").replace(")", " ") if line.count("(") > MAX_COMMENT_PARENS else line


def _address(name: str, address: str, notes: list[str]) -> Address | None:
    address = _WHITESPACE.sub("", neutralise(address)).strip("<>")
    local, _, domain = address.rpartition("@")
    if not local or not domain or "" in domain.split("."):
        return None  # no mailbox to write to ("bob@xxx." has an empty domain label)
    return Address(neutralise(_decode_encoded_words(name, notes)), address)


def _id_tokens(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every <...> token in order, whitespace removed (IDs get folded over lines, corpus 26)."""
    text = " ".join(_decoded(value) for value in values)
    inner = (_WHITESPACE.sub("", _CONTROL.sub(" ", token)) for token in _ANGLE_TOKEN.findall(text))
    return tuple(_bounded_id(token) for token in inner if token)


def _bounded_id(inner: str) -> str:
    """<inner>, or a hash of it when too long to index; applied alike to IDs and references."""
    ident = f"<{inner}>"
    if len(ident) <= MAX_ID_CHARS:
        return ident
    return f"<long.{hashlib.sha256(ident.encode()).hexdigest()[:32]}@{SYNTHESISED_DOMAIN}>"


def _message_id(values: tuple[str, ...], header: bytes, body: bytes, origin: str) -> tuple[str, bool]:
    """The Message-ID, a bare one put in brackets, or a synthesised stable one."""
    tokens = _id_tokens(values[:1])
    if tokens:
        return tokens[0], False
    bare = re.sub(r"[\s<>]", "", _CONTROL.sub(" ", _decoded(values[0]))) if values else ""
    if bare:
        return _bounded_id(bare), False
    return _synthesised_id(header, body, origin), True


def _date(value: str) -> datetime | None:
    """The Date header as aware UTC; a zone-less date (-0000) is taken as UTC."""
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _return_path(values: tuple[str, ...]) -> str | None:
    """The address in the topmost Return-Path: "" for the null sender "<>", None if absent."""
    if not values:
        return None
    text = _CONTROL.sub(" ", _decoded(values[0]))
    tokens = _ANGLE_TOKEN.findall(text)
    return _WHITESPACE.sub("", tokens[0] if tokens else text)


def _content_type(msg: Message) -> tuple[str, str | None]:
    report_type = msg.get_param("report-type")
    if report_type is not None:
        report_type = neutralise(collapse_rfc2231_value(report_type)).lower() or None
    return neutralise(msg.get_content_type()).lower(), report_type


# --- body snippet -----------------------------------------------------------------------


def _snippet(parts: list[Message], notes: list[str]) -> str:
    """Up to MAX_SNIPPET_CHARS of the customer's own words, quotes dropped."""
    try:
        part = _body_part(parts)
        if part is None:
            return ""
        text = _part_text(part, notes)
        if part.get_content_type() == "text/html":
            text = html_to_text(text)
        return _customer_words(text)
    except Exception as exc:  # noqa: BLE001 - the snippet is optional; the headers still count
        _note(notes, f"no snippet: {type(exc).__name__}")
        return ""


def _parts(msg: Message) -> Iterator[Message]:
    """Every MIME part in order, without recursion and without entering attached messages."""
    stack = [msg]
    while stack:
        part = stack.pop()
        if isinstance(part, _Part):
            part.settle()
        yield part
        if part.is_multipart() and part.get_content_maintype() != "message":
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))


def _part_types(parts: list[Message]) -> tuple[str, ...]:
    """Content types of the first MAX_PARTS parts: a report can hide in a multipart/mixed."""
    found = []
    for part in parts:
        found.append(neutralise(part.get_content_type()).lower()[:100])
        if len(found) >= MAX_PARTS:
            break
    return tuple(found)


def _body_part(parts: list[Message]) -> Message | None:
    """The first text/plain part that is not an attachment, else the first such text/html."""
    leaves = [p for p in parts if not p.is_multipart() and not _is_attachment(p)]
    for wanted in ("text/plain", "text/html"):
        for part in leaves:
            if part.get_content_type() == wanted:
                return part
    return None


def _is_attachment(part: Message) -> bool:
    disposition = part.get_content_disposition()
    return disposition == "attachment" or (disposition is None and part.get_filename() is not None)


def _part_text(part: Message, notes: list[str]) -> str:
    payload = part.get_payload(decode=True)  # lenient: damaged base64 decodes as far as it can
    if any(isinstance(d, errors.InvalidBase64LengthDefect) for d in part.defects):
        payload = _whole_quanta(str(part.get_payload()))
    if not isinstance(payload, bytes):
        return ""
    return _decode_body(payload, part.get_content_charset(), notes)


def _whole_quanta(text: str) -> bytes:
    """Decodes the complete 4-character groups of base64 cut mid-group, which Python leaves encoded."""
    # A body prefix ends wherever 16 KiB ends, so this is the usual case, not an exotic one.
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", text.encode("ascii", "ignore"))
    return base64.b64decode(data[: len(data) - len(data) % 4])


def _decode_body(data: bytes, charset: str | None, notes: list[str]) -> str:
    """Body bytes as text, trusting the declared charset only as far as the bytes agree."""
    codec = _codec(charset, notes) if charset else None
    if charset and codec is None:
        return data.decode("utf-8", "replace")  # utf8mb4 and friends are UTF-8 in practice
    for name, on_error in _body_attempts(codec):
        try:
            return data.decode(name, on_error)
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
    return data.decode("latin-1")


def _body_attempts(codec: str | None) -> list[tuple[str, str]]:
    """Declared, then UTF-8, then cp1252: mislabelled bodies are mostly one of those (corpus 30)."""
    attempts = [(codec, "strict")] if codec else []
    attempts.append(("utf-8", "strict"))
    if codec and codec not in _ASCII_COMPATIBLE:
        attempts.append((codec, "replace"))  # a few bad bytes in Shift_JIS beat cp1252 mojibake
    attempts.append(("cp1252", "strict"))
    return attempts


def _customer_words(text: str) -> str:
    # One pass over the text, not one per line: line breaks survive for the quote detection.
    text = _without_controls(text[:SNIPPET_SOURCE_CHARS])
    if ">" in text or "--" in text:  # else no line can be a quote or Outlook's separator: skip the per-line look
        text = " ".join(_without_quotes(_lines(text)))
    else:
        text = _one_line(text)
    words = " ".join(text[: 4 * MAX_SNIPPET_CHARS].split())
    return words[:MAX_SNIPPET_CHARS].rstrip()


def _without_controls(text: str) -> str:
    """INVISIBLE removed and _CONTROL_BUT_LINE_BREAKS made spaces, without the two regex scans when it can.

    Each regex scan of 6000 characters took some 40 µs, most of the snippet's cost: ASCII
    text (most mail) holds no invisible character, and str.translate does its controls in
    C's ASCII fast path; other text is scanned once for either kind, and mostly holds neither.
    """
    if text.isascii():
        return text.translate(_ASCII_CONTROLS)
    if _SNIPPET_UNCLEAN.search(text) is None:
        return text
    return _CONTROL_BUT_LINE_BREAKS.sub(" ", INVISIBLE.sub("", text))


def _lines(text: str) -> list[str]:
    """_LINE_BREAK.split(text) by str methods: each CRLF is one break, as the regex's first choice."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _one_line(text: str) -> str:
    """_LINE_BREAK.sub(" ", text) by str methods, a fraction of the regex's time over 6000 characters."""
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _without_quotes(lines: list[str]) -> list[str]:
    """Drops quoted lines and the attribution above them, unless nothing else would remain."""
    kept: list[str] = []
    for line in lines:
        if _ORIGINAL_MESSAGE.match(line):
            break
        if line.lstrip().startswith(">"):
            _drop_attribution(kept)
        else:
            kept.append(line)
    return kept if any(line.strip() for line in kept) else lines


def _drop_attribution(kept: list[str]) -> None:
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _ATTRIBUTION.search(kept[-1]):
        kept.pop()


class _HtmlText(HTMLParser):
    """Collects visible text; block tags end lines, blockquote lines start with '> '."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._hidden = 0
        self._quoted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._count(tag, +1)

    def handle_endtag(self, tag: str) -> None:
        self._count(tag, -1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._chunks.append(_LINE_BREAK.sub(" ", data))

    def text(self) -> str:
        return "".join(self._chunks)

    def _count(self, tag: str, step: int) -> None:
        if tag in _HIDDEN_HTML:
            self._hidden = max(0, self._hidden + step)
        if tag == "blockquote":
            self._quoted = max(0, self._quoted + step)
        if tag in _BLOCK_HTML:
            self._chunks.append("\n> " if self._quoted else "\n")


# --- defects ----------------------------------------------------------------------------


def _defects(parts: list[Message], notes: list[str]) -> tuple[str, ...]:
    """Python's defect class names for every part, then our own notes, each once."""
    found = [type(defect).__name__ for part in parts for defect in part.defects]
    return tuple(dict.fromkeys([*found, *notes]))


def _note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def _short(text: str) -> str:
    return neutralise(text)[:40]
