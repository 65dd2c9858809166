"""Grouping first mails into recurring questions, measured on a labelled set in three languages."""

from collections import Counter

from mailwatch.config.models import FaqEntry
from mailwatch.reports.questions import group_questions, question_key, top_questions
from tests.labelled_questions import GROUPS, labelled_mails

QUALITY_FLOOR = 0.90  # the bar: nine mails in ten land in their question's group


def grouping_quality(mails: list[tuple[str, str, str | None]]) -> float:
    """Share of mails in the one group that stands for their label (and that label only).

    A label's group is the one holding most of its mails; a mail counts as right when it
    is in its label's group and that group is mostly its label. Splitting a question and
    merging two both cost mails. A one-off is right when it is alone.
    """
    groups = group_questions((index, subject, words) for index, (subject, words, _) in enumerate(mails))
    group_of = {ticket: n for n, group in enumerate(groups) for ticket in group.tickets}
    labels = [label for _, _, label in mails]
    home = {label: Counter(group_of[i] for i, l in enumerate(labels) if l == label).most_common(1)[0][0]
            for label in set(labels) if label}
    majority = {n: Counter(labels[t] for t in group.tickets).most_common(1)[0][0] for n, group in enumerate(groups)}
    right = 0
    for index, label in enumerate(labels):
        group = group_of[index]
        if label is None:
            right += len(groups[group].tickets) == 1
        else:
            right += home[label] == group and majority[group] == label
    return right / len(labels)


def test_grouping_puts_nine_in_ten_mails_in_their_questions_group():
    # English, German and French mails asking the same thing end up together, one-offs alone.
    quality = grouping_quality(labelled_mails())
    print(f"grouping quality: {quality:.1%} of {len(labelled_mails())} mails")
    assert quality >= QUALITY_FLOOR


def test_reply_prefixes_tags_and_accents_do_not_change_the_key():
    # "AW: Rückerstattung [#2211]" asks what "Rückerstattung" asks.
    assert question_key("AW: Rückerstattung [#2211]", "") == question_key("rückerstattung", "")
    assert question_key("Où est ma commande ?", "") == question_key("ou est ma commande", "")


def test_a_generic_subject_is_replaced_by_the_first_words():
    # "Question" says nothing; the mail's first words say what is asked.
    assert question_key("Question", "Where is my order?") == question_key("Where is my order", "")


def test_top_questions_name_the_faq_entry_that_covers_them():
    # A group whose mails mention an FAQ keyword is covered; the others are what to add.
    faq = (FaqEntry(question="How do I get a refund?", url="https://acme.example/refunds",
                    keywords=("refund", "Rückerstattung", "rembours")),)
    mails = [(i, subject, words) for i, (subject, words) in enumerate(GROUPS["en-refund"] + GROUPS["en-login"])]
    top = {entry["count"]: entry for entry in top_questions(mails, faq)}
    assert top[7]["faq_entry"] is None or top[7]["label"]
    covered = [entry for entry in top_questions(mails, faq) if entry["faq_entry"]]
    assert [entry["count"] for entry in covered] == [len(GROUPS["en-refund"])]
    assert all(len(entry["tickets"]) == 3 for entry in top.values())
