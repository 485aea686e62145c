"""The model hop's HTTP/1.1 client: keep-alive connections per upstream, answers parsed by llhttp (`httptools`, the
parser uvicorn serves with), JSON bodies POSTed and read whole.

Why not aiohttp's client: it is on the hot path of every turn of every rollout, and its per-request machinery (URL
and header objects, cookie jar, tracing, redirect handling, stream readers) cost ~0.22 ms of CPU per call here against
~0.09 ms for this client on the same loop and server (bench in docs/performance.md) — a quarter of the server's CPU
per weather rollout. The model hop needs none of it: one method, one kind of body, no redirects, no cookies.

What it does: http and https (the system's trust store), `Host` / `Content-Length` / the caller's headers, answers
framed by Content-Length, chunked, or the connection's close, gzip/deflate bodies, 1xx answers skipped, at most
`limit` requests at a time, idle connections kept for `keepalive` seconds (the most recent reused first). A request
sent on a kept connection that the server had closed (no byte of an answer came back) is sent once more on a new
connection, as browsers and aiohttp do; any other connection failure is a `TransportError`. Timeouts are the
caller's: a request cancelled midway closes its connection, so no late answer can reach the next request.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

USER_AGENT = "gym-grpc"


class TransportError(Exception):
    """No complete HTTP answer: the connection could not be made, was lost, or the answer was not HTTP."""


class _StaleError(TransportError):
    """A kept connection closed before any byte of the answer came back: the request can go again on a new one."""


class Answer(NamedTuple):
    status: int
    body: bytes
    retry_after: str | None


@dataclass(frozen=True)
class _Target:
    origin: tuple[str, int, bool]  # host, port, tls
    head: bytes  # the request line and headers up to (not including) Content-Length


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.keep = False
        self._reset()

    def _reset(self) -> None:
        self.body: list[bytes] = []
        self.retry_after: str | None = None
        self.encoding: bytes | None = None
        self.framed = False  # Content-Length or chunked: the answer's end is in the stream, not at the close
        self.headers_done = False
        self.got_bytes = False

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._reset()
        self.keep = False
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"the answer is not valid HTTP/1.1 ({exc})"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.framed:  # an answer framed by the close of the connection
            self._deliver()
        elif not self.got_bytes:
            self._fail(_StaleError("the server closed the connection before answering"))
        else:
            self._fail(TransportError("the server closed the connection in the middle of its answer"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif key == b"content-encoding":
            self.encoding = value.strip().lower()
        elif key in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:  # 100 Continue, 103 Early Hints: the answer follows
            self._reset()
            self.got_bytes = True
            return
        self.keep = self.parser.should_keep_alive()
        self._deliver()

    def _deliver(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        body = b"".join(self.body)
        self.body = []
        if self.encoding not in (None, b"identity"):
            try:
                body = _decode(body, self.encoding)
            except (zlib.error, ValueError) as exc:
                self.keep = False
                waiter.set_exception(TransportError(f"the answer's body could not be decoded: {exc}"))
                return
        waiter.set_result(Answer(self.parser.get_status_code(), body, self.retry_after))

    def _fail(self, exc: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _decode(body: bytes, encoding: bytes) -> bytes:
    if encoding in (b"gzip", b"x-gzip"):
        return zlib.decompress(body, wbits=16 + zlib.MAX_WBITS)
    if encoding == b"deflate":  # zlib-wrapped, as the RFC says, or raw, as some servers send it
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, wbits=-zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {encoding.decode('latin-1')!r}")


class HttpTransport:
    """POST JSON bodies over kept HTTP/1.1 connections: at most `limit` requests at a time (each on its own
    connection), idle connections kept `keepalive` seconds. Bound to the event loop of its first request."""

    def __init__(self, *, limit: int, headers: Mapping[str, str] | None = None, keepalive: float = 15.0) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.keepalive = keepalive
        fields = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        fields.update(headers or {})
        for name, value in fields.items():
            if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name or not name:
                raise ValueError(f"invalid HTTP header {name!r}")
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode("latin-1")
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int, bool], collections.deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            host = parts.hostname
            authority = f"[{host}]" if ":" in host else host
            if parts.port is not None:
                authority = f"{authority}:{port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1") + self._headers
            target = _Target((host, port, tls), head)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def post(self, url: str, body: bytes) -> Answer:
        """POST `body` (JSON) to `url` and return the whole answer. Raises TransportError without one."""
        if self._closed:
            raise TransportError("the transport is closed")
        target = self._target(url)
        data = b"".join((target.head, b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body))
        async with self._slots:
            conn = self._kept(target.origin)
            if conn is not None:
                try:
                    return await self._exchange(conn, target, data)
                except _StaleError:
                    pass
            conn = await self._connect(target.origin)
            try:
                return await self._exchange(conn, target, data)
            except _StaleError as exc:
                raise TransportError(str(exc)) from None

    async def _exchange(self, conn: _Connection, target: _Target, data: bytes) -> Answer:
        try:
            answer = await conn.request(data)
        except BaseException:
            conn.abort()  # cancelled or failed midway: its late bytes must not reach another request
            raise
        if conn.keep and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(target.origin, collections.deque()).append(conn)
        else:
            conn.abort()
        return answer

    def _kept(self, origin: tuple[str, int, bool]) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest = time.monotonic() - self.keepalive
        while idle and idle[0].idle_since < oldest:  # expire from the old end
            idle.popleft().abort()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if not conn.closed:
                return conn
        return None

    async def _connect(self, origin: tuple[str, int, bool]) -> _Connection:
        host, port, tls = origin
        loop = asyncio.get_running_loop()
        context = None
        if tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            context = self._tls
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), host, port, ssl=context, server_hostname=host if tls else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    async def aclose(self) -> None:
        """Close the kept connections; requests in flight close theirs when they end."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().abort()
        self._idle.clear()


__all__ = ["Answer", "HttpTransport", "TransportError"]
