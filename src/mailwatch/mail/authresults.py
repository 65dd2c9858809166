"""What the receiving mail server found out about a message's From (RFC 8601).

A header is a claim, not an identity: anyone can write `Authentication-Results`
into the mail they send, with any authserv-id and any verdict. The only results
that mean something are the ones the receiving server itself prepended, so
`authenticate` reads the topmost header of a trusted authserv-id and ignores every
other (a forged copy is always below the genuine one, because receivers prepend).
Microsoft 365 stamps its results without an authserv-id and marks mail from inside
the tenant with `X-MS-Exchange-Organization-AuthAs: Internal`, a header Exchange
strips from mail arriving from outside; both count only behind the config value
`"microsoft365"`.

Pure and total: a hostile value never raises and is read in linear time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

MICROSOFT365 = "microsoft365"  # service.authserv_ids value for Exchange Online's id-less results
AUTH_AS_HEADER = "x-ms-exchange-organization-authas"  # "Internal": sent from inside the tenant
MAX_VALUE_CHARS = 8000  # a real header is a few hundred characters; longer is noise or an attack
MAX_RESULTS = 40  # resinfo clauses read per header
MAX_HEADERS_READ = 50  # Authentication-Results headers looked at, topmost first


class AuthStatus(StrEnum):
    """Whether the From domain was authenticated by a trusted receiving server."""

    PASS = "pass"
    FAIL = "fail"  # dmarc=fail: the From domain's own policy says the mail is not theirs
    NONE = "none"  # nothing trustworthy either way


@dataclass(frozen=True)
class MethodResult:
    """One resinfo clause: `dkim=pass header.d=acme.example` → method, result, properties."""

    method: str
    result: str
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class AuthResults:
    """One Authentication-Results header; `authserv_id` is None for Microsoft 365's id-less form."""

    authserv_id: str | None
    results: tuple[MethodResult, ...]


@dataclass(frozen=True)
class Authentication:
    """The verdict on the From domain, the method that decided it and a reason for the log."""

    status: AuthStatus
    method: str | None = None  # "dmarc", "dkim" or "microsoft365"
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status is AuthStatus.PASS


NOT_CHECKED = Authentication(AuthStatus.NONE, None, "service.authserv_ids is empty")


def parse_authentication_results(value: str) -> AuthResults | None:
    """Parse one header value; None when it is not recognisably Authentication-Results."""
    clauses = _split_outside_quotes(_without_comments(value[:MAX_VALUE_CHARS]), ";")
    if not clauses:
        return None
    head = clauses[0].split()
    if not head:
        return None
    if "=" in head[0]:  # Microsoft 365: "spf=pass (...) smtp.mailfrom=…; dkim=…" has no authserv-id
        authserv_id, rest = None, clauses
    else:
        authserv_id, rest = head[0].lower().rstrip("."), clauses[1:]
    results = tuple(r for r in (_method_result(c) for c in rest[:MAX_RESULTS]) if r is not None)
    return AuthResults(authserv_id, results)


def trusted_results(values: Sequence[str], trusted_ids: Sequence[str]) -> AuthResults | None:
    """The topmost header written by a trusted authserv-id; every lower one could be forged."""
    trusted = {t.strip().lower().rstrip(".") for t in trusted_ids}
    for value in values[:MAX_HEADERS_READ]:
        parsed = parse_authentication_results(value)
        if parsed is None:
            continue
        if parsed.authserv_id in trusted or (parsed.authserv_id is None and MICROSOFT365 in trusted):
            return parsed
    return None


def authenticate(headers: Mapping[str, tuple[str, ...]], from_domain: str, trusted_ids: Sequence[str]) -> Authentication:
    """Whether a trusted receiving server authenticated mail from `from_domain`."""
    if not trusted_ids:
        return NOT_CHECKED
    domain = from_domain.strip().lower().rstrip(".")
    results = trusted_results(headers.get("authentication-results", ()), trusted_ids)
    verdict = _from_results(results, domain) if results is not None and domain else None
    if verdict is not None:
        return verdict
    if MICROSOFT365 in {t.strip().lower() for t in trusted_ids} and _inside_tenant(headers):
        return Authentication(AuthStatus.PASS, MICROSOFT365, "X-MS-Exchange-Organization-AuthAs: Internal")
    where = f"from {results.authserv_id or MICROSOFT365}" if results is not None else "from a trusted authserv-id"
    return Authentication(AuthStatus.NONE, None, f"no dmarc or aligned dkim pass for {domain or '(no domain)'} {where}")


def _from_results(results: AuthResults, domain: str) -> Authentication | None:
    source = results.authserv_id or MICROSOFT365
    dmarc = [r for r in results.results if r.method == "dmarc" and _domain(r.properties.get("header.from")) == domain]
    # Both verdicts for one domain would be a broken server: the safe reading is "fail".
    if any(r.result == "fail" for r in dmarc):
        return Authentication(AuthStatus.FAIL, "dmarc", f"dmarc=fail header.from={domain} ({source})")
    if any(r.result == "pass" for r in dmarc):
        return Authentication(AuthStatus.PASS, "dmarc", f"dmarc=pass header.from={domain} ({source})")
    for result in results.results:
        if result.method == "dkim" and result.result == "pass" and _dkim_domain(result) == domain:
            return Authentication(AuthStatus.PASS, "dkim", f"dkim=pass header.d={domain} ({source})")
    return None


def _dkim_domain(result: MethodResult) -> str:
    # Strict alignment only: relaxed alignment is exactly what a dmarc=pass already states.
    # Gmail writes the signing identity as header.i=@domain instead of header.d.
    if "header.d" in result.properties:
        return _domain(result.properties["header.d"])
    return _domain(result.properties.get("header.i", "").rpartition("@")[2])


def _inside_tenant(headers: Mapping[str, tuple[str, ...]]) -> bool:
    values = headers.get(AUTH_AS_HEADER, ())
    return bool(values) and all(v.strip().lower() == "internal" for v in values)


def _domain(value: str | None) -> str:
    return (value or "").strip().strip('"').lower().rstrip(".")


def _method_result(clause: str) -> MethodResult | None:
    words = clause.split()
    if not words or "=" not in words[0]:
        return None  # "none", or a stray fragment such as Outlook.com's "; hotmail.com;"
    method, _, result = words[0].partition("=")
    properties: dict[str, str] = {}
    for word in words[1:]:
        name, equals, value = word.partition("=")
        if equals and "." in name:
            properties.setdefault(name.lower(), value.strip('"'))
    return MethodResult(method.partition("/")[0].lower(), result.lower(), MappingProxyType(properties))


def _without_comments(text: str) -> str:
    """Drop RFC 5322 comments "(…)", nested and with quoted-pairs, in one pass."""
    out: list[str] = []
    depth, escaped, quoted = 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif char == '"' and depth == 0:
            quoted = not quoted
            out.append(char)
        elif char == "(" and not quoted:
            depth += 1
        elif char == ")" and depth and not quoted:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]
