"""Storage: the tables, the engine and sessions, the SQLite single-instance lock, queries.

- `models`: the tables (message log, threads, outbox, escalations, folder and service state);
- `engine`: engines with mailwatch's SQLite pragmas, sessions, the schema's version check;
- `lock`: one process per SQLite file;
- `queries`: read-side queries shared by the CLI and the reports.
"""
