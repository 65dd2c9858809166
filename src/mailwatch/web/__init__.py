"""[web]: the page an escalation's signed link opens, and the forms that act on that one thread.

`forms` makes the per-page anti-forgery tokens, `headers` the security headers every
response carries, `pages` renders the sandboxed templates, `app` holds the routes and
`server` runs the app on the daemon's event loop with bounded connections.
"""
