"""The bytes of an input, before any format reads them.

:class:`InputReader` reads ahead without consuming (to sniff a format or
gzip's magic bytes) and turns read errors into input errors;
:class:`StdinStream` reads standard input without holding a stopped run:
an idle pipe or terminal gives up (:class:`ReadStopped`) once the run's
stop is set, instead of blocking its thread until the writer closes it.
"""

from __future__ import annotations

import csv
import io
import os
import select
import sys
import threading
import zlib
from typing import IO, Any, Callable

from ._json_stream import ByteSource
from .errors import InputError

#: Bytes read at a time.
CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
#: How long a read of idle standard input waits before it looks at the stop again.
STDIN_WAIT_SLICE = 0.1


class ReadStopped(Exception):
    """The run stopped while standard input had nothing to read: reading gives up."""


class StopWatch:
    """The stop a read of standard input gives up at, bound to the run's once it starts.

    The input is opened before the run (and its stop) exists: the run binds
    its event with :meth:`watch`.
    """

    def __init__(self) -> None:
        self._event: threading.Event | None = None

    def watch(self, event: threading.Event) -> None:
        """Give up reading once ``event`` is set."""
        self._event = event

    def is_set(self) -> bool:
        """Whether the watched run is stopping."""
        return self._event is not None and self._event.is_set()


class StdinStream:
    """Standard input, read without blocking past a stop.

    A read on an idle pipe or terminal would hold its thread (and with it the
    run) until the writer closes it or types; this one waits for data in
    slices and raises :class:`ReadStopped` once ``stop`` is set.  It reads the
    file descriptor itself, with ``os.read``: what is there, as it arrives.
    """

    def __init__(self, stop: StopWatch) -> None:
        self.stop = stop
        self.buffer: IO[bytes] = sys.stdin.buffer
        try:
            self.fd: int | None = self.buffer.fileno()
        except (AttributeError, OSError, ValueError):  # replaced (a test runner's bytes)
            self.fd = None

    def read(self, size: int, /) -> bytes:
        if self.fd is None:
            read = getattr(self.buffer, "read1", self.buffer.read)
            data: bytes = read(size)
            return data
        while not self._readable():
            if self.stop.is_set():
                raise ReadStopped
        return os.read(self.fd, size)

    def _readable(self) -> bool:
        assert self.fd is not None
        try:
            ready, _, _ = select.select([self.fd], [], [], STDIN_WAIT_SLICE)
        except (OSError, ValueError):  # no select on this kind of file (Windows pipes)
            return True
        return bool(ready)


class InputReader:
    """A byte stream with a few bytes put back in front, whose read errors are input errors."""

    def __init__(self, handle: ByteSource, label: str, compressed: bool) -> None:
        self.handle = handle
        self.label = label
        #: How messages name the input (a file object's ``name``).
        self.name = label
        self.compressed = compressed
        self.front = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read1(self, size: int = CHUNK, /) -> bytes:
        return self.read(size)

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if self.front:
            front, self.front = self.front[:size], self.front[size:]
            return front
        try:
            # read1: what is there, without waiting for a whole chunk, so entries
            # on a pipe are taken as they arrive.
            read = getattr(self.handle, "read1", self.handle.read)
            data: bytes = read(size)
            return data
        except (OSError, EOFError, zlib.error) as exc:
            if self.compressed:
                # BadGzipFile, a truncated stream (EOFError), a bad block (zlib.error).
                raise InputError(f"{self.label}: not valid gzip data: {exc}") from None
            raise InputError(f"{self.label}: cannot read: {exc}") from None

    def peek(self, enough: Callable[[bytes], bool]) -> bytes:
        """The bytes ahead, read until ``enough`` of them says so or the input ends; kept."""
        seen = self.front
        self.front = b""
        while not enough(seen):
            chunk = self.read(CHUNK)
            if not chunk:
                break
            seen += chunk
        self.front = seen
        return seen

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Not seekable (``gzip`` asks for the method, and never calls it reading forward)."""
        raise io.UnsupportedOperation("seek")

    def sniff(self) -> str:
        """The format the start of the input says; nothing is consumed.

        ``[`` JSON, ``{`` JSON Lines, a first line naming a ``url`` column
        with a comma CSV, anything else a URL list.
        """
        seen = self.peek(lambda data: bool(_first_line(data)[1]))
        line, _ = _first_line(seen)
        first = line[:1]
        if first == b"[":
            return "json"
        if first == b"{":
            return "jsonl"
        return "csv" if _names_url_column(line) else "urls"


class BufferedView(io.RawIOBase):
    """A :class:`InputReader` as a raw file, to make a buffered one a format plugin can use."""

    def __init__(self, reader: InputReader) -> None:
        super().__init__()
        self._reader = reader
        self.name = reader.label

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _first_line(data: bytes) -> tuple[bytes, bool]:
    """The first non-blank line of ``data`` (BOM and blank space dropped), and whether whole.

    A line cut at :data:`CHUNK` bytes counts as whole: a header is never that long.
    """
    text = data.removeprefix(BOM).lstrip()
    end = text.find(b"\n")
    if end < 0:
        return text, len(text) >= CHUNK or (bool(text) and text[:1] in b"[{")
    return text[:end], True


def _names_url_column(line: bytes) -> bool:
    """Whether ``line`` is a CSV header: cells split by commas, one of them ``url``."""
    if b"," not in line:
        return False
    try:
        cells = next(csv.reader([line.decode("utf-8", "replace")]), [])
    except csv.Error:
        return False
    return "url" in (cell.strip() for cell in cells)
