"""One attempt at one file: its redirect hops, each answer's head, and the body on its way to disk.

libcurl does the wire (connections, TLS, HTTP/1.1 and HTTP/2, proxies,
netrc); a :class:`Transfer` keeps the pipeline's rules on what comes back,
through the framework's shared ones (:mod:`~download_pipeline_processor.http_rules`):

- Redirects are followed here, not by libcurl, one hop at a time: each
  target is checked (http or https only, a bounded number of hops), and
  credentials headers are dropped on the way to another host, by the same
  rule and with the same texts as the other downloaders.
- A redirect or error answer's body is read off (up to :data:`MAX_DRAIN`, so
  the connection is kept) and never written; only a 2xx body reaches the file.
- The length rules: Transfer-Encoding wins over Content-Length, a garbage
  Content-Length fails the file, and a body must be as long as announced.
- Body bytes are gathered into blocks of ``block_size`` and written with one
  ``writev``: a small file is one write, a large one a write per block.  A
  body longer than a block is written on the engine's writing thread (a
  :class:`~download_pipeline_processor.write_behind.WriteBehind` lane), so
  that copying it to the file and hashing it leave this thread to the network.

The callbacks run inside libcurl: they never raise (pycurl would print the
traceback), they keep the error and tell libcurl to stop instead.
"""

from __future__ import annotations

import contextlib
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import pycurl

from download_pipeline_processor import affinity
from download_pipeline_processor.errors import TransientDownloadError
from download_pipeline_processor.http_rules import (
    CHUNKED,
    REDIRECT_STATUSES,
    UNTIL_CLOSE,
    body_framing,
    check_status,
    invalid_content_length,
    keeps_credentials,
    quoted_url,
    redirect_target,
    too_many_redirects,
    truncated,
    truncated_chunked,
)
from download_pipeline_processor.redact import scrub
from download_pipeline_processor.write_behind import Lane, WriteBehind

from .config import entry_header_lines
from .failures import curl_error

if TYPE_CHECKING:
    from download_pipeline_processor.affinity import Widening
    from download_pipeline_processor.backend import DownloadJob, DownloadRequest, StopFlag

    from .config import CurlConfig

__all__ = ["MAX_DRAIN", "MAX_PENDING_CHUNKS", "Transfer", "new_handle"]


#: Error and redirect bodies up to this size are read off so the connection is kept.
MAX_DRAIN = 1024 * 1024
#: Chunks gathered at most before a write (writev takes at most IOV_MAX of them).
MAX_PENDING_CHUNKS = 512

_HEAD, _BODY, _DRAIN = range(3)
_HTTP = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
#: libcurl's CURLOPT_SUPPRESS_CONNECT_HEADERS, which pycurl does not name: a
#: proxy's answer to CONNECT is then not passed to the header callback.
_SUPPRESS_CONNECT_HEADERS = 265
#: Errors after which a body shorter than announced is reported as truncated.
_BROKEN = frozenset(
    {pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR, pycurl.E_GOT_NOTHING}
)

#: CURLE_WEIRD_SERVER_REPLY (8), which pycurl names by its old FTP name.
_WEIRD_SERVER_REPLY = pycurl.E_FTP_WEIRD_SERVER_REPLY
#: libcurl's message when it refuses a Content-Length header.
_INVALID_LENGTH = "Invalid Content-Length"

_now = time.monotonic

#: The attribute of an easy handle that records what :meth:`Transfer.setup` last set on it.
_LAST_OPTIONS = "dpp_last_options"


def new_handle(config: CurlConfig) -> pycurl.Curl:
    """An easy handle with what every transfer of ``config`` shares."""
    handle = pycurl.Curl()
    setopt = handle.setopt
    setopt(pycurl.NOSIGNAL, 1)
    setopt(pycurl.NOPROGRESS, 1)
    setopt(pycurl.PROTOCOLS, _HTTP)
    setopt(pycurl.REDIR_PROTOCOLS, _HTTP)
    setopt(pycurl.FOLLOWLOCATION, 0)  # hop by hop, in Transfer.finish
    setopt(pycurl.CONNECTTIMEOUT_MS, max(1, round(config.timeout * 1000)))
    setopt(pycurl.BUFFERSIZE, config.buffer_size)
    # HTTP/2 when the server offers it over TLS (ALPN); HTTP/1.1 otherwise.
    setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
    setopt(pycurl.SSL_VERIFYPEER, 1)
    setopt(pycurl.SSL_VERIFYHOST, 2)
    # Exactly the bundle requests would use: no compiled-in default beside it.
    if config.ca_path is not None:
        setopt(pycurl.CAPATH, config.ca_path)
        handle.unsetopt(pycurl.CAINFO)
    else:
        if config.ca_file is not None:
            setopt(pycurl.CAINFO, config.ca_file)
        handle.unsetopt(pycurl.CAPATH)
    if config.netrc_file is not None:
        setopt(pycurl.NETRC, pycurl.NETRC_OPTIONAL)
        setopt(pycurl.NETRC_FILE, config.netrc_file)
    else:
        setopt(pycurl.NETRC, pycurl.NETRC_IGNORED)
    setopt(_SUPPRESS_CONNECT_HEADERS, 1)
    # ACCEPT_ENCODING stays unset: libcurl then neither asks for nor decodes
    # a compression; the Accept-Encoding: identity header says so to the server.
    return handle


class Transfer:
    """One attempt at a :class:`DownloadRequest`: a redirect hop at a time on an easy handle."""

    __slots__ = (
        "behind",
        "config",
        "destination",
        "drained",
        "error",
        "expected",
        "finished",
        "framing",
        "headers",
        "hops",
        "job",
        "lane",
        "mode",
        "pending",
        "pending_size",
        "reason",
        "request_headers",
        "safe_headers",
        "seen",
        "should_stop",
        "size",
        "status",
        "target",
        "visited",
        "widening",
        "writer",
        "writing",
    )

    def __init__(
        self, config: CurlConfig, request: DownloadRequest, job: DownloadJob | None = None
    ) -> None:
        self.config = config
        self.destination = request.destination
        self.should_stop: StopFlag = request.stop
        self.job = job
        # The URL was checked and quoted once, at input: sent as it is.
        self.target = target = request.url
        #: Every URL of this attempt, as given and as sent: none may show in a message.
        written = request.file_data.url
        self.visited = [target] if target == written else [target, written]
        #: The file's body writer: its digests, limits and resume state.
        self.writer = request.writer
        lines, self.safe_headers = config.headers, config.safe_headers
        if request.own_headers:
            # The entry's own headers as libcurl lines: made once per file, kept for its retries.
            prepared = request.prepared
            if not isinstance(prepared, tuple):
                prepared = request.prepared = entry_header_lines(config, request.headers)
            lines, self.safe_headers = prepared
        # A retry that continues the file asks for the rest only (on every hop).
        extra = [f"{name}: {value}" for name, value in self.writer.range_headers().items()]
        self.request_headers = [*lines, *extra] if extra else lines
        self.writing = False  # the writer has begun this answer's body
        self.hops = 0
        self.error: BaseException | None = None
        self.finished = False
        self.size = 0
        self.seen = 0.0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.widening: Widening | None = None
        #: The engine's writing thread (set by the engine), and this body's lane to it.
        self.behind: WriteBehind | None = None
        self.lane: Lane | None = None
        self.mode = _HEAD
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.framing = UNTIL_CLOSE
        self.expected: int | None = None
        self.drained = 0

    # -- one hop ----------------------------------------------------------------------

    def setup(self, handle: pycurl.Curl) -> None:
        """Point ``handle`` at this hop: URL, headers, proxy, callbacks.

        A reused handle keeps what its last hop set (libcurl keeps options
        until they change): the headers, proxy, multiplexing wait and time
        limit are set only when they differ from that hop's.
        """
        target = self.target
        setopt = handle.setopt
        last: tuple[object, ...] | None = getattr(handle, _LAST_OPTIONS, None)
        # Cleared first: a setopt that fails half-way leaves the record unknown.
        setattr(handle, _LAST_OPTIONS, None)
        setopt(pycurl.URL, target)
        headers = self.request_headers
        proxy = self.config.proxies.for_url(target)
        # Over TLS, wait for a connection being set up that may multiplex
        # (HTTP/2) rather than open another; plain http is HTTP/1.1 anyway.
        pipewait = 1 if target.startswith("https:") else 0
        # --file-timeout: what is left of the attempt's deadline, for this hop (0: none).
        deadline = self.should_stop.deadline
        left = 0 if deadline is None else max(1, round((deadline - _now()) * 1000))
        if last is None or last[0] is not headers:  # a list is never changed once made
            setopt(pycurl.HTTPHEADER, headers)
        if last is None or last[1] != proxy:
            setopt(pycurl.PROXY, proxy)
        if last is None or last[2] != pipewait:
            setopt(pycurl.PIPEWAIT, pipewait)
        if last is None or last[3] != left:
            setopt(pycurl.TIMEOUT_MS, left)
        setopt(pycurl.HEADERFUNCTION, self.on_header)
        setopt(pycurl.WRITEFUNCTION, self.on_body)
        setattr(handle, _LAST_OPTIONS, (headers, proxy, pipewait, left))
        self.seen = _now()

    def on_header(self, line: bytes) -> int | None:
        """libcurl's header callback: one line of a head (or of a chunked body's trailers)."""
        self.seen = _now()
        if line[:5] == b"HTTP/":
            self._status_line(line)
        elif self.mode != _HEAD:
            pass  # trailers after a chunked body: nothing to act on
        elif line in (b"\r\n", b"\n"):
            try:
                self._head_done()
            except BaseException as exc:  # noqa: BLE001 - kept for finish(); libcurl stops
                self.error = exc
                return 0
        else:
            name, colon, value = line.partition(b":")
            if colon:
                key = name.strip().lower().decode("latin-1")
                text = value.strip().decode("latin-1")
                headers = self.headers
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return None

    def _status_line(self, line: bytes) -> None:
        # A new answer: an interim one (1xx) was followed by the real one.
        self._close_file()
        version, _, rest = line.decode("latin-1").strip().partition(" ")
        code, _, reason = rest.partition(" ")
        self.status = int(code) if code.isascii() and code.isdigit() else 0
        if not reason and version.startswith(("HTTP/2", "HTTP/3")):
            # HTTP/2 and 3 carry no reason phrase: the standard one, as over HTTP/1.1.
            try:
                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""
        self.reason = reason.strip()
        self.headers = {}
        self.mode = _HEAD
        self.framing = UNTIL_CLOSE
        self.expected = None
        self.size = 0
        self.drained = 0

    def _head_done(self) -> None:
        status = self.status
        if 100 <= status < 200:
            return  # the real answer follows
        if (status in REDIRECT_STATUSES and "location" in self.headers) or status >= 400:
            self.mode = _DRAIN
            return
        headers = self.headers
        length, _ = body_framing(
            status, headers.get("transfer-encoding"), headers.get("content-length")
        )
        self.framing = length
        self.expected = length if length >= 0 else None
        self.writer.begin(status, headers.get, self.expected)
        self.writing = True
        self.mode = _BODY
        if affinity.is_pinned():
            # A large body is copied with every core allowed (see affinity).
            widening = affinity.widened_for(None if length == UNTIL_CLOSE else self.expected)
            self.widening = widening.__enter__()

    def on_body(self, chunk: bytes) -> int | None:
        """libcurl's write callback: body bytes, gathered into blocks for the file."""
        self.seen = _now()
        if self.mode == _BODY:
            if self.should_stop.is_set():
                self.error = self.should_stop.error()
                return 0
            size = len(chunk)
            self.size += size
            if self.widening is not None:
                self.widening.copied(size)
            pending = self.pending
            pending.append(chunk)
            self.pending_size += size
            if self.pending_size >= self.config.block_size or len(pending) >= MAX_PENDING_CHUNKS:
                try:
                    if self.lane is None:
                        self._open_lane()
                    self._flush()
                except BaseException as exc:  # noqa: BLE001 - a full disk, a limit: kept for finish()
                    self.error = exc
                    return 0
            return None
        if self.mode == _DRAIN:
            self.drained += len(chunk)
            # Past the limit, closing the connection costs less than reading on.
            return 0 if self.drained > MAX_DRAIN else None
        self.error = TransientDownloadError("ProtocolError: a body without a response head")
        return 0

    def _open_lane(self) -> None:
        """Write the rest of the body on the writing thread, when more than this block comes.

        Its last block and digests are then finished there while the engine
        goes on (see :meth:`complete`).  A body of one block costs less written
        here than handed over.  Not under ``--limit-rate``: the writer's sleep
        then paces the reading, on this thread.
        """
        expected = self.expected
        if (
            self.behind is not None
            and self.writer.rate is None
            and (expected is None or expected > self.size)
        ):
            self.lane = self.behind.lane(self.writer)

    @property
    def written(self) -> bool:
        """True once the writing thread has nothing of this body left (see :meth:`complete`)."""
        lane = self.lane
        return lane is None or not lane.queued

    def complete(self) -> None:
        """A body finishing on the writing thread is written: close its file; the attempt ends."""
        try:
            self._close_file()  # the lane is idle: no wait; raises what a write raised
        except BaseException as exc:  # noqa: BLE001 - the file's error, given back as such
            self.fail(exc)
            return
        self.finished = True

    def _flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        self.pending = []
        self.pending_size = 0
        if self.lane is not None:
            self.lane.write(pending)  # raises what an earlier block's write raised
        else:
            self.writer.write_many(pending)

    def _end_lane(self) -> None:
        """Wait for the body's blocks on the writing thread; raise what a write raised."""
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.finish()

    def _close_file(self) -> None:
        """Write what is gathered and close the file; raises OSError (a full disk, say)."""
        if not self.writing:
            return
        self.writing = False
        try:
            try:
                self._flush()
            finally:
                self._end_lane()
        finally:
            self.writer.close()  # may report a failed write-back
            self._end_widening()

    @property
    def file_size(self) -> int:
        """Bytes of the whole file, those kept from an earlier attempt included."""
        return self.writer.size

    def _end_widening(self) -> None:
        widening, self.widening = self.widening, None
        if widening is not None:
            widening.__exit__(None, None, None)

    # -- the end of a hop -----------------------------------------------------------------

    def finish(self, code: int, message: str, os_errno: int) -> bool:
        """The hop ended with libcurl's ``code``; True when another hop follows (call setup)."""
        try:
            if self._finish(code, message, os_errno):
                return True
        except BaseException as exc:  # noqa: BLE001 - the file's error, given back as such
            self.fail(exc)
            return False
        # With a lane, its last blocks are still being written: the engine
        # calls complete() once they are (``finished`` stays False until then).
        self.finished = self.lane is None
        return False

    def fail(self, error: BaseException) -> None:
        """End the attempt with ``error``; the file is closed, the caller removes it."""
        self.error = error
        self.finished = True
        if self.writing:
            self.writing = False
            # What came is kept for a resume; a writer that refuses it starts over itself.
            with contextlib.suppress(Exception):
                self._flush()
            with contextlib.suppress(Exception):
                self._end_lane()
            with contextlib.suppress(OSError):
                self.writer.close()
        self.pending = []
        self._end_widening()

    def redacted(self, text: str) -> str:
        """``text`` without the secrets of any URL this attempt visited."""
        return scrub(text, *self.visited)

    def _finish(self, code: int, message: str, os_errno: int) -> bool:
        if self.error is not None:
            raise self.error  # a callback's: it made libcurl stop
        if self.mode == _DRAIN:
            # The status decides; a body cut off or left unread costs the connection only.
            location = self.headers.get("location")
            if self.status >= 400 or location is None:
                check_status(self.status, self.reason, self.headers.get("retry-after"))
            else:
                self._follow(location)
                return True
        if code:
            if code == pycurl.E_OPERATION_TIMEDOUT and self.writer.timed_out:
                raise self.writer.timeout_error()
            if self.mode == _BODY and code in _BROKEN:
                # Cut off inside the body: what came, in the shared words.
                expected = self.expected
                if expected is not None and self.size < expected:
                    raise truncated(self.size, expected)
                if self.framing == CHUNKED:
                    raise truncated_chunked(self.size)
            elif code == _WEIRD_SERVER_REPLY and message.startswith(_INVALID_LENGTH):
                # libcurl refuses a Content-Length that is not a number (or
                # a list of differing ones) before any callback sees the
                # header, so its value cannot be quoted; the error is the
                # shared rule's.  The values libcurl lets through meet
                # body_framing in _head_done.
                raise invalid_content_length(None)
            raise curl_error(code, message, os_errno, *self.visited)
        if self.mode != _BODY:
            raise TransientDownloadError("ProtocolError: the answer ended before its head")
        self._end_body()
        return False

    def _end_body(self) -> None:
        """The body came whole: check it, then write its last block and close the file."""
        if self.expected is not None and self.size != self.expected:
            raise truncated(self.size, self.expected)
        check_status(self.status, self.reason, self.headers.get("retry-after"))
        if self.lane is not None:
            self._flush()  # the last block; complete() closes the file once it is written
        else:
            self._close_file()

    def _follow(self, location: str) -> None:
        if self.hops >= self.config.max_redirects:
            raise too_many_redirects(self.config.max_redirects)
        current = self.target
        target = redirect_target(current, location)
        self.visited.append(target)
        wire = quoted_url(target)
        if wire != target:
            self.visited.append(wire)
        if not keeps_credentials(current, target):
            self.request_headers = self.safe_headers
        self.target = wire
        self.hops += 1
        self.mode = _HEAD
        self.status = 0
        self.headers = {}
