"""The model hop's HTTP/1.1 client (`gym_grpc.models.transport`) against real servers: aiohttp's web server for the
answers real model servers give (Content-Length, chunked, gzip, Connection: close), and a raw asyncio server for
what they do when things go wrong (a kept connection closed, an answer framed by the close, a 100 Continue, bytes
that are not HTTP, an answer split at every byte)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from gym_grpc.models.transport import HttpTransport, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """An asyncio TCP server running `handler` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/responses"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[list[str], bytes]:
    """One request: its head lines and its body (Content-Length framed)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[:-2]
    length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
    return head, await reader.readexactly(length)


def answer(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


@pytest.fixture
async def echo_app() -> AsyncIterator[tuple[str, list[object]]]:
    """aiohttp's server: /echo answers the request body and headers as JSON, /chunked in chunks, /gzip compressed,
    /close with Connection: close, /slow after 0.2 s."""
    seen: list[object] = []  # the client's address of each request

    async def echo(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        seen.append(request.transport.get_extra_info("peername"))
        body = {"body": await request.json(), "headers": {str(k): v for k, v in request.headers.items()}}
        mode = request.match_info["mode"]
        if mode == "slow":
            await asyncio.sleep(0.2)
        if mode == "chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            data = orjson.dumps(body)
            for i in range(0, len(data), 7):
                await response.write(data[i : i + 7])
            await response.write_eof()
            return response
        if mode == "gzip":
            return web.Response(body=gzip.compress(orjson.dumps(body)), headers={"Content-Encoding": "gzip"})
        if mode == "close":
            return web.json_response(body, headers={"Connection": "close"})
        if mode == "status":
            return web.json_response({"error": "busy"}, status=429, headers={"Retry-After": "3"})
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/{mode}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("mode", ["plain", "chunked", "gzip", "close"])
async def test_answers_as_model_servers_send_them(echo_app: tuple[str, list[object]], mode: str) -> None:
    base, seen = echo_app
    transport = HttpTransport(limit=4, headers={"Authorization": "Bearer k", "X-Team": "rl"})
    try:
        for n in range(3):  # kept connections carry the later requests (except after Connection: close)
            status, body, _ = await transport.post(f"{base}/{mode}", orjson.dumps({"n": n, "text": "é" * 50}))
            assert status == 200
            data = orjson.loads(body)
            assert data["body"] == {"n": n, "text": "é" * 50}
            assert data["headers"]["Authorization"] == "Bearer k" and data["headers"]["X-Team"] == "rl"
            assert data["headers"]["Host"] == base.split("/")[2]
    finally:
        await transport.aclose()
    assert len(seen) == 3 and len(set(seen)) == (3 if mode == "close" else 1)


async def test_status_and_retry_after_reach_the_caller(echo_app: tuple[str, list[object]]) -> None:
    base, _ = echo_app
    transport = HttpTransport(limit=1)
    status, body, retry_after = await transport.post(f"{base}/status", b"{}")
    assert (status, json.loads(body), retry_after) == (429, {"error": "busy"}, "3")
    await transport.aclose()


async def test_at_most_limit_requests_at_a_time(echo_app: tuple[str, list[object]]) -> None:
    base, seen = echo_app
    transport = HttpTransport(limit=3)
    answers = await asyncio.gather(*(transport.post(f"{base}/slow", orjson.dumps({"n": n})) for n in range(9)))
    assert sorted(orjson.loads(b)["body"]["n"] for _, b, _ in answers) == list(range(9))
    assert len(set(seen)) == 3  # three connections, each reused for three requests
    await transport.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(answer(body))  # keep-alive by HTTP/1.1's default, then closed anyway
        await writer.drain()

    server = RawServer(once)
    async with server as url:
        transport = HttpTransport(limit=2)
        for n in range(4):
            await asyncio.sleep(0.05)  # the close reaches us first ...
            status, body, _ = await transport.post(url, f'{{"n": {n}}}'.encode())
            assert (status, body) == (200, f'{{"n": {n}}}'.encode())
        assert server.connections == 4
        await transport.aclose()


async def test_a_close_racing_the_request_sends_it_again_on_a_new_connection() -> None:
    first = asyncio.Event()

    async def close_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(answer(body))
        await writer.drain()
        if not first.is_set():
            first.set()
            await reader.readuntil(b"\r\n\r\n")  # ... the next request arrives, and the server closes unanswered
            return
        while True:
            _, body = await read_request(reader)
            writer.write(answer(body))

    server = RawServer(close_second)
    async with server as url:
        transport = HttpTransport(limit=1)
        assert (await transport.post(url, b"1"))[1] == b"1"
        assert (await transport.post(url, b"2"))[1] == b"2"
        assert server.connections == 2
        await transport.aclose()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b'HTTP/1.1 200 OK\r\n\r\n{"framed": "by the close"}', (200, b'{"framed": "by the close"}')),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"{}"), (200, b"{}")),
        (answer(b"x" * 5000), (200, b"x" * 5000)),
    ],
)
async def test_answer_framings(reply: bytes, expected: tuple[int, bytes]) -> None:
    async def reply_bytewise(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(0, len(reply), 3):  # split everywhere: the parser keeps its state between pieces
            writer.write(reply[i : i + 3])
            await writer.drain()

    async with RawServer(reply_bytewise) as url:
        transport = HttpTransport(limit=1)
        status, body, _ = await transport.post(url, b"{}")
        assert (status, body) == expected
        await transport.aclose()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"SMTP ready\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "in the middle of its answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\n\r\nabc", "could not be decoded"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding: br\r\n\r\nabc", "unsupported Content-Encoding"),
        (b"", "closed the connection before answering"),
    ],
)
async def test_broken_answers_are_transport_errors(reply: bytes, message: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with RawServer(broken) as url:
        transport = HttpTransport(limit=1)
        with pytest.raises(TransportError, match=message):
            await transport.post(url, b"{}")
        await transport.aclose()


async def test_a_cancelled_request_never_hands_its_late_answer_to_the_next() -> None:
    async def late_then_prompt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            if body == b'"late"':
                await asyncio.sleep(0.3)
            writer.write(answer(body))
            await writer.drain()

    server = RawServer(late_then_prompt)
    async with server as url:
        transport = HttpTransport(limit=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await transport.post(url, b'"late"')
        assert (await transport.post(url, b'"next"'))[1] == b'"next"'
        await asyncio.sleep(0.4)
        assert (await transport.post(url, b'"after"'))[1] == b'"after"'
        assert server.connections == 2  # the cancelled request's connection was closed, not kept
        await transport.aclose()


async def test_unreachable_and_closed() -> None:
    async with RawServer(read_request) as url:  # type: ignore[arg-type]
        pass  # closed: nothing listens on its port any more
    transport = HttpTransport(limit=1)
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.post(url, b"{}")
    await transport.aclose()
    with pytest.raises(TransportError, match="closed"):
        await transport.post(url, b"{}")


def test_bad_configuration_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="invalid HTTP header"):
        HttpTransport(limit=1, headers={"X-Bad": "a\r\nInjected: yes"})
    with pytest.raises(ValueError, match="limit"):
        HttpTransport(limit=0)
    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(HttpTransport(limit=1).post("ftp://example.com/x", b"{}"))
