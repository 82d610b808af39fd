"""What keeps `orin-unlearn serve` within bounds: one generation at a time with a bounded queue
(`Slot`), a request-body limit that answers 413 before anything is parsed (`BodyLimit`), and a
Host allow-list (`HostAllowList`: loopback names and the address served on), so a web page that
rebinds its own DNS name to the kiosk's address cannot talk to it from a visitor's browser.

Kept apart from the server so each is small; they know nothing of chat completions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from orin_unlearn.edge import api

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class QueueFullError(RuntimeError):
    pass


class Slot:
    """One generation at a time, at most `max_queue` waiting; counts for /metrics."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.waiting = 0
        self._lock = asyncio.Lock()

    @property
    def full(self) -> bool:
        """Whether a request arriving now would be refused (checked before costly work)."""
        return self._lock.locked() and self.waiting >= self.max_queue

    async def acquire(self) -> None:
        if self.full:
            raise QueueFullError(f"{self.waiting} requests are already waiting")
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._lock.release()


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before it is parsed.

    A declared content-length over the limit is refused at once; otherwise (chunked bodies
    included) the body is read here, up to the limit, and handed to the app whole, so a body
    that grows past the limit is a 413 too, never the app's parse error.
    """

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: disconnect notices
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        await send_json(send, 413, api.error(f"request body over {self.limit} bytes", code="body_too_large"))


def host_of(header: str) -> str:
    """The host a Host header names, without its port, in lower case ('[::1]:8000' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostAllowList:
    """ASGI middleware: a request whose Host header names none of `hosts` (any port) gets a 400
    JSON error before anything else runs."""

    def __init__(self, app: Any, hosts: tuple[str, ...] | list[str]):
        self.app, self.hosts = app, {host_of(h) for h in hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if host_of(header) not in self.hosts:
                hosts = ", ".join(sorted(self.hosts))
                message = f"Host {header[:80]!r} is not one this server answers to ({hosts})"
                return await send_json(send, 400, api.error(message, code="invalid_host"))
        return await self.app(scope, receive, send)


async def send_json(send: Any, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
