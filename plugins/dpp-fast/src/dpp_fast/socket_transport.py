"""The ``fast`` downloader's blocking transport: HTTP/1.1 on plain sockets, one per worker.

http.client (under urllib3 and requests) parses every response head with the
email package and wraps each answer in several objects: for a 16 KiB file
that is most of the CPU a download costs, and on two cores the workers then
queue for the GIL.  This transport sends one prepared request, parses the head
itself and moves the body from a per-thread buffer straight into the file.

It keeps the rules of the ``requests`` downloader: identity encoding, at most
``max_redirects`` hops to http or https only (credentials headers dropped when
the host, scheme or port changes), 5xx/408/429 retried, exact lengths,
``timeout`` per connect and per read.  What it leaves out, it hands on: URLs that need a
``requests.Session`` (an environment proxy, credentials in the URL, a
``.netrc``) still go through one.  No HTTP/2, no pipelining, no compression.

The downloader (:mod:`.fast`) and its event loop (:mod:`.fast_loop`) both
build on this module; it imports neither of them.
"""

from __future__ import annotations

import contextlib
import mmap
import select
import socket
import struct
import sys
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from download_pipeline_processor.affinity import Widening, widened_for
from download_pipeline_processor.builtins import watch_socket
from download_pipeline_processor.errors import (
    DownloadError,
    PipelineInterrupted,
    TransientDownloadError,
)
from download_pipeline_processor.http_rules import (
    REDIRECT_STATUSES,
    certificate_error,
    check_headers,
    check_status,
    describe,
    keeps_credentials,
    network_error,
    redirect_target,
    too_many_redirects,
    truncated,
    truncated_chunked,
    without_credentials,
)
from download_pipeline_processor.options import merge_headers
from download_pipeline_processor.sink import BodyWriter

from .http1 import (
    CHUNKED,
    MAX_HEAD,
    UNTIL_CLOSE,
    Origin,
    ProtocolError,
    Request,
    framing,
    head_end,
    interim,
    parse_head,
    split_head,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator

    from download_pipeline_processor.backend import DownloadRequest, StopFlag

#: The smallest per-thread buffer: a whole head must fit.
MIN_BUFFER = 2 * MAX_HEAD
#: Longest chunk-size or trailer line of a chunked body.
MAX_LINE = 8 * 1024
#: Error and redirect bodies up to this size are read off so the connection is kept.
MAX_DRAIN = 1024 * 1024
#: Idle connections kept by all worker threads together (file descriptors are finite).
MAX_IDLE_TOTAL = 256
#: ... and by one thread, one per origin, oldest closed first.
MAX_IDLE_PER_THREAD = 16
#: Plain sockets get their timeouts from the kernel (SO_RCVTIMEO): Python's own
#: socket timeout polls before every send and receive, two more syscalls a file.
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(" ".join(("the server closed the connection", detail)).strip())


class _Truncated(Exception):
    """The connection closed before ``length`` bytes of a body arrived.

    Internal: the caller reports it as :func:`.http_rules.truncated` (or, in a
    chunked body, :func:`.http_rules.truncated_chunked`), never by this name.
    """

    def __init__(self, copied: int, length: int) -> None:
        super().__init__(copied, length)
        self.copied = copied
        self.length = length

    def reported(self) -> TransientDownloadError:
        """The download error every downloader gives for this short body."""
        return truncated(self.copied, self.length)


class _HandshakeFailed(Exception):
    """TLS verification failed: another attempt will not fix it."""


class _LocalFileError(Exception):
    """Writing the destination failed: the caller sees the OSError itself, not a network error."""


class _Response:
    """One response read from a socket through the thread's buffer."""

    __slots__ = (
        "buffer",
        "closes",
        "end",
        "headers",
        "reason",
        "received",
        "sock",
        "start",
        "status",
        "view",
    )

    def __init__(self, sock: socket.socket, buffer: mmap.mmap, view: memoryview) -> None:
        self.sock = sock
        self.buffer = buffer
        self.view = view
        self.start = 0  # unread bytes are buffer[start:end]
        self.end = 0
        self.received = False  # any byte of an answer yet
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.closes = False

    # -- reading ------------------------------------------------------------------

    def _fill(self) -> None:
        """Read more bytes after the unread ones; ConnectionClosed at the end of the stream."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buffer):
            kept = self.end - self.start
            self.buffer[:kept] = self.buffer[self.start : self.end]
            self.start, self.end = 0, kept
        received = self.sock.recv_into(self.view[self.end :])
        if not received:
            raise ConnectionClosed
        self.end += received
        self.received = True

    def _head_end(self, scanned: int) -> tuple[int, int]:
        """(where the head ends, where the body starts), or (-1, -1) when not yet read."""
        return head_end(self.buffer, self.start + scanned, self.end)

    def read_head(self) -> None:
        """Read the status line and headers, skipping interim (1xx) answers."""
        while True:
            scanned = 0
            while (ends := self._head_end(scanned))[0] < 0:
                if self.end - self.start > MAX_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                scanned = max(self.end - self.start - 3, 0)
                self._fill()
            head_end, body_start = ends
            if head_end - self.start > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
            head = self.buffer[self.start : head_end].decode("latin-1")
            self.start = body_start
            self._parse_head(split_head(head))
            if not interim(self.status):
                return

    def _parse_head(self, lines: list[str]) -> None:
        self.status, self.reason, self.headers, self.closes = parse_head(lines)

    def framing(self) -> int:
        """The body's length, or how it ends: CHUNKED or UNTIL_CLOSE."""
        length, closes = framing(self.status, self.headers)
        self.closes = self.closes or closes
        return length

    def copy(
        self,
        writer: BodyWriter | None,
        length: int | None,
        should_stop: StopFlag,
        widening: Widening | None = None,
    ) -> int:
        """Move up to ``length`` body bytes (None: to the end) into ``writer`` (None: drop)."""
        copied = 0
        view = self.view
        while length is None or copied < length:
            if self.start == self.end:
                if should_stop.is_set():
                    raise PipelineInterrupted("run stopped during the download")
                try:
                    self._fill()
                except ConnectionClosed:
                    if length is None:
                        break
                    raise _Truncated(copied, length) from None
            taken = self.end - self.start
            if length is not None:
                taken = min(taken, length - copied)
            if writer is not None:
                try:
                    writer.write(view[self.start : self.start + taken])
                except OSError as exc:
                    raise _LocalFileError(exc) from exc
            self.start += taken
            copied += taken
            if widening is not None:
                widening.copied(taken)
        return copied

    def _line(self) -> bytes:
        while (at := self.buffer.find(b"\n", self.start, self.end)) < 0:
            if self.end - self.start > MAX_LINE:
                raise ProtocolError("chunk size line too long")
            self._fill()
        line = self.buffer[self.start : at]
        self.start = at + 1
        return line.rstrip(b"\r")

    def copy_chunked(
        self,
        writer: BodyWriter | None,
        should_stop: StopFlag,
        widening: Widening | None = None,
    ) -> int:
        """Decode a chunked body into ``writer`` (None: drop); return its size."""
        total = 0
        try:
            while True:
                size_text = self._line().partition(b";")[0].strip()
                if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise ProtocolError(f"invalid chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                if size == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    return total
                total += self.copy(writer, size, should_stop, widening)
                if self._line():
                    raise ProtocolError("chunk not followed by CRLF")
        except (ConnectionClosed, _Truncated) as exc:
            if isinstance(exc, _Truncated):
                total += exc.copied
            raise truncated_chunked(total) from None

    def body(self, writer: BodyWriter, should_stop: StopFlag) -> int:
        """Read the whole body through ``writer``; return this answer's body size."""
        length = self.framing()
        try:
            writer.begin(self.status, self.headers.get, length if length >= 0 else None)
        except OSError as exc:
            raise _LocalFileError(exc) from exc
        with widened_for(None if length < 0 else length) as widening:
            if length == CHUNKED:
                return self.copy_chunked(writer, should_stop, widening)
            size = None if length == UNTIL_CLOSE else length
            try:
                return self.copy(writer, size, should_stop, widening)
            except _Truncated as exc:
                raise exc.reported() from None

    @property
    def reusable(self) -> bool:
        """True when the connection can carry the next request after this answer."""
        return not self.closes and self.start == self.end


class _IdleConnections(dict[Origin, socket.socket]):
    """A thread's idle connections, oldest first; closed when the thread is gone."""

    def close_all(self) -> None:
        for sock in self.values():
            sock.close()
        self.clear()

    def __del__(self) -> None:
        self.close_all()


class _ThreadState(threading.local):
    """A worker thread's buffer and its idle connections."""

    def __init__(self, buffer_size: int) -> None:
        # Anonymous memory: pages are only committed once a body reaches them,
        # so small files cost a few KiB of the buffer, not all of it.
        self.buffer = mmap.mmap(-1, buffer_size)
        self.view = memoryview(self.buffer)
        self.idle = _IdleConnections()


def _header_block(headers: dict[str, str]) -> bytes:
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    return "".join([*lines, "\r\n"]).encode("latin-1")


def _is_dead(sock: socket.socket) -> bool:
    """True when a kept connection has closed, or holds bytes no request asked for."""
    if _KERNEL_TIMEOUTS and sock.gettimeout() is None:
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # stray bytes, or b"" at EOF
        except BlockingIOError:
            return False  # nothing to read: alive and clean
        except (OSError, ValueError):
            return True
        return True
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
    if pending is not None and pending():
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Blocking mode with SO_RCVTIMEO/SO_SNDTIMEO instead of Python's per-call poll."""
    seconds = int(timeout)
    interval = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
    sock.settimeout(None)


def translate(error: BaseException, *urls: str) -> BaseException:
    """The download error an attempt's ``error`` is reported as.

    ``urls``: every URL the attempt visited, whose secrets the text must not show.
    """
    if isinstance(error, _LocalFileError):
        local: OSError = error.args[0]
        return local  # the file's problem, as the other transports say it
    if isinstance(error, _Truncated):
        return error.reported()
    if isinstance(error, _HandshakeFailed):
        return certificate_error(error.args[0])
    if isinstance(error, OSError):
        # A BlockingIOError is a kernel timeout (SO_RCVTIMEO) that ran out.
        timed_out = isinstance(error, BlockingIOError)
        return network_error(TimeoutError("timed out") if timed_out else error, *urls)
    if isinstance(error, ProtocolError):
        return TransientDownloadError(describe(error, *urls))
    return error


@contextlib.contextmanager
def _reported_as_download_errors(hops: list[str]) -> Iterator[None]:
    """Raise what an attempt's errors are reported as (:func:`translate`).

    ``hops``: the URLs visited so far, which the attempt appends to.
    """
    try:
        yield
    except BaseException as exc:
        translated = translate(exc, *hops)
        if translated is exc:
            raise
        raise translated from (None if isinstance(exc, (_LocalFileError, _Truncated)) else exc)


class SocketTransport:
    """GETs over the calling thread's own keep-alive connections."""

    def __init__(
        self,
        *,
        workers: int = 1,
        timeout: float,
        chunk_size: int,
        max_redirects: int,
        headers: dict[str, str],
        ca_bundle: str | None,
    ) -> None:
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.ca_bundle = ca_bundle
        check_headers(headers)
        # Later spellings win, whatever their case, as in requests' header dict.
        merged = {name.lower(): (name, value) for name, value in headers.items()}
        host = merged.pop("host", None)
        #: The run's Host header, if it names one (sent in place of the URL's host).
        self.host_header: str | None = host[1] if host else None
        plain = self._plain = dict(merged.values())
        #: The header lines of a request with the run's headers only.
        self.header_block = _header_block(plain)
        self._safe_headers = _header_block(without_credentials(plain))
        self._idle_limit = max(1, min(MAX_IDLE_PER_THREAD, MAX_IDLE_TOTAL // max(workers, 1)))
        self._state = _ThreadState(max(chunk_size, MIN_BUFFER))
        self._tls: ssl.SSLContext | None = None
        # Weak: a finished thread's idle connections close with its state.
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                import ssl  # only for https: the import costs start-up time

                bundle = self.ca_bundle
                if bundle and Path(bundle).is_dir():  # requests takes a folder too
                    self._tls = ssl.create_default_context(capath=bundle)
                else:
                    self._tls = ssl.create_default_context(cafile=bundle)
            return self._tls

    def _connect(self, request: Request) -> socket.socket:
        tls, host, port = request.origin
        sock = socket.create_connection((host, port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not tls:
                if _KERNEL_TIMEOUTS:
                    _kernel_timeouts(sock, self.timeout)
            else:
                import ssl

                try:
                    sock = self._tls_context().wrap_socket(sock, server_hostname=host)
                except ssl.SSLCertVerificationError as exc:
                    raise _HandshakeFailed(exc) from exc
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _keep(self, origin: Origin, sock: socket.socket) -> None:
        idle = self._state.idle
        previous = idle.pop(origin, None)  # one after a hand-over (resume) took no idle one
        if previous is not None and previous is not sock:
            self._discard(previous)
        idle[origin] = sock
        if len(idle) > self._idle_limit:
            self._discard(idle.pop(next(iter(idle))))

    def _exchange(self, request: Request, headers: bytes) -> tuple[socket.socket, _Response]:
        """Send the request and read the response head, on a kept connection if any.

        A kept connection is checked first: one the server closed, or one with
        stray bytes on it, is replaced.  One that fails before any byte of an
        answer arrives (the server closed it in the meantime) is replaced once.
        """
        state = self._state
        sock = state.idle.pop(request.origin, None)
        if sock is not None and _is_dead(sock):
            self._discard(sock)
            sock = None
        while True:
            reused = sock is not None
            if sock is None:
                sock = self._connect(request)
            watch_socket(sock)  # --file-timeout hangs it up (when the attempt is watched)
            response = _Response(sock, state.buffer, state.view)
            try:
                sock.sendall(request.start + headers)
                response.read_head()
            except ConnectionError as exc:
                self._discard(sock)
                if reused and not response.received:
                    sock = None
                    continue
                if isinstance(exc, ConnectionClosed) and not response.received:
                    raise ConnectionClosed("without a response") from None
                raise
            except BaseException:
                self._discard(sock)
                raise
            return sock, response

    # -- one attempt ------------------------------------------------------------------

    def fetch(self, request: DownloadRequest) -> int:
        """One attempt: follow redirects, check the status, stream the body through its writer."""
        url = request.url
        hops = [url] if url == request.file_data.url else [url, request.file_data.url]
        extra = request.headers if request.own_headers else None
        with _reported_as_download_errors(hops):
            return self._fetch(url, request.writer, request.stop, hops, extra=extra)

    def entry_block(self, headers: Mapping[str, str]) -> bytes | None:
        """The header lines of a request with an entry's ``headers`` over the run's.

        None when the entry names its own Host: only :meth:`fetch` sends that.
        """
        if any(name.lower() == "host" for name in headers):
            return None
        return _header_block(merge_headers(self._plain, headers))

    def resume(self, download: DownloadRequest, sock: socket.socket, received: bytes) -> int:
        """Finish an attempt another thread began: ``download.url`` was requested on ``sock``.

        ``received`` is what has come back so far, the whole response head at
        least.  The connection becomes the calling thread's, blocking, with
        this transport's timeouts.
        """
        url = download.url
        should_stop = download.stop
        hops = [url] if url == download.file_data.url else [url, download.file_data.url]
        with _reported_as_download_errors(hops):
            with self._lock:
                self._sockets.add(sock)
            watch_socket(sock)
            state = self._state
            try:
                if should_stop.is_set():
                    raise PipelineInterrupted("run stopped before the download finished")
                request = Request(url, self.host_header, wire=True)
                if _KERNEL_TIMEOUTS and not request.origin[0]:
                    _kernel_timeouts(sock, self.timeout)
                else:
                    sock.settimeout(self.timeout)
                if len(received) > len(state.buffer):
                    raise ProtocolError("response head too long to hand over")
                state.buffer[: len(received)] = received
                response = _Response(sock, state.buffer, state.view)
                response.end = len(received)
                response.received = bool(received)
                response.read_head()
            except BaseException:
                self._discard(sock)
                raise
            extra = download.headers if download.own_headers else None
            return self._fetch(
                url, download.writer, should_stop, hops, (request, sock, response), extra=extra
            )

    def _fetch(
        self,
        url: str,
        writer: BodyWriter,
        should_stop: StopFlag,
        hops: list[str],
        answer: tuple[Request, socket.socket, _Response] | None = None,
        *,
        extra: Mapping[str, str] | None = None,
    ) -> int:
        """Follow redirects from ``url`` (checked and quoted), adding each to ``hops``;
        ``answer``: the first request's, already read; ``extra``: the entry's headers."""
        current = url
        ranged = writer.range_headers() if answer is None else {}
        headers, safe_headers, host_header = self._request_headers(extra, ranged)
        for _ in range(self.max_redirects + 1):
            if answer is None:
                request = Request(current, host_header, wire=current is url)
                sock, response = self._exchange(request, headers)
            else:
                (request, sock, response), answer = answer, None
            status = response.status
            location = response.headers.get("location")
            redirect = status in REDIRECT_STATUSES and bool(location)
            size = 0
            try:
                if redirect or status >= 400:
                    self._drain(response, should_stop)
                else:
                    size = self._save(response, writer, should_stop)
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
            target = redirect_target(current, location or "")
            if not keeps_credentials(current, target):
                headers = safe_headers
            current = target
            hops.append(target)
        raise too_many_redirects(self.max_redirects)

    def _request_headers(
        self, extra: Mapping[str, str] | None, ranged: dict[str, str]
    ) -> tuple[bytes, bytes, str | None]:
        """(the header lines, those after a redirect to another host, the Host header) of an
        attempt with the entry's ``extra`` headers and a resumed file's ``ranged`` ones."""
        if not extra and not ranged:
            return self.header_block, self._safe_headers, self.host_header
        plain, host_header = self._plain, self.host_header
        if extra:
            plain = merge_headers(plain, extra)
            for name in [name for name in plain if name.lower() == "host"]:
                host_header = plain.pop(name)
        # The entry's own headers, or a retry that continues the file (the rest only).
        return (
            _header_block({**plain, **ranged}),
            _header_block({**without_credentials(plain), **ranged}),
            host_header,
        )

    @staticmethod
    def _save(response: _Response, writer: BodyWriter, should_stop: StopFlag) -> int:
        """The body through ``writer``; the whole file's size (a resume included)."""
        try:
            response.body(writer, should_stop)
        finally:
            try:
                writer.close()
            except OSError as exc:
                raise _LocalFileError(exc) from exc
        return writer.size

    @staticmethod
    def _drain(response: _Response, should_stop: StopFlag) -> None:
        """Read off a small redirect or error body so the connection can be kept.

        The status is what matters: a body that breaks off or stalls only
        costs the connection.
        """
        try:
            length = response.framing()
            if length < 0 or length > MAX_DRAIN:
                response.closes = True  # closing costs less than reading it off
                return
            response.copy(None, length, should_stop)
        except (OSError, ProtocolError, DownloadError, _Truncated):
            response.closes = True

    def close(self) -> None:
        """Close every connection of every thread."""
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            sock.close()


__all__ = [
    "MIN_BUFFER",
    "ConnectionClosed",
    "ProtocolError",
    "SocketTransport",
    "translate",
]
