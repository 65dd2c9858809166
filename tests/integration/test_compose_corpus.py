"""Composed acks for all of both corpora read back as the EmailMessage reference built them.

No sockets: it is here, not in tests/unit, for its time (the reference's header registry
over 930 mails takes about 15 s of CPU).
"""

from tests.reference_mail import acknowledger_in, compare_corpus, corpus_files


def test_every_ack_of_both_corpora_reads_back_as_the_email_message_one(tmp_path):
    # Same decoded headers, same parts, same text, for every mail a person could be answered for.
    assert compare_corpus(acknowledger_in(tmp_path), corpus_files(external=True)) > 800
