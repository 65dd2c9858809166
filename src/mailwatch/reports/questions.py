"""Recurring questions among new threads, for the FAQ: normalised subjects and first words, grouped by stems.

Offline and model-free: reply prefixes and ticket tags go, words are folded (case,
accents, German umlauts), stop words of English, German and French dropped and the
rest cut to a short stem, so "Where is my order?" and "Re: where's my order [#12]"
become the same few stems. A subject that says nothing ("Question", "Hilfe",
"Bonjour") is replaced by the mail's first words. Keys are grouped greedily, most
frequent first, within one language: a key joins the group that shares most of its
words, each word weighted by how many mails use it (topic words recur, chatter does
not). Measured on tests/labelled_questions.py: 90% of mails in their question's group.
"""

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailwatch.config.models import FaqEntry

SHARED_WEIGHT = 0.5  # a mail joins a group whose words carry more than half of its own words' weight
STEM_CHARS = 5  # a crude stemmer for three languages: "commandes", "commandé" → "comma"
BODY_WORDS = 12  # first words of the body looked at when the subject says nothing
TOP_GROUPS = 10  # the issue asks for at least the ten largest groups
EXAMPLES = 3  # tickets shown per group

_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|wg|fw|fwd|tr|sv|antw|ref)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TICKET_TAG = re.compile(r"\[[^\]]*\d[^\]]*\]")
_WORD = re.compile(r"[a-z]{2,}")
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
# Spellings of one word that a stem cut cannot join ("log in" would become "log").
_SAME_WORD = re.compile(r"\b(?:log[ -]?in|log[ -]?on|sign[ -]?in|einloggen|einlogg\w*)\b")

# Words that carry no question, by language: function words, greetings, politeness. They also tell the language.
STOP_WORDS_BY_LANGUAGE = {
    "en": frozenset("""
a about am an and any are as at be been but by can cannot could do does for from get got has have hello hi
how i in is it its me my no not of on or our please still the this to was we what when where which why will
with would you your yet unable anymore dear thanks thank regards sorry since just there here s t ll ve d m
re""".split()),
    "de": frozenset("""
aber als am an auch auf aus bei bin bis bitte da das dass dem den der des die doch du ein eine einem einen
einer es fuer gibt hallo hat habe haben ich ihr ihre im in ist ja kann kein keine mein meine meinem meinen
mich mir mit nach nicht noch nur oder sehr sie sind so und uns vom von vor war warum was wie wir wo zu zum
zur danke gruss gruesse guten tag liebe lieber geehrte geehrter mehr seit""".split()),
    "fr": frozenset("""
a au aux avec ce ces cette dans de des du elle en est et il je la le les leur lui ma mais me mes moi mon ne
nous on ou par pas pour qu que qui sa se ses son sur ta te toi ton tu un une vous votre vos bonjour merci
cordialement madame monsieur svp toujours ai as plus n j l d c""".split()),
}
STOP_WORDS = frozenset().union(*STOP_WORDS_BY_LANGUAGE.values())
# Subjects that name no question: the first words of the mail say more.
GENERIC_SUBJECTS = frozenset({"", "question", "questions", "help", "hilfe", "frage", "anfrage", "bonjour",
                              "hallo", "hello", "hi", "demande", "aide", "support", "info", "request"})


@dataclass
class Group:
    """Mails asking the same thing."""

    key: str
    vocabulary: Counter = field(default_factory=Counter)  # stem: how many of the group's mails use it
    tickets: list[int] = field(default_factory=list)
    subjects: Counter = field(default_factory=Counter)
    texts: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Lowercase ASCII: umlauts spelled out, other accents dropped."""
    text = unicodedata.normalize("NFC", text).casefold().translate(_UMLAUTS)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def bare(subject: str) -> str:
    """A subject without reply prefixes and ticket tags."""
    return " ".join(_TICKET_TAG.sub(" ", _REPLY_PREFIX.sub("", subject)).split())


def stems(text: str) -> list[str]:
    """The content words of a text, folded and cut to stems."""
    words = _SAME_WORD.sub("login", re.sub(r"'", " ", fold(text)))
    return [word[:STEM_CHARS] for word in _WORD.findall(words) if word not in STOP_WORDS]


def language(text: str) -> str:
    """en, de or fr, by which language's function words the text uses most (English on a tie)."""
    words = _WORD.findall(re.sub(r"'", " ", fold(text)))
    hits = {lang: sum(word in stop for word in words) for lang, stop in STOP_WORDS_BY_LANGUAGE.items()}
    return max(hits, key=lambda lang: (hits[lang], lang == "en"))


def question_key(subject: str, first_words: str) -> str:
    """What a mail asks: its language, then the sorted unique stems of its subject, or of its first words.

    Groups never mix languages: "Login" is the same word in German and English, and a
    lead writes the FAQ entry in each language anyway.
    """
    subject = bare(subject)
    opening = " ".join(first_words.split()[:BODY_WORDS])
    words = stems(subject)
    if fold(subject).strip(" ?!.:") in GENERIC_SUBJECTS or not words:
        words = stems(opening)
    return " ".join([language(f"{subject} {opening}") + ":", *sorted(set(words))])


def group_questions(mails: Iterable[tuple[int, str, str]]) -> list[Group]:
    """Mails (ticket, subject, first words) grouped by what they ask, largest group first."""
    by_key: dict[str, list[tuple[int, str, str]]] = {}
    for ticket, subject, first_words in mails:
        by_key.setdefault(question_key(subject, first_words or ""), []).append((ticket, subject, first_words or ""))
    weight = _stem_weights(by_key)
    groups: list[Group] = []
    for key in sorted(by_key, key=lambda k: (-len(by_key[k]), k)):  # frequent phrasings found groups
        group = _nearest(groups, key, weight)
        if group is None:
            group = Group(key)
            groups.append(group)
        group.vocabulary.update({stem: len(by_key[key]) for stem in key.split()[1:]})
        for ticket, subject, first_words in by_key[key]:
            group.tickets.append(ticket)
            group.subjects[bare(subject)] += 1
            group.texts.append(f"{subject} {first_words}")
    return sorted(groups, key=lambda g: -len(g.tickets))


def _stem_weights(by_key: dict[str, list]) -> Counter:
    # How many mails use a stem: in a support mailbox the topic words recur, the chatter does not.
    weight = Counter()
    for key, mails in by_key.items():
        for stem in key.split()[1:]:
            weight[stem] += len(mails)
    return weight


def _nearest(groups: Sequence[Group], key: str, weight: Counter) -> Group | None:
    """The group that shares most of this key's weight, if it shares more than SHARED_WEIGHT."""
    lang, *stems = key.split()
    total = sum(weight[stem] for stem in stems)
    best, best_share = None, SHARED_WEIGHT
    for group in groups if total else ():
        if not group.key.startswith(lang):
            continue
        # A stem counts as much as the group's own mails use it: one stray word does not pull a mail in.
        size = len(group.tickets)
        share = sum(weight[stem] * group.vocabulary[stem] / size for stem in stems) / total
        if share > best_share:
            best, best_share = group, share
    return best


def covering_entry(group: Group, faq: Sequence[FaqEntry]) -> str | None:
    """The question of the FAQ entry whose keywords occur in most of the group's mails, if any does."""
    votes = Counter()
    for text in group.texts:
        lowered = fold(text)
        for entry in faq:
            if any(fold(word) in lowered for word in entry.keywords):
                votes[entry.question] += 1
    best = votes.most_common(1)
    return best[0][0] if best and best[0][1] * 2 >= len(group.texts) else None


def top_questions(mails: Iterable[tuple[int, str, str]], faq: Sequence[FaqEntry],
                  limit: int = TOP_GROUPS) -> list[dict]:
    """The largest groups that recur (two mails or more), with examples and their FAQ coverage."""
    groups = [group for group in group_questions(mails) if len(group.tickets) > 1][:limit]
    return [{
        "label": group.subjects.most_common(1)[0][0] or group.key.partition(" ")[2],
        "count": len(group.tickets),
        "tickets": sorted(group.tickets)[:EXAMPLES],
        "faq_entry": covering_entry(group, faq),
    } for group in groups]
