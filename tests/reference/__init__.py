"""Earlier implementations kept verbatim, for tests that prove a rewrite changed no result."""
