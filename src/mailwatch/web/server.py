"""Runs the web app on the daemon's event loop: a bounded number of connections, each for a bounded time.

aiohttp's own access log is off: it would print the query string, and the query string
carries the link token. The app logs the ticket and the outcome instead.
"""

import asyncio

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 32  # a team clicking links, or a scanner opening them all; more get 503 and a close
CONNECTION_LIFETIME_S = 30.0  # a slow client (or a slowloris) gives its slot back after this
KEEPALIVE_S = 5.0  # aiohttp also closes a connection that sends nothing for this long
SHUTDOWN_S = 2.0  # an action in flight may finish; well inside the daemon's stop budget
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(BUSY)  # type: ignore[attr-defined]
        transport.close()


class _BoundedFactory:
    """aiohttp's protocol factory, turning connections away past MAX_CONNECTIONS."""

    def __init__(self, server: web.Server, limit: int, lifetime_s: float) -> None:
        self.server, self.limit, self.lifetime_s = server, limit, lifetime_s

    def __call__(self) -> asyncio.Protocol:
        if len(self.server.connections) >= self.limit:
            return _Busy()
        handler = self.server()
        asyncio.get_running_loop().call_later(self.lifetime_s, _expire, handler)
        return handler


def _expire(handler: asyncio.Protocol) -> None:
    transport = getattr(handler, "transport", None)
    if transport is not None and not transport.is_closing():
        transport.close()


class WebServer:
    """Start and stop the app's listener; `port` is the one bound (useful with port 0)."""

    def __init__(self, host: str, port: int, app: web.Application, max_connections: int = MAX_CONNECTIONS) -> None:
        self.host, self.requested_port, self.app = host, port, app
        self.max_connections = max_connections
        self.runner: web.AppRunner | None = None
        self.listener: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_S,
                                    shutdown_timeout=SHUTDOWN_S)
        await self.runner.setup()
        factory = _BoundedFactory(self.runner.server, self.max_connections, CONNECTION_LIFETIME_S)
        self.listener = await asyncio.get_running_loop().create_server(factory, self.host, self.requested_port,
                                                                       backlog=64)
        log.info("web_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish (bounded), close the connections."""
        if self.listener is not None:
            self.listener.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.listener is not None:
            await self.listener.wait_closed()
