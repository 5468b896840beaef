"""Writing a response body to its cache file: os-level calls, no buffer copies.

A file object would copy every chunk into its own buffer and add syscalls;
each syscall also hands the GIL to the other workers and back.

A downloader writes a body through the :class:`BodyWriter` its request
carries (``request.writer``, see :class:`~.backend.DownloadRequest`): the
writer creates the file safely, keeps
the digests while the bytes stream, enforces ``--max-file-size`` and
``--file-timeout``, and carries what a retry needs to resume (the bytes
already written, the ETag or Last-Modified, the digests' state) from one
attempt to the next.  :func:`open_destination` and :func:`write_all` stay for
downloaders that write bodies themselves; the framework then checks their
files after the fact, with one more read.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Union

from ._cache import create_cache_file
from ._cache_budget import GaveWay, RoomWanted
from ._integrity import Checks
from .errors import TransientDownloadError
from .http_rules import (
    announced_too_large,
    file_timed_out,
    grew_too_large,
    integrity_mismatch,
    range_refused,
    size_mismatch,
)

__all__ = [
    "BodyWriter",
    "Chunk",
    "HeaderLookup",
    "RateLimit",
    "RoomRequest",
    "content_range_start",
    "open_destination",
    "write_all",
]


#: What a body chunk may be: bytes, or a view of a reused buffer.
Chunk = Union[bytes, bytearray, memoryview]
#: Looks up a response header by its lower-case name: ``headers.get``.
HeaderLookup = Callable[[str], Any]
#: Asks the cache for room (``--cache-size``): (bytes the file will hold, bytes it holds
#: now, whether the call may wait, whether to set the room exactly, the most worth taking
#: now when it fits) -> the room held.
RoomRequest = Callable[[int, int, bool, bool, int], int]

_APPEND_FLAGS = (
    os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_TRUNCATE_FLAGS = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d{1,18})-(\d{1,18})/(\d{1,18}|\*)\s*", re.IGNORECASE)


def open_destination(destination: str | os.PathLike[str]) -> int:
    """Create ``destination`` anew for writing and return its descriptor.

    Never through a symbolic link, never into an existing file: an earlier
    attempt's ``.part`` is replaced by a new file (see ``create_cache_file``).
    """
    return create_cache_file(destination)


def write_all(descriptor: int, data: Chunk) -> None:
    """Write every byte of ``data``: ``os.write`` may take fewer than it is given."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def content_range_start(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, whole length or None) of a ``Content-Range: bytes A-B/L`` value, or None."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


class RateLimit:
    """``--limit-rate``: at most ``rate`` bytes per second over every body writer of a run.

    Each write is paid for in time: a writer that would get ahead of the rate
    sleeps until its bytes are due.  Sleeping where the bytes are written
    holds back the reading too (the socket, libcurl's transfer or an event
    loop), whatever the downloader; time not used is not saved up, so there
    are no bursts.
    """

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self._due = 0.0  # when every byte charged so far is paid for (time.monotonic)
        self._lock = threading.Lock()

    def charge(self, size: int) -> None:
        """Count ``size`` bytes written; sleep until the run is back under the rate."""
        with self._lock:
            now = time.monotonic()
            self._due = max(self._due, now) + size / self.rate
            delay = self._due - now
        if delay > 0:
            time.sleep(delay)


class BodyWriter:
    """The body of one file across its attempts: its cache file, digests, limits and resume.

    One attempt at a time uses a writer.  A downloader calls
    :meth:`range_headers` for the request, :meth:`begin` with the answer's
    head, :meth:`write` for each piece of the body, and :meth:`close` when
    the attempt ends, however it ends; the framework calls :meth:`verify`
    once an attempt returned.  A retry after a broken transfer then asks for
    the rest only; a ``206`` answer appends to the file and continues the
    same digests, anything else starts the file over.
    """

    def __init__(
        self,
        destination: str | os.PathLike[str],
        checks: Checks | None = None,
        max_size: int | None = None,
        file_timeout: float | None = None,
        rate: RateLimit | None = None,
        *,
        room: RoomRequest | None = None,
    ) -> None:
        self.destination = destination
        #: --cache-size: asked before the file grows past the room it holds.
        self.room = room
        #: The room the cache gave the file so far (asked again past it).
        self.granted = 0
        #: False while an attempt holds a host slot: it must not wait for room then.
        self.may_wait = True
        #: The room an attempt was refused (RoomWanted): waited for before the next one.
        self.wanted = 0
        #: --limit-rate: charged for every byte written.
        self.rate = rate
        self.checks = checks or Checks()
        self.max_size = max_size
        self.file_timeout = file_timeout
        #: Bytes in the cache file, counted into the digests.
        self.size = 0
        #: The HTTP status of the last body's answer.
        self.http_status: int | None = None
        #: True once a downloader began a body in the current attempt.
        self.used = False
        #: Bytes kept from earlier attempts and not fetched again (all attempts).
        self.resumed_bytes = 0
        self.deadline: float | None = None
        self.started: float | None = None
        self._validator: str | None = None
        self._asked: int | None = None  # the offset this attempt's Range asked for
        self._descriptor = -1
        self._digests: dict[str, Any] | None = None  # made with the first byte

    @property
    def _hashers(self) -> dict[str, Any]:
        if self._digests is None:
            import hashlib  # here: a simulated run never needs it (start-up time)

            names = ["sha256", *(digest.algorithm for digest in self.checks.digests)]
            self._digests = {name: hashlib.new(name) for name in dict.fromkeys(names)}
        return self._digests

    # -- the framework's side -----------------------------------------------------------

    def new_attempt(self) -> None:
        """An attempt starts: its clock (``--file-timeout``) starts too."""
        self.close()
        now = time.monotonic()
        if self.started is None:
            self.started = now
        self.deadline = None if self.file_timeout is None else now + self.file_timeout
        self.used = False
        self.granted = 0  # asked again at the first write: the room may have changed
        self._asked = None

    @property
    def timed_out(self) -> bool:
        """True once the current attempt ran past ``--file-timeout``."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def timeout_error(self) -> TransientDownloadError:
        """The error of an attempt that ran past ``--file-timeout``."""
        return file_timed_out(self.file_timeout or 0.0)

    def start_over(self) -> None:
        """Forget the bytes written: the next attempt starts the file over."""
        self.close()
        self.size = 0
        self._validator = None
        self._digests = None

    def verify(self) -> None:
        """Check the complete file against its entry; a mismatch starts the file over.

        Raises the shared mismatch error (retried like a truncated body).
        """
        self.close()
        error = self._mismatch(self.size, {n: h.hexdigest() for n, h in self._hashers.items()})
        if error is not None:
            self.start_over()
            raise error

    def verify_file(self) -> None:
        """Check a file a downloader wrote itself, reading it once (no streaming digests)."""
        self.start_over()
        with open(self.destination, "rb") as stream:  # noqa: PTH123 - the path as given
            while block := stream.read(1024 * 1024):
                for hasher in self._hashers.values():
                    hasher.update(block)
                self.size += len(block)
        self.verify()

    def _mismatch(self, size: int, digests: dict[str, str]) -> TransientDownloadError | None:
        expected = self.checks.size
        if expected is not None and size != expected:
            return size_mismatch(expected, size)
        for digest in self.checks.digests:
            if digests[digest.algorithm] != digest.hex:
                return integrity_mismatch(digest.algorithm, digest.hex, digests[digest.algorithm])
        return None

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes written so far."""
        return str(self._hashers["sha256"].hexdigest())

    # -- the downloader's side ------------------------------------------------------------

    def range_headers(self) -> dict[str, str]:
        """Request headers that ask for the rest of the file only, or none.

        ``Range`` with ``If-Range`` (the ETag, else Last-Modified), when an
        earlier attempt left bytes and its answer gave a validator: without
        one the server could not tell whether the bytes are still current.
        """
        if self.size <= 0 or self._validator is None:
            return {}
        self._asked = self.size
        return {"Range": f"bytes={self.size}-", "If-Range": self._validator}

    def begin(self, status: int, header: HeaderLookup, length: int | None) -> None:
        """The body of an answer with ``status`` starts; ``length``: its Content-Length, if any.

        ``header`` looks up the answer's headers by lower-case name.  Opens
        the file: appends on a ``206`` that continues it, starts it over
        otherwise.  Raises :class:`PermanentDownloadError` for a file
        announced larger than ``--max-file-size``.
        """
        self.close()
        self.used = True
        self.http_status = status
        asked = self._asked
        if status == 206 and asked:
            found = content_range_start(header("content-range"))
            if found is None or found[0] != asked:
                self.start_over()
                raise range_refused(asked, header("content-range"))
            total = found[1] if found[1] is not None else None
            if total is None and length is not None:
                total = asked + length
            self._check_announced(total)
            self._descriptor = self._reopen()
            self.resumed_bytes += asked
            if total is not None:
                self._ask(total, exact=True)
            return
        self.start_over()
        self._check_announced(length)
        etag = header("etag")
        # A weak ETag cannot make a range conditional (RFC 9110 13.1.5).
        if etag and not etag.startswith("W/"):
            self._validator = etag
        else:
            self._validator = header("last-modified") or None
        self._descriptor = create_cache_file(self.destination)
        if length is not None:
            self._ask(length, exact=True)

    def make_room(self, size: int) -> None:
        """Wait until the file may hold ``size`` bytes in the cache (``--cache-size``).

        For a downloader that writes its file itself: called before writing
        it, it keeps the cache's bound in real bytes.  :meth:`write` asks on
        its own.
        """
        if self.room is not None and size > self.granted:
            self._ask(size)

    def _ask(self, size: int, exact: bool = False, ahead: int = 0) -> None:
        """Ask the cache for room for ``size`` bytes (up to ``ahead`` when that fits).

        Gives the bytes back when told to (:class:`GaveWay`); remembers the
        size refused (:class:`RoomWanted`) for :meth:`wait_for_room`.
        """
        if self.room is None:
            return
        try:
            self.granted = self.room(size, self.size, self.may_wait, exact, max(ahead, size))
        except GaveWay:
            self._give_back()
            raise
        except RoomWanted:
            self.wanted = size
            raise

    def wait_for_room(self) -> None:
        """Between attempts, with no host slot held: wait for the room the last one was refused.

        A file asked to give way meanwhile empties its file and waits holding nothing.
        """
        wanted, self.wanted = self.wanted, 0
        if self.room is None or wanted <= 0:
            return
        while True:
            try:
                self.granted = self.room(wanted, self.size, True, False, 2 * wanted)
                return
            except GaveWay:
                self._give_back()

    def _give_back(self) -> None:
        """Empty the file and the room it held: another file waits for that room."""
        descriptor, self._descriptor = self._descriptor, -1
        try:
            if descriptor < 0:  # between attempts: the file is closed
                with contextlib.suppress(FileNotFoundError):
                    descriptor = os.open(self.destination, _TRUNCATE_FLAGS)
            if descriptor >= 0:
                os.ftruncate(descriptor, 0)
        finally:
            if descriptor >= 0:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
            self.start_over()
        assert self.room is not None
        self.granted = self.room(0, 0, True, True, 0)

    def _check_announced(self, size: int | None) -> None:
        if self.max_size is not None and size is not None and size > self.max_size:
            raise announced_too_large(size, self.max_size)

    def _reopen(self) -> int:
        """The cache file of the earlier attempts, for appending; never through a link."""
        try:
            descriptor = os.open(self.destination, _APPEND_FLAGS)
        except OSError:
            descriptor = -1
        if descriptor >= 0:
            info = os.fstat(descriptor)
            if stat.S_ISREG(info.st_mode) and info.st_size == self.size:
                return descriptor
            os.close(descriptor)
        self.start_over()
        raise TransientDownloadError("the partly downloaded file changed in the cache")

    def write(self, data: Chunk) -> None:
        """Append ``data`` to the file and to the digests."""
        self.write_many((data,))

    def write_many(self, chunks: Sequence[Chunk]) -> None:
        """Append every chunk (one ``writev`` when there are several)."""
        total = sum(len(chunk) for chunk in chunks)
        if self.max_size is not None and self.size + total > self.max_size:
            self.close()
            raise grew_too_large(self.max_size)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.close()
            raise self.timeout_error()
        if self._descriptor < 0:
            raise RuntimeError("BodyWriter.write before begin()")
        if self.room is not None and self.size + total > self.granted:
            # In steps (twice the room held, where it fits): not a request per chunk.
            ahead = 2 * max(self.granted, self.size + total)
            if self.max_size is not None:
                ahead = min(ahead, self.max_size)
            self._ask(self.size + total, ahead=ahead)  # may give the file's bytes back
        descriptor = self._descriptor
        try:
            written = os.writev(descriptor, chunks) if len(chunks) > 1 else 0
            if written < total:
                rest = memoryview(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                write_all(descriptor, rest[written:])
        except OSError:
            self.start_over()  # the file no longer matches the digests: no resume from it
            raise
        for hasher in self._hashers.values():
            for chunk in chunks:
                hasher.update(chunk)
        self.size += total
        if self.rate is not None:
            self.rate.charge(total)

    def close(self) -> None:
        """End the attempt's use of the file; it stays for a resume or for the framework."""
        descriptor, self._descriptor = self._descriptor, -1
        if descriptor >= 0:
            try:
                os.close(descriptor)  # may report a failed write-back
            except OSError:
                self.start_over()
                raise
