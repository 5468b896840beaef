"""The ``fast`` download backend: HTTP/1.1 on plain sockets, one connection per worker.

http.client (under urllib3 and requests) parses every response head with the
email package and wraps each answer in several objects: for a 16 KiB file
that is most of the CPU a download costs, and on two cores the workers then
queue for the GIL.  This transport sends one prepared request, parses the head
itself and moves the body from a per-thread buffer straight into the file.

It keeps the rules of the ``requests`` downloader: identity encoding, at most
``max_redirects`` hops to http or https only (credentials headers dropped when
the host changes), 5xx/408/429 retried, exact lengths, ``timeout`` per
connect and per read.  What it leaves out, it hands on: URLs that need a
``requests.Session`` (an environment proxy, credentials in the URL, a
``.netrc``) still go through one.  No HTTP/2, no pipelining, no compression.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from ..errors import PermanentDownloadError, PipelineInterrupted, TransientDownloadError
from .http import RequestsDownloader, Transport, ca_bundle
from .http_rules import (
    REDIRECT_STATUSES,
    check_status,
    describe,
    same_host,
    without_credentials,
)
from .sink import open_destination, write_all

if TYPE_CHECKING:
    import ssl

#: The longest response head accepted; a longer one is a protocol error.
MAX_HEAD = 64 * 1024
#: The smallest per-thread buffer: a whole head must fit.
MIN_BUFFER = 2 * MAX_HEAD
#: Longest chunk-size or trailer line of a chunked body.
MAX_LINE = 8 * 1024
#: Error and redirect bodies up to this size are read off so the connection is kept.
MAX_DRAIN = 1024 * 1024
#: Idle connections a worker thread keeps, one per origin, oldest closed first.
MAX_IDLE_PER_THREAD = 4
#: What requests leaves unquoted when it re-quotes a URL.
_SAFE_URL_CHARACTERS = "!#$%&'()*+,/:;=?@[]~"

#: How a body ends, besides a Content-Length.
CHUNKED = -1
UNTIL_CLOSE = -2

_Origin = tuple[bool, str, int]  # (tls, host, port)


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this transport reads it."""


class _Closed(Exception):
    """The server closed the connection before the response was complete."""


class _HandshakeFailed(Exception):
    """TLS set-up failed (certificate, protocol): another attempt will not fix it."""


class _Request:
    """A URL taken apart once: where to connect and the request line and Host."""

    __slots__ = ("host", "origin", "start")

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise PermanentDownloadError(f"invalid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise PermanentDownloadError("only http and https URLs can be downloaded")
        host = parts.hostname
        if not host:
            raise PermanentDownloadError("URL has no host")
        netloc = parts.netloc.rpartition("@")[2]
        if not netloc.isascii():
            host = _idna(host)
            netloc = _idna(netloc)
        if not netloc.isprintable() or " " in netloc:
            raise PermanentDownloadError("URL has an invalid host")
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if not (target.isascii() and target.isprintable()) or " " in target:
            # Spaces, control and non-ASCII characters: escaped as requests does,
            # which also keeps a CR or LF from splitting the request.
            target = quote(target, safe=_SAFE_URL_CHARACTERS)
        tls = scheme == "https"
        self.host = host
        self.origin: _Origin = (tls, host, port or (443 if tls else 80))
        self.start = f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\n".encode("ascii")


def _idna(text: str) -> str:
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise PermanentDownloadError(f"URL has an invalid host name: {exc}") from exc


class _Response:
    """One response read from a socket through the thread's buffer."""

    __slots__ = ("buffer", "closes", "end", "headers", "reason", "sock", "start", "status", "view")

    def __init__(self, sock: socket.socket, buffer: mmap.mmap, view: memoryview) -> None:
        self.sock = sock
        self.buffer = buffer
        self.view = view
        self.start = 0  # unread bytes are buffer[start:end]
        self.end = 0
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.closes = False

    # -- reading ------------------------------------------------------------------

    def _fill(self) -> None:
        """Read more bytes after the unread ones; raise _Closed at the end of the stream."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buffer):
            kept = self.end - self.start
            self.buffer[:kept] = self.buffer[self.start : self.end]
            self.start, self.end = 0, kept
        received = self.sock.recv_into(self.view[self.end :])
        if not received:
            raise _Closed
        self.end += received

    def read_head(self) -> None:
        """Read the status line and headers, skipping interim (1xx) answers."""
        while True:
            scanned = 0
            while (at := self.buffer.find(b"\r\n\r\n", self.start + scanned, self.end)) < 0:
                if self.end - self.start > MAX_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                scanned = max(self.end - self.start - 3, 0)
                self._fill()
            if at - self.start > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
            lines = self.buffer[self.start : at].decode("latin-1").split("\r\n")
            self.start = at + 4
            self._parse_head(lines)
            if not 100 <= self.status < 200:
                return
            if self.status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols")

    def _parse_head(self, lines: list[str]) -> None:
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"malformed status line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.status = int(code)
        self.reason = reason.strip()
        self.headers = headers
        tokens = headers.get("connection", "").lower()
        self.closes = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)

    def framing(self) -> int:
        """The body's length, or how it ends: CHUNKED or UNTIL_CLOSE."""
        if self.status in (204, 304):
            return 0
        coding = self.headers.get("transfer-encoding")
        if coding is not None:
            if coding.lower().rpartition(",")[2].strip() == "chunked":
                return CHUNKED
            self.closes = True  # another coding: the body ends with the connection
            return UNTIL_CLOSE
        text = self.headers.get("content-length")
        if text is None:
            self.closes = True
            return UNTIL_CLOSE
        values = {value.strip() for value in text.split(",")}
        if len(values) != 1 or not (value := values.pop()).isdigit():
            raise ProtocolError(f"invalid Content-Length {text[:40]!r}")
        return int(value)

    def copy(self, descriptor: int, length: int | None, should_stop: threading.Event) -> int:
        """Move up to ``length`` body bytes (None: to the end) into ``descriptor`` (-1: drop)."""
        copied = 0
        view = self.view
        while length is None or copied < length:
            if self.start == self.end:
                if should_stop.is_set():
                    raise PipelineInterrupted("run stopped during the download")
                try:
                    self._fill()
                except _Closed:
                    if length is None:
                        break
                    raise TransientDownloadError(
                        f"truncated body: got {copied} of {length} bytes"
                    ) from None
            taken = self.end - self.start
            if length is not None:
                taken = min(taken, length - copied)
            if descriptor >= 0:
                write_all(descriptor, view[self.start : self.start + taken])
            self.start += taken
            copied += taken
        return copied

    def _line(self) -> bytes:
        while (at := self.buffer.find(b"\n", self.start, self.end)) < 0:
            if self.end - self.start > MAX_LINE:
                raise ProtocolError("chunk size line too long")
            self._fill()
        line = self.buffer[self.start : at]
        self.start = at + 1
        return line.rstrip(b"\r")

    def copy_chunked(self, descriptor: int, should_stop: threading.Event) -> int:
        """Decode a chunked body into ``descriptor`` (-1: drop); return its size."""
        total = 0
        while True:
            size_text = self._line().partition(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"invalid chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise ProtocolError(f"invalid chunk size {size_text[:20]!r}")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return total
            total += self.copy(descriptor, size, should_stop)
            if self._line():
                raise ProtocolError("chunk not followed by CRLF")

    def body(self, descriptor: int, should_stop: threading.Event) -> int:
        """Read the whole body into ``descriptor`` (-1: drop); return its size."""
        length = self.framing()
        if length == CHUNKED:
            return self.copy_chunked(descriptor, should_stop)
        return self.copy(descriptor, None if length == UNTIL_CLOSE else length, should_stop)

    @property
    def reusable(self) -> bool:
        """True when the connection can carry the next request after this answer."""
        return not self.closes and self.start == self.end


class _ThreadState(threading.local):
    """A worker thread's buffer and its idle connections, oldest first."""

    def __init__(self, buffer_size: int) -> None:
        # Anonymous memory: pages are only committed once a body reaches them,
        # so small files cost a few KiB of the buffer, not all of it.
        self.buffer = mmap.mmap(-1, buffer_size)
        self.view = memoryview(self.buffer)
        self.idle: dict[_Origin, socket.socket] = {}


class SocketTransport:
    """GETs over the calling thread's own keep-alive connections."""

    def __init__(
        self,
        *,
        timeout: float,
        chunk_size: int,
        max_redirects: int,
        headers: dict[str, str],
        ca_bundle: str | None,
    ) -> None:
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.ca_bundle = ca_bundle
        for name, value in headers.items():
            if not (f"{name}{value}".isprintable() and name.strip() == name and ":" not in name):
                raise ValueError(f"invalid request header {name!r}")
        self._headers = self._header_block(headers)
        self._safe_headers = self._header_block(without_credentials(headers))
        self._state = _ThreadState(max(chunk_size, MIN_BUFFER))
        self._tls: ssl.SSLContext | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _header_block(headers: dict[str, str]) -> bytes:
        lines = [
            f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() != "host"
        ]
        return "".join([*lines, "\r\n"]).encode("latin-1")

    # -- connections ------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                import ssl  # only for https: the import costs start-up time

                self._tls = ssl.create_default_context(cafile=self.ca_bundle)
            return self._tls

    def _connect(self, request: _Request) -> socket.socket:
        tls, host, port = request.origin
        sock = socket.create_connection((host, port), timeout=self.timeout)
        with self._lock:
            self._sockets.add(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                import ssl

                try:
                    wrapped = self._tls_context().wrap_socket(sock, server_hostname=host)
                except ssl.SSLError as exc:
                    raise _HandshakeFailed(exc) from exc
                with self._lock:
                    self._sockets.discard(sock)
                    self._sockets.add(wrapped)
                sock = wrapped
        except BaseException:
            self._discard(sock)
            raise
        return sock

    def _discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _keep(self, origin: _Origin, sock: socket.socket) -> None:
        idle = self._state.idle
        idle[origin] = sock
        if len(idle) > MAX_IDLE_PER_THREAD:
            self._discard(idle.pop(next(iter(idle))))

    def _exchange(self, request: _Request, headers: bytes) -> tuple[socket.socket, _Response]:
        """Send the request and read the response head, on a kept connection if any.

        A kept connection the server has meanwhile closed fails before any byte
        of an answer: that one is replaced by a new connection once.
        """
        state = self._state
        sock = state.idle.pop(request.origin, None)
        while True:
            reused = sock is not None
            if sock is None:
                sock = self._connect(request)
            response = _Response(sock, state.buffer, state.view)
            try:
                sock.sendall(request.start + headers)
                response.read_head()
            except (_Closed, ConnectionError) as exc:
                self._discard(sock)
                if reused and response.end == 0:
                    sock = None
                    continue
                if isinstance(exc, _Closed):
                    raise ConnectionResetError(
                        "server closed the connection without a response"
                    ) from None
                raise
            except BaseException:
                self._discard(sock)
                raise
            return sock, response

    # -- one attempt ------------------------------------------------------------------

    def fetch(self, url: str, destination: Path, should_stop: threading.Event) -> int:
        """One attempt: follow redirects, check the status, stream the body to ``destination``."""
        try:
            return self._fetch(url, destination, should_stop)
        except _HandshakeFailed as exc:
            raise PermanentDownloadError(describe(exc.args[0], url)) from exc
        except (OSError, ProtocolError) as exc:
            raise TransientDownloadError(describe(exc, url)) from exc

    def _fetch(self, url: str, destination: Path, should_stop: threading.Event) -> int:
        current = url
        headers = self._headers
        for _ in range(self.max_redirects + 1):
            request = _Request(current)
            sock, response = self._exchange(request, headers)
            status = response.status
            location = response.headers.get("location")
            redirect = status in REDIRECT_STATUSES and bool(location)
            size = 0
            try:
                if redirect or status >= 400:
                    self._drain(response, should_stop)
                else:
                    size = self._save(response, destination, should_stop)
            except BaseException:
                self._discard(sock)
                raise
            if response.reusable:
                self._keep(request.origin, sock)
            else:
                self._discard(sock)
            if not redirect:
                check_status(status, response.reason, response.headers.get("retry-after"))
                return size
            target = urljoin(current, location or "")
            if not target.lower().startswith(("http://", "https://")):
                raise PermanentDownloadError("redirected to a URL that is not http or https")
            if not same_host(current, target):
                headers = self._safe_headers
            current = target
        raise PermanentDownloadError(f"redirect loop or more than {self.max_redirects} redirects")

    @staticmethod
    def _save(response: _Response, destination: Path, should_stop: threading.Event) -> int:
        descriptor = open_destination(destination)
        try:
            return response.body(descriptor, should_stop)
        finally:
            os.close(descriptor)

    @staticmethod
    def _drain(response: _Response, should_stop: threading.Event) -> None:
        """Read off a small redirect or error body so the connection can be kept."""
        length = response.framing()
        if length < 0 or length > MAX_DRAIN:
            response.closes = True  # closing costs less than reading it off
            return
        response.copy(-1, length, should_stop)

    def close(self) -> None:
        """Close every connection of every thread."""
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            sock.close()


class FastDownloader(RequestsDownloader):
    """The requests downloader with :class:`SocketTransport` for plain URLs."""

    def _plain_transport(self) -> Transport:
        settings = self.settings
        return SocketTransport(
            timeout=settings.timeout,
            chunk_size=settings.chunk_size,
            max_redirects=settings.max_redirects,
            headers=self._headers,
            ca_bundle=ca_bundle(),
        )


__all__ = ["FastDownloader", "ProtocolError", "SocketTransport"]
