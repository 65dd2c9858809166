"""The [web] listener on loopback: security headers on every answer, bounded connections, a clean stop."""

import asyncio
import re

from aiohttp import web

from mailwatch.web.headers import headers_middleware, style_hash
from mailwatch.web.pages import Pages
from mailwatch.web.server import WebServer


def tiny_app(css: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=Pages().notice("Hello", "a page"), content_type="text/html")

    app = web.Application(middlewares=[headers_middleware(css)])
    app.router.add_get("/page", page)
    return app


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


def test_every_answer_carries_the_security_headers_and_the_style_hash_matches_the_page():
    css = Pages().css

    async def scenario() -> None:
        server = WebServer("127.0.0.1", 0, tiny_app(css))
        await server.start()
        try:
            for path in (b"/page", b"/nowhere"):
                answer = await raw_request(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                head, _, body = answer.partition(b"\r\n\r\n")
                headers = head.decode().lower()
                assert "content-security-policy: default-src 'none'; style-src 'sha256-" in headers
                for line in ("form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                             "x-frame-options: deny", "referrer-policy: no-referrer",
                             "x-content-type-options: nosniff", "cache-control: no-store"):
                    assert line in headers, (path, line)
                assert "script" not in headers
                if path == b"/page":
                    style, page_headers = re.search(rb"<style>(.*)</style>", body, re.S), headers
        finally:
            await server.stop()
        assert style_hash(style.group(1).decode()) == style_hash(css)
        assert style_hash(css).strip("'").lower() in page_headers

    asyncio.run(scenario())


def test_connections_past_the_bound_are_turned_away_and_stop_closes_idle_ones():
    async def scenario() -> None:
        server = WebServer("127.0.0.1", 0, tiny_app("body{}"), max_connections=2)
        await server.start()
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)  # both accepted before the third knocks
        turned_away = await raw_request(server.port, b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(server.stop(), 5)  # idle keep-alive connections do not hold the stop up
        for reader, writer in idle:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert turned_away.startswith(b"HTTP/1.1 503 ")

    asyncio.run(scenario())
