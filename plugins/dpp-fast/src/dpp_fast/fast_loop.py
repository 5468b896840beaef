"""The ``fast`` downloader's event loop: every connection on one thread.

With one thread per download, the workers hand the GIL to each other at every
receive and write, and on two cores those hand-offs cost a good share of the
run (benchmarks/RESULTS.md, "Why the code is as it is").  Here one thread keeps up to
``--download-workers`` non-blocking keep-alive connections in a selector
(epoll on Linux), as aria2c and curl do.

The loop does the common case only: a plain-http GET answered with a 2xx and
a Content-Length up to :data:`HAND_OFF_ABOVE`.  Everything else goes to a
worker thread through :meth:`DownloadFeed.hand_off`, where the blocking
:class:`~.socket_transport.SocketTransport` carries on with the rules it always had:

- before the request: https, URLs that need a ``requests.Session`` (a proxy,
  credentials, a ``.netrc``), host names not resolved yet;
- after the response head: redirects, errors, interim answers the loop does
  not skip, chunked or close-delimited bodies, and big bodies, which then get
  a core of their own.  The connection and the bytes read so far move with
  the file, so nothing is requested twice.

Failures of the first attempt go back through :meth:`DownloadFeed.failed`,
and the framework retries them on worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import selectors
import socket
import time
from typing import TYPE_CHECKING, Callable, Protocol

from download_pipeline_processor.backend import DownloadFeed, DownloadJob, DownloadRequest
from download_pipeline_processor.errors import (
    DownloadError,
    PipelineInterrupted,
    TransientDownloadError,
)
from download_pipeline_processor.http_rules import truncated
from download_pipeline_processor.sink import BodyWriter
from download_pipeline_processor.write_behind import Lane, WriteBehind

from .host_names import Address, HostNames
from .http1 import (
    MAX_HEAD,
    ProtocolError,
    Request,
    framing,
    head_end,
    interim,
    parse_head,
    split_head,
)
from .socket_transport import MIN_BUFFER, ConnectionClosed, SocketTransport, translate

if TYPE_CHECKING:
    from download_pipeline_processor.settings import PipelineSettings

    from .http1 import Origin

__all__ = ["CLOSING_POLL", "HAND_OFF_ABOVE", "EventLoop", "LoopDownloader"]

#: Bodies longer than this are handed to a worker thread: another core copies them.
HAND_OFF_ABOVE = 8 * 1024 * 1024
#: Bytes read at once until the head is complete; a handed-over head plus
#: what came with it then fits a worker thread's buffer (MIN_BUFFER).
HEAD_READ = MIN_BUFFER - MAX_HEAD
#: How often timeouts are checked, in seconds.
SWEEP_INTERVAL = 0.1
#: How often, at most, bodies ending on the writing threads are looked at, in seconds.
CLOSING_POLL = 0.001

_CONNECTING, _SENDING, _HEAD, _BODY, _IDLE = range(5)


class LoopDownloader(Protocol):
    """What the loop needs of the downloader that runs it (a ``FastDownloader``).

    The loop takes the downloader as this, not by its class, so that the
    downloader's module imports the loop and never the other way round.
    """

    settings: PipelineSettings

    def needs_session(self, url: str) -> bool:
        """True when ``url`` must go through a requests.Session (a proxy, credentials)."""

    def within_deadline(self, request: DownloadRequest, attempt: Callable[[], int]) -> int:
        """Run ``attempt``, the current attempt at ``request``, under its --file-timeout."""


class _Connection:
    """One socket and the job it is serving, if any."""

    __slots__ = (
        "addresses",
        "events",
        "head",
        "job",
        "lane",
        "left",
        "origin",
        "outgoing",
        "received",
        "request",
        "reusable",
        "reused",
        "seen",
        "size",
        "sock",
        "state",
        "writer",
    )

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self.sock = sock
        self.origin = origin
        self.state = _CONNECTING
        self.events = 0  # what the selector watches for; 0: not registered
        self.job: DownloadJob | None = None
        self.request: Request | None = None
        self.addresses: list[Address] = []  # still to try if connecting fails
        self.outgoing = b""
        self.head = bytearray()  # an incomplete response head
        self.writer: BodyWriter | None = None
        self.lane: Lane | None = None  # the body's lane to a writing thread, if any
        self.left = 0
        self.size = 0
        self.received = False
        self.reused = False
        self.reusable = True
        self.seen = 0.0


class EventLoop:
    """Downloads the jobs of one :class:`DownloadFeed` on the calling thread."""

    def __init__(
        self, downloader: LoopDownloader, transport: SocketTransport, feed: DownloadFeed
    ) -> None:
        self.downloader = downloader
        self.transport = transport
        self.feed = feed
        self.timeout = transport.timeout
        self.selector = selectors.DefaultSelector()
        size = max(downloader.settings.read_size, MIN_BUFFER)
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.busy: set[_Connection] = set()
        self.idle: dict[Origin, list[_Connection]] = {}
        self.idle_count = 0
        self.idle_limit = max(downloader.settings.download_workers, 16)
        self.host_names = HostNames()
        self.now = time.monotonic()
        self.read_size = downloader.settings.read_size
        #: Writes and hashes the longer bodies beside this thread; at most two reads ahead.
        self.behind = WriteBehind(2 * size, name="fast-writes")
        #: Jobs whose bodies came whole and are still being written: (job, writer, lane).
        self.closing: list[tuple[DownloadJob, BodyWriter, Lane]] = []

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        feed = self.feed
        next_sweep = self.now + SWEEP_INTERVAL
        try:
            while True:
                if feed.should_stop.is_set():
                    self._abort_all(PipelineInterrupted("run stopped during the download"))
                    return
                while (job := feed.take(wait=not (self.busy or self.closing))) is not None:
                    self.now = time.monotonic()  # take() may have waited
                    self._start(job)
                if not (self.busy or self.closing):
                    return
                timeout = min(feed.poll_interval, max(next_sweep - self.now, 0.0))
                if self.closing:
                    timeout = min(timeout, CLOSING_POLL)
                events = self.selector.select(timeout)
                self.now = time.monotonic()
                for key, _ in events:
                    self._ready(key.data)
                if self.closing:
                    self._complete_written()
                if self.now >= next_sweep:
                    self._sweep()
                    next_sweep = self.now + SWEEP_INTERVAL
        except BaseException as exc:
            # The files in flight are retried through fetch(), on worker threads.
            self._abort_all(TransientDownloadError(f"the download loop failed: {exc!r}"))
            raise
        finally:
            for connections in self.idle.values():
                for connection in connections:
                    self._close(connection)
            self.idle.clear()
            self.selector.close()
            self.host_names.close()
            self.behind.close()

    def _ready(self, connection: _Connection) -> None:
        state = connection.state
        try:
            if state == _BODY:
                self._read_body(connection)
            elif state == _HEAD:
                self._read_head(connection)
            elif state == _IDLE:
                self._drop_idle(connection)  # closed by the server, or stray bytes
            elif state == _CONNECTING:
                self._connected(connection)
            else:
                self._send(connection)
        except _LocalError as exc:
            self._give_up(connection, exc.args[0])
        except DownloadError as exc:  # a body cut off, a bad Content-Length: this file's alone
            self._give_up(connection, exc)
        except BlockingIOError:
            pass  # woken for nothing (epoll may): wait for the next event
        except (OSError, ProtocolError) as exc:
            self._failed(connection, exc)

    # -- starting a job ---------------------------------------------------------------

    def _start(self, job: DownloadJob) -> None:
        feed = self.feed
        url = job.request.url
        try:
            request = Request(url, self.transport.host_header, wire=True)
        except BaseException as exc:  # noqa: BLE001 - the file's error
            feed.failed(job, exc)
            return
        if request.origin[0] or self.downloader.needs_session(url):  # https, a proxy...
            feed.hand_off(job)
            return
        if job.request.own_headers:
            try:
                block = self.transport.entry_block(job.request.headers)
            except BaseException as exc:  # noqa: BLE001 - the file's error
                feed.failed(job, exc)
                return
            if block is None:  # the entry names its own Host: the blocking path sends it
                feed.hand_off(job)
                return
        connection = self._kept(request.origin)
        if connection is not None:
            self._serve(connection, job, request)
        else:
            self._open(job, request)

    def _open(self, job: DownloadJob, request: Request) -> None:
        """Connect anew for ``job``, or hand it over while its host name is looked up."""
        _, host, port = request.origin
        addresses = self.host_names.addresses(host, port, self.now)
        if addresses is None:
            self.feed.hand_off(job)  # the worker thread resolves it; later files use the lookup
            return
        self._connect(job, request, list(addresses))

    def _serve(self, connection: _Connection, job: DownloadJob, request: Request) -> None:
        """Send ``job``'s request on a connection that is open (or being opened)."""
        connection.job = job
        connection.request = request
        connection.outgoing = request.start + self._header_block(job)
        connection.head.clear()
        connection.received = False
        connection.reusable = True
        connection.seen = self.now
        self.busy.add(connection)
        if connection.state != _CONNECTING:
            connection.state = _SENDING
            self._ready(connection)

    def _header_block(self, job: DownloadJob) -> bytes:
        """The header lines of ``job``'s request: the run's, or its entry's over them."""
        if not job.request.own_headers:
            return self.transport.header_block
        block = self.transport.entry_block(job.request.headers)
        assert block is not None, "an entry naming its Host is handed off at the start"
        return block

    def _connect(self, job: DownloadJob, request: Request, addresses: list[Address]) -> None:
        family, address = addresses.pop(0)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self.feed.failed(job, translate(exc, job.file_data.url))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock, request.origin)
        connection.addresses = addresses
        self._serve(connection, job, request)
        code = sock.connect_ex(address)
        if code in (0, errno.EISCONN):
            connection.state = _SENDING
            self._ready(connection)
        elif code == errno.EINPROGRESS:
            self._watch(connection, selectors.EVENT_WRITE)
        else:
            self.busy.discard(connection)
            sock.close()
            self._connect_failed(job, request, addresses, OSError(code, os.strerror(code)))

    def _connect_failed(
        self, job: DownloadJob, request: Request, addresses: list[Address], error: OSError
    ) -> None:
        if addresses:  # the next address of the name, as socket.create_connection does
            self._connect(job, request, addresses)
        else:
            self.feed.failed(job, translate(error, job.file_data.url))

    def _connected(self, connection: _Connection) -> None:
        code = connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            job, request = self._job(connection), connection.request
            assert request is not None
            self._forget(connection)
            self._connect_failed(
                job, request, connection.addresses, OSError(code, os.strerror(code))
            )
            return
        connection.state = _SENDING
        self._send(connection)

    def _send(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.outgoing)
        except BlockingIOError:
            sent = 0  # the socket's buffer is full: wait until it is writable
        connection.outgoing = connection.outgoing[sent:]
        connection.seen = self.now
        if connection.outgoing:
            self._watch(connection, selectors.EVENT_WRITE)
            return
        connection.state = _HEAD
        self._watch(connection, selectors.EVENT_READ)

    def _watch(self, connection: _Connection, events: int) -> None:
        if connection.events == events:
            return  # a kept connection is watched for reading already: no syscall
        if connection.events:
            self.selector.modify(connection.sock, events, connection)
        else:
            self.selector.register(connection.sock, events, connection)
        connection.events = events

    # -- reading the answer -----------------------------------------------------------

    def _read_head(self, connection: _Connection) -> None:
        view = self.view
        count = connection.sock.recv_into(view[:HEAD_READ])
        if not count:
            raise ConnectionClosed("without a response" if not connection.received else "")
        connection.received = True
        connection.seen = self.now
        data: bytearray = connection.head
        if data:
            data += view[:count]
            end = len(data)
        else:
            data, end = self.buffer, count
        start = 0
        while True:
            head_stop, body_start = head_end(data, start, end)
            if head_stop < 0:
                if end - start > MAX_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                if data is self.buffer:
                    connection.head[:] = view[start:end]
                elif start:
                    del data[:start]
                return
            if head_stop - start > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
            head = parse_head(split_head(bytes(data[start:head_stop]).decode("latin-1")))
            if not interim(head[0]):
                break
            start = body_start  # the real answer follows
        self._answer(connection, head, data, (start, body_start, end))

    def _answer(
        self,
        connection: _Connection,
        head: tuple[int, str, dict[str, str], bool],
        data: bytearray,
        bounds: tuple[int, int, int],
    ) -> None:
        """Start the body of the answer in ``data[start:end]``, or hand the answer over."""
        status, _, headers, closes = head
        start, body_start, end = bounds
        length, framing_closes = framing(status, headers) if 200 <= status < 300 else (-1, True)
        if not 0 <= length <= HAND_OFF_ABOVE:
            self._hand_off(connection, bytes(data[start:end]))
            return
        connection.reusable = not (closes or framing_closes)
        if data is self.buffer:
            body = self.view[body_start:end]
        else:  # the head came in pieces: what follows it is copied before it is cleared
            body = memoryview(bytes(data[body_start:end]))
            data.clear()
        writer = connection.writer = self._job(connection).request.writer
        try:
            writer.begin(status, headers.get, length)
        except OSError as exc:
            raise _LocalError(exc) from exc
        # A body longer than a read is written and hashed on a writing thread
        # (``write_behind``), and ends there while the loop goes on; a shorter one
        # costs less written here than handed over.  Not under --limit-rate: the
        # writer's sleep then paces the reading, here.
        if writer.rate is None and length > self.read_size:
            connection.lane = self.behind.lane(writer)
        connection.size = length
        connection.left = length
        connection.state = _BODY
        self._write(connection, body)

    def _read_body(self, connection: _Connection) -> None:
        left = connection.left
        view = self.view
        count = connection.sock.recv_into(view[: min(left, len(view))])
        if not count:
            raise truncated(connection.size - left, connection.size)
        connection.seen = self.now
        self._write(connection, view[:count])

    def _write(self, connection: _Connection, body: memoryview) -> None:
        left = connection.left
        if len(body) > left:
            body = body[:left]
            connection.reusable = False  # bytes nobody asked for follow the body
        assert connection.writer is not None, "a body is written once begun"
        lane = connection.lane
        try:
            if lane is not None:
                # The loop reads into its buffer again: the lane keeps a copy.
                lane.write([bytes(body)])  # raises what an earlier block's write raised
            else:
                connection.writer.write(body)
        except OSError as exc:
            raise _LocalError(exc) from exc
        connection.left = left = left - len(body)
        if left == 0:
            self._done(connection)

    def _done(self, connection: _Connection) -> None:
        job = self._job(connection)
        writer, connection.writer = connection.writer, None
        lane, connection.lane = connection.lane, None
        assert writer is not None, "a body is written once begun"
        if lane is None:
            try:
                writer.close()  # may report a failed write-back (NFS, a full disk)
            except OSError as exc:
                raise _LocalError(exc) from exc
        connection.job = None
        connection.request = None
        self.busy.discard(connection)
        if connection.reusable:
            connection.state = _IDLE
            connection.reused = False
            self.idle.setdefault(connection.origin, []).append(connection)
            self.idle_count += 1
            self._make_room()
        else:
            self._forget(connection)
        if lane is None:
            self.feed.done(job, writer.size)
        else:
            self.closing.append((job, writer, lane))  # done once written (_complete_written)

    def _complete_written(self) -> None:
        """Report the jobs whose bodies the writing threads have finished."""
        still = []
        for entry in self.closing:
            job, writer, lane = entry
            if lane.queued:
                still.append(entry)
                continue
            try:
                lane.finish()  # raises what a write raised
                writer.close()  # may report a failed write-back (NFS, a full disk)
            except BaseException as exc:  # noqa: BLE001 - the file's error, given back as such
                self.feed.failed(job, exc)
                continue
            self.feed.done(job, writer.size)
        self.closing = still

    def _hand_off(self, connection: _Connection, received: bytes) -> None:
        """Let a worker thread finish this answer on this connection (no second request)."""
        job = self._job(connection)
        sock = connection.sock
        self._unwatch(connection)
        self.busy.discard(connection)
        connection.job = None
        sock.setblocking(True)
        attempt = functools.partial(self.transport.resume, job.request, sock, received)
        # The worker thread blocks on the socket: --file-timeout hangs it up there.
        attempt = functools.partial(self.downloader.within_deadline, job.request, attempt)
        self.feed.hand_off(job, attempt)

    # -- failures -------------------------------------------------------------------------

    def _failed(self, connection: _Connection, error: BaseException) -> None:
        """A network or protocol error on ``connection``."""
        job, request = connection.job, connection.request
        if job is None:  # an idle connection
            self._drop_idle(connection)
            return
        if (
            connection.reused
            and not connection.received
            and isinstance(error, ConnectionError)
            and request is not None
        ):
            # The server closed the kept connection meanwhile: once on a new one.
            self._forget(connection)
            self._open(job, request)
            return
        if isinstance(error, ConnectionClosed) and not connection.received:
            error = ConnectionClosed("without a response")
        self._give_up(connection, translate(error, job.file_data.url))

    def _give_up(self, connection: _Connection, error: BaseException) -> None:
        job = connection.job
        self._forget(connection)
        if job is not None:
            self.feed.failed(job, error)

    def _sweep(self) -> None:
        """Fail the connections that have waited longer than the timeout, or past --file-timeout."""
        for connection in list(self.busy):
            writer = self._job(connection).request.writer
            if writer.timed_out:
                self._give_up(connection, writer.timeout_error())
        limit = self.now - self.timeout
        for connection in [c for c in self.busy if c.seen < limit]:
            job = self._job(connection)
            timed_out = TimeoutError("timed out")
            if connection.state == _CONNECTING and connection.request is not None:
                # As socket.create_connection does: the name's next address, if any.
                self._forget(connection)
                self._connect_failed(job, connection.request, connection.addresses, timed_out)
                continue
            self._give_up(connection, translate(timed_out, job.file_data.url))

    def _abort_all(self, error: BaseException) -> None:
        for connection in list(self.busy):
            self._give_up(connection, error)
        closing, self.closing = self.closing, []
        for job, writer, lane in closing:
            with contextlib.suppress(Exception):  # the attempt fails with ``error`` anyway
                lane.finish()
            with contextlib.suppress(OSError):
                writer.close()
            self.feed.failed(job, error)

    # -- connections ----------------------------------------------------------------------

    @staticmethod
    def _job(connection: _Connection) -> DownloadJob:
        job = connection.job
        if job is None:
            raise RuntimeError("connection without a job")
        return job

    def _forget(self, connection: _Connection) -> None:
        """Close a connection that serves a job, or none."""
        self.busy.discard(connection)
        connection.job = None
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        writer, connection.writer = connection.writer, None
        lane, connection.lane = connection.lane, None
        if lane is not None:
            with contextlib.suppress(Exception):  # the body fails anyway: its blocks end first
                lane.finish()
        if writer is not None:
            with contextlib.suppress(OSError):  # the file is discarded anyway
                writer.close()
        self._unwatch(connection)
        connection.sock.close()

    def _unwatch(self, connection: _Connection) -> None:
        if connection.events:
            self.selector.unregister(connection.sock)
            connection.events = 0

    def _kept(self, origin: Origin) -> _Connection | None:
        """An idle connection to ``origin`` that is still open and clean, if any."""
        kept = self.idle.get(origin)
        while kept:
            connection = kept.pop()
            self.idle_count -= 1
            if not kept:
                del self.idle[origin]
            # As the blocking transport checks: bytes that came after the last
            # select (a 408 before a close, a stray CRLF) would be read as the
            # next answer.
            try:
                connection.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                connection.reused = True
                return connection  # nothing to read: alive and clean
            except OSError:
                pass
            self._close(connection)
            kept = self.idle.get(origin)
        return None

    def _drop_idle(self, connection: _Connection) -> None:
        kept = self.idle.get(connection.origin)
        if kept and connection in kept:
            kept.remove(connection)
            self.idle_count -= 1
            if not kept:
                del self.idle[connection.origin]
        self._close(connection)

    def _make_room(self) -> None:
        """Close the oldest idle connections beyond the limit (file descriptors are finite)."""
        while self.idle_count > self.idle_limit:
            # Empty lists are removed, so this looks at most idle_limit origins.
            oldest = min(self.idle.values(), key=lambda connections: connections[0].seen)
            self._drop_idle(oldest[0])


class _LocalError(Exception):
    """Opening or writing the cache file failed: the file's error, not the network's."""
