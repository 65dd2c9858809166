"""OAuth2 sign-ins for Microsoft 365 and Google Workspace mailboxes (IMAP and SMTP XOAUTH2).

- `providers`: the presets' endpoint URLs and default scopes;
- `client`: the token and device authorization requests (httpx), the same for every provider;
- `store`: the tokens in the database, shared by every instance, compare-and-set on a version;
- `tokens`: `SignIn`, which hands out fresh access tokens and refreshes ahead of expiry;
- `device`: `mailwatch login`, the device authorization grant (RFC 8628);
- `signins`: which sign-ins the configuration names.

Dependencies point one way: config → oauth2 → db; the IMAP and SMTP adapters never
import this package, they are handed a function that returns a token.
"""
