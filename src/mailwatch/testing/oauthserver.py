"""A throwaway OAuth2 authorization server on loopback, for the tests and the demo.

A real HTTP server (stdlib, one thread per request) with the endpoints mailwatch uses:
device authorization (RFC 8628) that approves after a few polls or denies, a token
endpoint that rotates refresh tokens (the old one is spent), can shorten access-token
lifetimes and revoke everything, and token introspection (RFC 7662) for Dovecot's
oauth2 passdb and the SMTP sink. Never used by the service itself.
"""

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Issued:
    """What the server handed out for one account."""

    account: str
    expires_at: float  # time.time() of an access token's expiry; refresh tokens: inf


@dataclass
class OAuthState:
    """The server's knobs and memory; change the knobs from a test at any time."""

    client_id: str = "mailwatch-test"
    client_secret: str | None = None  # required for client_credentials when set
    account: str = "support@acme.example"  # who approves device sign-ins
    polls_before_approval: int = 2  # authorization_pending answers before approval
    deny: bool = False  # the person declines at the verification page
    device_expires_in_s: float = 60.0
    interval_s: float = 0.1
    access_lifetime_s: float = 3600.0
    rotate_refresh_tokens: bool = True
    secret_expired: bool = False  # as Microsoft's AADSTS7000222
    token_delay_s: float = 0.0  # a slow token endpoint: lets two refreshes overlap
    access: dict[str, Issued] = field(default_factory=dict)
    refresh: dict[str, Issued] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)  # device_code → polls so far
    grants: list[str] = field(default_factory=list)  # grant types served, in order
    lock: threading.Lock = field(default_factory=threading.Lock)


class OAuthServer:
    """Start it, point a sign-in's token_url and device_authorization_url at it."""

    def __init__(self) -> None:
        self.state = OAuthState()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def device_url(self) -> str:
        return f"{self.base_url}/device"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    def start(self) -> None:
        state = self.state
        handler = type("Handler", (_Handler,), {"state": state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="oauth-server", daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def revoke_all(self) -> None:
        """Every refresh and access token stops working, as when consent is withdrawn."""
        with self.state.lock:
            self.state.access.clear()
            self.state.refresh.clear()

    def expire_access_tokens(self) -> None:
        """Access tokens die now; refresh tokens still work."""
        with self.state.lock:
            self.state.access.clear()

    def active_account(self, token: str) -> str | None:
        """Whose live access token this is, or None."""
        with self.state.lock:
            issued = self.state.access.get(token)
        return issued.account if issued and issued.expires_at > time.time() else None

    def count(self, grant_type: str) -> int:
        with self.state.lock:
            return self.state.grants.count(grant_type)


def _id_token(account: str) -> str:
    # Unsigned, like the claims part of a real one: mailwatch shows it, never trusts it.
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'preferred_username': account})}.x"


class _Handler(BaseHTTPRequestHandler):
    state: OAuthState

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # the tests read what they need from the state

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
        routes = {"/device": self._device, "/token": self._token, "/introspect": self._introspect}
        route = routes.get(self.path.split("?")[0])
        if route is None:
            self._reply(404, {"error": "not_found"})
            return
        status, body = route(form)
        self._reply(status, body)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _device(self, form: dict) -> tuple[int, dict]:
        if form.get("client_id") != self.state.client_id:
            return 400, {"error": "invalid_client", "error_description": "unknown client"}
        code = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.devices[code] = 0
        return 200, {"device_code": code, "user_code": "WDJB-MJHT", "verification_uri": "http://127.0.0.1/device",
                     "verification_uri_complete": "http://127.0.0.1/device?user_code=WDJB-MJHT",
                     "expires_in": self.state.device_expires_in_s, "interval": self.state.interval_s}

    def _token(self, form: dict) -> tuple[int, dict]:
        time.sleep(self.state.token_delay_s)
        if form.get("client_id") != self.state.client_id:
            return 400, {"error": "invalid_client", "error_description": "unknown client"}
        grant = form.get("grant_type", "")
        with self.state.lock:
            self.state.grants.append(grant)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._device_grant(form)
            if grant == "refresh_token":
                return self._refresh_grant(form)
            if grant == "client_credentials":
                return self._client_grant(form)
        return 400, {"error": "unsupported_grant_type"}

    def _device_grant(self, form: dict) -> tuple[int, dict]:
        code = form.get("device_code", "")
        if code not in self.state.devices:
            return 400, {"error": "expired_token"}
        if self.state.deny:
            return 400, {"error": "access_denied", "error_description": "the user declined"}
        self.state.devices[code] += 1
        if self.state.devices[code] <= self.state.polls_before_approval:
            return 400, {"error": "authorization_pending"}
        del self.state.devices[code]
        return 200, self._issue(self.state.account, with_refresh=True)

    def _refresh_grant(self, form: dict) -> tuple[int, dict]:
        token = form.get("refresh_token", "")
        issued = self.state.refresh.get(token)
        if issued is None:
            return 400, {"error": "invalid_grant",
                         "error_description": "AADSTS70000: The refresh token was revoked or already used.\r\n"
                                              "Trace ID: 0000"}
        if self.state.rotate_refresh_tokens:
            del self.state.refresh[token]  # spent: only the newest one works
        return 200, self._issue(issued.account, with_refresh=self.state.rotate_refresh_tokens)

    def _client_grant(self, form: dict) -> tuple[int, dict]:
        if self.state.secret_expired:
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000222: The provided client secret keys for app 'mailwatch-test' are expired."}
        if self.state.client_secret is not None and form.get("client_secret") != self.state.client_secret:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        return 200, self._issue(self.state.account, with_refresh=False)

    def _issue(self, account: str, with_refresh: bool) -> dict:
        access = secrets.token_urlsafe(32)
        lifetime = self.state.access_lifetime_s
        self.state.access[access] = Issued(account, time.time() + lifetime)
        body = {"token_type": "Bearer", "access_token": access, "expires_in": lifetime,
                "id_token": _id_token(account)}
        if with_refresh:
            refresh = secrets.token_urlsafe(32)
            self.state.refresh[refresh] = Issued(account, float("inf"))
            body["refresh_token"] = refresh
        return body

    def _introspect(self, form: dict) -> tuple[int, dict]:
        token = form.get("token", "")
        with self.state.lock:
            issued = self.state.access.get(token)
        if issued is None or issued.expires_at <= time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": issued.account}
