"""A loopback HTTP/1.1 keep-alive server that answers every GET after a fixed delay.

Run as ``python -m benchmarks.slow_server --port PORT [--delay 0.05] [--size 16384]``.
Each request is answered ``delay`` seconds after it arrived with the same
``size``-byte body (seeded random bytes; :func:`make_body`), so throughput is
bounded by concurrency / delay: 16 connections give at most 320 files/s at
50 ms, 64 give 1,280, 256 give 5,120.  Built on ``asyncio.Protocol`` and
``call_later`` rather than streams, to keep the server's own CPU cost low.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal

BODY_SEED = 50


def make_body(size: int, seed: int = BODY_SEED) -> bytes:
    """The body every response carries."""
    return random.Random(seed).randbytes(size)


class DelayedHttp(asyncio.Protocol):
    """One connection: parse request heads, answer each after the delay, keep alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, response: bytes) -> None:
        self.loop = loop
        self.delay = delay
        self.response = response
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            close = b"connection: close" in head.lower()
            self.loop.call_later(self.delay, self._respond, close)

    def _respond(self, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.response)
        if close:
            self.transport.close()


async def serve(port: int, delay: float, size: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    response = head + make_body(size)
    server = await loop.create_server(
        lambda: DelayedHttp(loop, delay, response),
        "127.0.0.1",
        port,
        backlog=4096,
        reuse_address=True,
    )
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--size", type=int, default=16 * 1024, help="body bytes")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay, args.size))


if __name__ == "__main__":
    main()
