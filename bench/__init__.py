"""mailwatch's benchmark suite: each scenario against the bare protocol floor.

`python -m bench` (from the repository root) starts a throwaway Dovecot, an SMTP sink
and scratch databases in a temporary folder, runs every scenario (`ingest`, `acks`,
`latency`, `sweep`, `memory`), prints a table of mailwatch's figure, the floor's, their
ratio and the target, and writes the same as JSON to `bench/results/latest.json`.
`--quick` is a smoke run; `--only NAME[,NAME]` picks scenarios. See `bench/__main__.py`.
"""
