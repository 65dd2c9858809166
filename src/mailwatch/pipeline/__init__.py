"""What happens to mail, step by step, inside database transactions.

- `sync`: one IMAP folder brought up to date (batches, UIDVALIDITY, flags);
- `ingest`: a fetched message logged exactly once, classified and threaded;
- `threads`: which conversation a message belongs to, and Sent-folder answers;
- `acks`: the acknowledgment decision's facts, its rendering and queueing;
- `escalations`: the sweep that turns due steps into digests;
- `alerts`: emails about mailwatch itself;
- `outbox`: queued mail claimed, sent, retried and recorded.

The pure decisions these steps apply live below them (`mail.rules`, `sla`); the
adapters they drive (IMAP, SMTP, templates) are passed in.
"""
