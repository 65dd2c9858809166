"""Counts in words: "1 email", "2 emails", "1 is past its deadline", "2 are past their deadline".

Pure and tiny on purpose: command output and the email templates
(as Jinja globals) all use it, so no sentence ever says "1 emails".
"""


def by_count(count: int, one: str, many: str) -> str:
    """`one` when `count` is exactly 1, else `many` (English uses the plural for 0 too)."""
    return one if count == 1 else many


def counted(count: int, noun: str, nouns: str | None = None) -> str:
    """The count and the noun that agrees with it: '1 step', '3 steps', '0 replies' (give `nouns` if not +s)."""
    return f"{count} {by_count(count, noun, nouns or noun + 's')}"
