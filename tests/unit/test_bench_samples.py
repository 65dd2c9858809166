"""A benchmark sample comes from a customer the daemon has never acknowledged.

A sample's ack is what is timed; a customer who got an ack within per_sender_interval
rightly gets no second one, so a sample from one of the backlog's customers was lost
(bench isolation: 1 of 75 got no ack within 20 s, at the backlog's end, where its last
hour's mail is acknowledged).
"""

from bench import isolation
from bench.corpus import Generator
from bench.ingest import backlog_spec
from bench.latency import sample_generator, sample_mail


def test_no_sample_customer_writes_in_the_shared_backlog():
    backlog = {mail.sender for mail in Generator(backlog_spec(isolation.QUICK_BACKLOG)).mails()}
    generator = sample_generator("iso")
    samples = {sample_mail(generator, number).sender for number in range(isolation.SAMPLES)}
    assert not backlog & samples


def test_every_sample_has_a_customer_of_its_own():
    generator = sample_generator("mbx")
    senders = [sample_mail(generator, number).sender for number in range(isolation.SAMPLES)]
    assert len(set(senders)) == len(senders)
