"""Real servers for the demo, the tests and the benchmarks, like aiosmtpd's `testing`.

- `devservers`: a throwaway unprivileged Dovecot and an aiosmtpd SMTP sink on loopback;
- `demo`: `scripts/demo`, mailwatch end to end on them.

Nothing in the service imports this package.
"""
