"""The scripted loopback HTTP/1.1 server behind :class:`testing.FileServer`.

Public names are re-exported from :mod:`download_pipeline_processor.testing`;
import them from there.  The server reads requests itself and writes answers
byte for byte, so a test can serve files the way a well-behaved server does
*and* answers none would give (two framings, garbage lengths, a body cut in a
chunk, bytes after the body on a kept connection).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Callable, Literal, Union
from urllib.parse import unquote

if TYPE_CHECKING:
    import ssl

#: Longest a :class:`Wait` step waits by default: a client that never gives up
#: fails its test instead of hanging it.
WAIT_LIMIT = 10.0


@dataclass(frozen=True)
class Pause:
    """An answer step: wait ``seconds`` (cut short when the server stops)."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """An answer step: wait until ``event`` is set, the server stops, or ``timeout`` passed.

    Without an ``event``, wait for the server's ``release`` event: a test made
    before its server can still hold answers until it says so.
    """

    event: threading.Event | None = None
    timeout: float = WAIT_LIMIT


class _Action:
    """A named answer step: ``CLOSE``, ``RESET`` or ``RECEIVE``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Answer step: shut the connection down cleanly (FIN), whatever the answer's headers said.
CLOSE = _Action("CLOSE")
#: Answer step: abort the connection (RST), as a crashed server or a middlebox does.
RESET = _Action("RESET")
#: Answer step: read what the client sent (one read, up to 64 KiB), e.g. a TLS ClientHello.
RECEIVE = _Action("RECEIVE")

#: One step of a scripted answer: bytes to write (one write each); an iterator of
#: bytes (a generator: each piece written in turn, a huge body without holding it
#: in memory); a pause, a wait; ``CLOSE``, ``RESET``, ``RECEIVE``; or a callable
#: run on the server's thread (``event.set`` tells the test a step was reached).
Step = Union[bytes, Iterator[bytes], Pause, Wait, _Action, Callable[[], object]]


class Answer:
    """A scripted answer to one request: its steps, in order.

    Without a ``CLOSE`` or ``RESET`` step the connection stays open for the
    next request.  ``Answer(raw_ok(b"hi"), Pause(0.1), b"stray", CLOSE)``
    answers, writes stray bytes a moment later, and hangs up.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps: tuple[Step, ...] = steps

    def __repr__(self) -> str:
        return f"Answer{self.steps!r}"


def raw_ok(body: bytes, *header_lines: str) -> bytes:
    """The bytes of a ``200 OK`` with a Content-Length and ``header_lines`` ("Name: value")."""
    lines = "".join(f"{line}\r\n" for line in header_lines)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{lines}\r\n".encode() + body


def raw_chunked(body: bytes, piece: int = 64 * 1024) -> bytes:
    """``body`` in the chunked transfer coding, ``piece`` bytes a chunk, with the last chunk."""
    return b"".join(_chunks(body, piece)) + _LAST_CHUNK


_LAST_CHUNK = b"0\r\n\r\n"


def _chunks(body: bytes, piece: int) -> list[bytes]:
    """``body`` as chunks of the chunked transfer coding, ``piece`` bytes each, no last chunk."""
    return [b"%x\r\n%s\r\n" % (len(part), part) for part in _split(body, piece)]


def _split(body: bytes, piece: int) -> list[bytes]:
    return [body[at : at + piece] for at in range(0, len(body), piece)]


@dataclass(frozen=True)
class RangeOptions:
    """How a :class:`Route` answers range requests, and breaks or slows its body.

    For resume and time-limit tests.  They shape the route's ``200`` answers
    only (a scripted error status stays an error).

    With ``ranges``, the answer says ``Accept-Ranges: bytes`` and a
    ``Range: bytes=N-`` (N inside the body) is answered ``206`` with the rest
    of the body and a Content-Range, unless an ``If-Range`` matches neither
    the answer's ETag nor its Last-Modified: the file changed, so ``200``
    with the whole body.  Any other Range is answered ``200``, whole.
    Without ``ranges``, a Range is ignored.

    ``bodies`` and ``etags`` are used one per request, the last one
    repeating (a file that changes between attempts); no ``bodies``: the
    route's body; no ``etags``: no ETag.  ``last_modified`` is sent as the
    Last-Modified of every answer.  The first ``cut_requests`` answers stop
    after ``cut_after`` bytes of body and hang up.  ``drip`` sends the body a
    byte at a time, that many seconds apart.  ``chunked`` sends it in the
    chunked framing (no Content-Length), whatever the route's ``framing``.
    """

    ranges: bool = True
    bodies: Sequence[bytes] = ()
    etags: Sequence[str] = ()
    last_modified: str | None = None
    cut_after: int | None = None
    cut_requests: int = 1
    drip: float = 0.0
    chunked: bool = False


@dataclass
class Route:
    """How :class:`FileServer` serves a file at one path, as a well-behaved server would.

    ``statuses`` is consumed one per request, the last one repeating, so
    ``statuses=(500, 200)`` fails once and then succeeds.  ``framing`` is how
    the body's end is told: ``"length"`` (a Content-Length), ``"chunked"``
    (chunks of ``chunk_size`` bytes) or ``"close"`` (no length; the connection
    ends with the body).  ``content_length`` is sent as the Content-Length
    instead of the real length (beside the chunks, with ``"chunked"``).
    ``truncate_to`` announces the full length but sends only that many bytes
    and hangs up.  ``delay`` waits before answering.  ``range_options``
    answers byte ranges and cuts or slows the body (see :class:`RangeOptions`).
    """

    body: bytes = b""
    statuses: Sequence[int] = (200,)
    headers: dict[str, str] = field(default_factory=dict)
    truncate_to: int | None = None
    delay: float = 0.0
    redirect_to: str | None = None
    framing: Literal["length", "chunked", "close"] = "length"
    content_length: int | str | None = None
    chunk_size: int = 64 * 1024
    range_options: RangeOptions | None = None


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    #: The request target as sent: path and query (or an absolute URL, through a proxy).
    target: str
    #: The path without the query (for a proxy request, the path of the absolute URL).
    path: str
    #: The header fields, names as sent (a repeated name keeps its last value).
    headers: dict[str, str]
    #: Which connection it came on: 1 for the first one accepted, and so on.
    connection: int
    #: The request line and header fields, byte for byte, without the blank line.
    head: bytes


_NOT_FOUND = Route(b"not found", (404,))
_Handler = Union[Route, "list[Answer]"]


class LoopbackServer:
    """The listener, its connections and what they saw (see :class:`testing.FileServer`)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        # Many concurrent workers connect at once in tests; a small backlog drops some.
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        #: Kept after a stop, so URLs made earlier still name the (closed) port.
        self.port = int(self._listener.getsockname()[1])
        self._ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.routes: dict[str, _Handler] = {}
        self.greetings: list[Answer] = []
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.log: list[Request] = []
        self.connections = 0
        self.closed_by_client = 0
        #: When (time.monotonic()) a client hung up while its answer paused or waited.
        self.hang_ups: list[float] = []
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self.on_request: Callable[[Request], object] | None = None
        self.release = threading.Event()
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="dpp-test-server", daemon=True)

    def start(self) -> None:
        self._accepting.start()

    def stop(self) -> None:
        """Stop accepting, hang up every connection, wait for the server's threads."""
        self.stopping.set()
        # shutdown() wakes the blocked accept() at once, which close() alone does not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._accepting.is_alive():
            self._accepting.join(5)
        with self.lock:
            connections = list(self._open)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)

    # -- accepting ------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self.lock:
                if self.stopping.is_set():
                    conn.close()
                    return
                self.connections += 1
                number = self.connections
                self._open.add(conn)
                thread = threading.Thread(
                    target=self._serve, args=(conn, number), name="dpp-test-conn", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        # Headers and body go out in separate writes; without this, Nagle's algorithm
        # and delayed ACKs would hold every answer back by a delayed-ACK timeout.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = conn
        try:
            if self._ssl_context is not None:
                # The handshake happens here, not in accept(): a client that never
                # finishes it holds up only its own connection.
                stream = self._ssl_context.wrap_socket(conn, server_side=True)
            self._answer_requests(stream, number)
        except OSError:
            pass  # the client hung up (a timeout, a failed handshake, a stop): nothing to answer
        finally:
            with self.lock:
                self._open.discard(conn)
            stream.close()

    # -- one connection ----------------------------------------------------------------

    def _answer_requests(self, conn: socket.socket, number: int) -> None:
        if self.greetings:
            greeting = self.greetings[min(number, len(self.greetings)) - 1]
            ending = self._play(conn, greeting, lambda: None)
            if ending is not None:
                self._hang_up(conn, ending)
                return
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if not self.stopping.is_set():
                        with self.lock:
                            self.closed_by_client += 1
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            request = _parse(head, number)
            # A request body (none in these tests' clients, but be safe) is read and dropped.
            length = int(request.headers.get("Content-Length", "0") or 0)
            while len(pending) < length:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            pending = pending[length:]
            if not self._answer(conn, request):
                return

    def _answer(self, conn: socket.socket, request: Request) -> bool:
        """Answer ``request``; false when the connection is over."""
        # In-flight counts per Host header ("host:NAME") and over all requests ("").
        keys = ("", "host:" + request.headers.get("Host", ""))
        route, handler = self._handler(request.path)
        with self.lock:
            self.counts[request.path] += 1
            # Statuses and answers go in turn per route: "*" counts every path it serves.
            seen = self.answered[route]
            self.answered[route] += 1
            self.log.append(request)
            for key in keys:
                self.in_flight[key] += 1
                self.most_in_flight[key] = max(self.most_in_flight[key], self.in_flight[key])
        counted_in = True

        def count_out() -> None:
            # Before the answer's last bytes (and before any hang-up): a client
            # may start its next request as soon as it has read this answer,
            # before this thread runs again.
            nonlocal counted_in
            with self.lock:
                if counted_in:
                    counted_in = False
                    for key in keys:
                        self.in_flight[key] -= 1

        try:
            if self.on_request is not None:
                self.on_request(request)
            if isinstance(handler, Route):
                ending = self._serve_file(conn, request, handler, seen, count_out)
            else:
                ending = self._play(conn, handler[min(seen, len(handler) - 1)], count_out)
        finally:
            count_out()
        if ending is not None:
            self._hang_up(conn, ending)
        return ending is None

    @staticmethod
    def _hang_up(conn: socket.socket, how: _Action) -> None:
        if how is RESET:
            # A zero linger time makes close() send an RST instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.shutdown(socket.SHUT_RDWR)

    def _handler(self, path: str) -> tuple[str, _Handler]:
        """The route serving ``path``, and what it serves."""
        # A route matches the path as sent, or decoded (a test may add either).
        for key in (path, unquote(path), "*"):
            handler = self.routes.get(key)
            if handler is not None:
                return key, handler
        return "", _NOT_FOUND

    def _play(
        self, conn: socket.socket, answer: Answer, before_last_write: Callable[[], None]
    ) -> _Action | None:
        """Play ``answer``'s steps up to the first hang-up, which is returned.

        ``before_last_write`` is called just before the answer's last bytes go
        out, unless a pause or a wait follows them: a client may act on them
        (start its next request) before this thread runs again.
        """
        last_write = _final_write(answer.steps)
        for index, step in enumerate(answer.steps):
            if index == last_write:
                before_last_write()
            if isinstance(step, bytes):
                conn.sendall(step)
            elif isinstance(step, (Pause, Wait)):
                if isinstance(step, Pause):
                    gone = self._hold(conn, step.seconds)
                else:
                    gone = self._hold(conn, step.timeout, step.event or self.release)
                if gone or self.stopping.is_set():
                    return CLOSE  # a stop hangs up, whatever the rest of the answer
            elif step is RECEIVE:
                conn.recv(65536)
            elif isinstance(step, _Action):
                return step
            elif isinstance(step, Iterator):
                for piece in step:
                    conn.sendall(piece)
            elif callable(step):
                step()
        return None

    def _hold(
        self, conn: socket.socket, seconds: float, until: threading.Event | None = None
    ) -> bool:
        """Wait ``seconds`` (less when ``until`` is set or the server stops), watching the client.

        True as soon as the client hangs up meanwhile (an EOF or a reset),
        noted in :attr:`hang_ups`.  Over TLS, where the stream cannot be
        peeked at, the kernel's word is taken (``POLLRDHUP``, Linux); where
        neither works it only waits.
        """
        end = time.monotonic() + seconds
        plain = self._ssl_context is None
        mask = ((select.POLLIN if plain else 0) | _POLLRDHUP) if hasattr(select, "poll") else 0
        poller = select.poll() if mask else None
        if poller is not None:
            poller.register(conn, mask)
        while not (self.stopping.is_set() or (until is not None and until.is_set())):
            left = end - time.monotonic()
            if left <= 0:
                return False
            step = min(left, 0.02)
            if poller is None:
                self.stopping.wait(step)
                continue
            events = poller.poll(step * 1000)
            flags = events[0][1] if events else 0
            if flags & _GONE or (flags and plain and _client_gone(conn)):
                with self.lock:
                    self.hang_ups.append(time.monotonic())
                return True
            if flags:
                self.stopping.wait(step)  # bytes the client sent: they wait for their turn
        return False

    def _serve_file(
        self,
        conn: socket.socket,
        request: Request,
        route: Route,
        seen: int,
        before_last_write: Callable[[], None],
    ) -> _Action | None:
        if route.delay and self._hold(conn, route.delay):
            return CLOSE
        status = route.statuses[min(seen, len(route.statuses) - 1)]
        headers = dict(route.headers)
        body = route.body
        # Range options shape the file's answers only: a scripted error stays an error.
        ranging = route.range_options if status == 200 else None
        if ranging is not None:
            status, body = _ranged(ranging, request, seen, body, headers)
        if route.redirect_to is not None and 300 <= status < 400:
            headers["Location"] = route.redirect_to
            body = b""
        elif status >= 400:
            body = b"error" if route is not _NOT_FOUND else route.body
        headers.setdefault("Content-Type", "application/octet-stream")
        framing = route.framing if status < 300 else "length"
        cut_after, drip = None, 0.0
        if ranging is not None:
            framing = "chunked" if ranging.chunked else framing
            cut_after = ranging.cut_after if seen < ranging.cut_requests else None
            drip = ranging.drip
        writes, hang_up = _framed(route, framing, body, headers, cut_after=cut_after, drip=drip)
        if route.truncate_to is not None and status < 300:
            writes, hang_up = [b"".join(writes)[: route.truncate_to]], True
        head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        steps: list[Step] = [head.encode("latin-1") + b"\r\n"]
        if request.method != "HEAD":
            if drip:
                steps += [step for write in writes for step in (Pause(drip), write)]
            else:
                steps.append(b"".join(writes))
        if hang_up or not _wants_keep_alive(request):
            steps.append(CLOSE)
        return self._play(conn, Answer(*steps), before_last_write)


def _final_write(steps: Sequence[Step]) -> int:
    """The index of an answer's last write, or -1 if a pause or a wait comes after it.

    A held answer is in flight until it is let go: it is counted out at its end.
    """
    last = max(
        (i for i, step in enumerate(steps) if isinstance(step, (bytes, Iterator))), default=-1
    )
    if any(isinstance(step, (Pause, Wait)) for step in steps[last + 1 :]):
        return -1
    return last


def _framed(
    route: Route,
    framing: str,
    body: bytes,
    headers: dict[str, str],
    *,
    cut_after: int | None,
    drip: float,
) -> tuple[list[bytes], bool]:
    """``body`` as writes in ``framing`` (a byte each when dripped); ``headers`` get the framing's.

    The flag is true when the connection ends with the body: it is
    close-delimited, or cut after ``cut_after`` bytes.
    """
    sent = body if cut_after is None else body[:cut_after]
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        if route.content_length is not None:
            headers["Content-Length"] = str(route.content_length)
        # Dripped, each byte is a chunk of its own, which the client can use at once.
        writes = _chunks(sent, 1 if drip else route.chunk_size)
        if cut_after is not None:
            return writes, True
        return [*writes, _LAST_CHUNK], False
    if framing == "close":
        headers["Connection"] = "close"
    else:
        announced = route.content_length if route.content_length is not None else len(body)
        headers["Content-Length"] = str(announced)
    writes = _split(sent, 1) if drip else [sent]
    return writes, framing == "close" or cut_after is not None


def _ranged(
    options: RangeOptions, request: Request, seen: int, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """The status and body of the ``seen``-th answer under ``options``; ``headers`` get its own."""
    body = options.bodies[min(seen, len(options.bodies) - 1)] if options.bodies else body
    etag = options.etags[min(seen, len(options.etags) - 1)] if options.etags else None
    if etag is not None:
        headers["ETag"] = etag
    if options.last_modified is not None:
        headers["Last-Modified"] = options.last_modified
    if not options.ranges:
        return 200, body
    headers["Accept-Ranges"] = "bytes"
    validator = request.headers.get("If-Range")
    if validator and validator not in (etag, options.last_modified):
        return 200, body  # the file changed since the client's copy: all of it
    asked = request.headers.get("Range", "")
    first = asked[len("bytes=") : -1] if asked.startswith("bytes=") and asked.endswith("-") else ""
    if not first.isdigit() or int(first) >= len(body):
        return 200, body
    start = int(first)
    headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
    return 206, body[start:]


def _parse(head: bytes, connection: int) -> Request:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target = rest.rpartition(" ")[0] or rest
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    path = target.split("?", 1)[0]
    if "://" in path:
        # An absolute URI: a client using this server as its HTTP proxy.
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return Request(method, target, path, headers, connection, head)


def _wants_keep_alive(request: Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    if request.head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0"):
        return connection == "keep-alive"
    return connection != "close"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


#: What poll() says of a connection the client ended (RDHUP: Linux only).
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)
_GONE = _POLLRDHUP | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


def _client_gone(conn: socket.socket) -> bool:
    """True when the client ended the connection: an EOF or a reset waits to be read."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
