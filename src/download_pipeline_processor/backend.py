"""The download backend seam: one attempt at fetching one URL to one path.

A backend implements :meth:`Downloader.fetch`, which the framework calls from
``--download-workers`` threads at once.  A backend that multiplexes many
connections on one thread (an event loop) may implement
:meth:`Downloader.fetch_many` as well: the framework then runs it on one
thread and feeds it :class:`DownloadJob` objects through a
:class:`DownloadFeed`, and uses :meth:`fetch` only for the attempts the backend
hands back (retries, and whatever its loop does not handle).

Everything one attempt needs travels in one :class:`DownloadRequest`: the URL
to send (checked and quoted once, at input), the merged request headers, the
file's :class:`~.sink.BodyWriter`, the ``.part`` name, a :class:`StopFlag`
that knows the attempt's deadline, and the limits.
"""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ._integrity import expected_checks
from .errors import PipelineInterrupted, TransientDownloadError
from .http_rules import entry_headers, file_timed_out, wire_url
from .options import merge_headers
from .sink import BodyWriter

if TYPE_CHECKING:
    from .file_data import FileData
    from .settings import PipelineSettings

__all__ = [
    "Attempt",
    "DownloadFeed",
    "DownloadJob",
    "DownloadRequest",
    "Downloader",
    "StopFlag",
    "drives_many",
    "request_headers",
]

_now = time.monotonic


class StopFlag:
    """Whether an attempt must end: true once the run stops or the attempt's deadline passes.

    ``deadline`` is the attempt's ``--file-timeout`` as a :func:`time.monotonic`
    time, or None; the framework sets it when each attempt starts.  No timer
    thread: :meth:`is_set` compares the clock.
    """

    __slots__ = ("_run", "deadline", "file_timeout")

    def __init__(self, run: threading.Event, file_timeout: float | None = None) -> None:
        self._run = run
        #: ``--file-timeout`` in seconds, or None.
        self.file_timeout = file_timeout
        #: When the current attempt must end (``time.monotonic``), or None.
        self.deadline: float | None = None

    def is_set(self) -> bool:
        """True once the run stops or the attempt's deadline has passed."""
        deadline = self.deadline
        return self._run.is_set() or (deadline is not None and _now() >= deadline)

    @property
    def stopping(self) -> bool:
        """True once the whole run stops (the deadline aside)."""
        return self._run.is_set()

    def time_left(self) -> float | None:
        """Seconds until the deadline (0 once past), or None without one."""
        deadline = self.deadline
        return None if deadline is None else max(deadline - _now(), 0.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set, at most ``timeout`` seconds; return :meth:`is_set`."""
        left = self.time_left()
        if left is not None:
            timeout = left if timeout is None else min(timeout, left)
        return self._run.wait(timeout) or self.is_set()

    def error(self) -> PipelineInterrupted | TransientDownloadError:
        """The error an attempt that saw the flag set ends with.

        :class:`PipelineInterrupted` when the run stops; the ``--file-timeout``
        error (retried) when the deadline passed.
        """
        if self._run.is_set() or self.deadline is None or _now() < self.deadline:
            return PipelineInterrupted("run stopped during the download")
        return file_timed_out(self.file_timeout or 0.0)

    def __repr__(self) -> str:
        return f"StopFlag(set={self.is_set()}, deadline={self.deadline!r})"


class DownloadRequest:
    """One file's request, handed to every attempt at it: all a downloader needs.

    Built once per file by the framework and given to each attempt, its
    ``stop.deadline`` set anew; a downloader reads it and changes nothing
    but :attr:`prepared` (``headers`` may be shared by every request of the
    run).  Per attempt a downloader adds only ``writer.range_headers()`` to
    ``headers``.
    """

    __slots__ = (
        "destination",
        "file_data",
        "headers",
        "max_file_size",
        "max_redirects",
        "own_headers",
        "prepared",
        "read_size",
        "stop",
        "timeout",
        "url",
        "writer",
    )

    def __init__(
        self,
        file_data: FileData,
        url: str,
        headers: dict[str, str],
        writer: BodyWriter,
        destination: str,
        *,
        stop: StopFlag,
        own_headers: bool = False,
        timeout: float = 30.0,
        max_file_size: int | None = None,
        max_redirects: int = 10,
        read_size: int = 1024 * 1024,
    ) -> None:
        #: The entry.
        self.file_data = file_data
        #: The URL to GET: checked, host in ASCII, re-quoted, no fragment (``http_rules.wire_url``).
        self.url = url
        #: The run's ``--header``s with the entry's own over them, name by name, and
        #: ``Accept-Encoding: identity``.
        self.headers = headers
        #: True when the entry gave headers of its own (else ``headers`` is the run's).
        self.own_headers = own_headers
        #: The file's body writer: digests, limits, resume (``sink.BodyWriter``).
        self.writer = writer
        #: The temporary (``.part``) file to write; the framework renames it.
        self.destination = destination
        #: Set when the run stops or the attempt's ``--file-timeout`` runs out.
        self.stop = stop
        #: ``--timeout``: seconds for each connect, send or receive.
        self.timeout = timeout
        #: ``--max-file-size`` in bytes, or None (the writer keeps it too).
        self.max_file_size = max_file_size
        #: ``--max-redirects``.
        self.max_redirects = max_redirects
        #: ``--read-size``: bytes per read.
        self.read_size = read_size
        #: What a downloader made of this request once, for its later attempts (None at first).
        self.prepared: object = None

    @classmethod
    def for_file(
        cls,
        file_data: FileData,
        destination: str,
        settings: PipelineSettings,
        run_stop: threading.Event,
        *,
        writer: BodyWriter | None = None,
        run_headers: dict[str, str] | None = None,
    ) -> DownloadRequest:
        """The request of ``file_data`` into ``destination``: everything per file worked out once.

        ``writer``: the file's body writer (a plain one with the entry's
        checks and the limits when None); ``run_headers``: the run's headers
        (:func:`run_headers`), shared by every request whose entry has none.
        Raises :class:`PermanentDownloadError` for a URL no downloader could fetch.
        """
        url = wire_url(file_data.url)
        fields = file_data.additional_fields
        own = entry_headers(fields) if fields.get("headers") else None
        base = run_headers if run_headers is not None else request_headers(settings)
        if writer is None:
            checks = expected_checks(fields)
            writer = BodyWriter(destination, checks, settings.max_file_size, settings.file_timeout)
        return cls(
            file_data,
            url,
            merge_headers(base, own) if own else base,
            writer,
            destination,
            stop=StopFlag(run_stop, settings.file_timeout),
            own_headers=bool(own),
            timeout=settings.timeout,
            max_file_size=settings.max_file_size,
            max_redirects=settings.max_redirects,
            read_size=settings.read_size,
        )

    def __repr__(self) -> str:
        return f"DownloadRequest(id={self.file_data.id!r})"


def request_headers(settings: PipelineSettings) -> dict[str, str]:
    """The headers of every request of a run: ``Accept-Encoding: identity`` (the bytes as
    served, never decompressed), the User-Agent, then ``--header``s over them."""
    return merge_headers({"Accept-Encoding": "identity"}, settings.request_headers)


class DownloadJob:
    """One file for :meth:`Downloader.fetch_many`: the body of ``request.url``."""

    __slots__ = ("destination", "file_data", "request", "sequence", "target")

    def __init__(
        self,
        sequence: int,
        file_data: FileData,
        destination: Path,
        target: Path,
        request: DownloadRequest,
    ) -> None:
        self.sequence = sequence
        self.file_data = file_data
        #: The temporary (``.part``) name to write; the framework renames it.
        self.destination = destination
        self.target = target
        #: What the attempt needs: URL, headers, body writer, stop flag, limits.
        self.request = request

    def __repr__(self) -> str:
        return f"DownloadJob({self.sequence}, id={self.file_data.id!r})"


#: What :meth:`DownloadFeed.hand_off` runs on a worker thread: the rest of an
#: attempt, returning the body's size like :meth:`Downloader.fetch`.
Attempt = Callable[[], int]


class DownloadFeed(Protocol):
    """The framework's side of :meth:`Downloader.fetch_many`, called from that one thread.

    Every job taken must be given back exactly once, through :meth:`done`,
    :meth:`failed` or :meth:`hand_off`.
    """

    #: Set when the run is stopping: give every job back (``failed`` with
    #: :class:`PipelineInterrupted`) and return soon.  (Each job's
    #: ``request.stop`` also knows the job's deadline.)
    should_stop: threading.Event

    @property
    def poll_interval(self) -> float:
        """Call :meth:`take` again at least this often, in seconds, while jobs are out."""

    def take(self, wait: bool = False) -> DownloadJob | None:
        """The next file to download, or None.

        None with ``wait=False`` means "not now" (every download slot is busy,
        or processing is behind); with ``wait=True`` the call blocks until a
        job can start, and None means there will be no more jobs.  Call it
        with ``wait=True`` only while no job is out.
        """

    def done(self, job: DownloadJob, size: int) -> None:
        """``job.destination`` holds the whole body, ``size`` bytes; the file is closed."""

    def failed(self, job: DownloadJob, error: BaseException) -> None:
        """The attempt failed with ``error``: retried or reported as a ``fetch`` failure is."""

    def hand_off(self, job: DownloadJob, attempt: Attempt | None = None) -> None:
        """Let a worker thread finish this attempt: ``attempt()``, or ``fetch()`` when None.

        For what the loop does not do itself (say, TLS, redirects, or a body
        big enough to deserve a core of its own).  Retries follow as usual.
        """


class Downloader:
    """Fetches files for the download stage; register subclasses with ``register_downloaders``.

    One instance serves the whole run and :meth:`fetch` is called from every
    download worker thread at once, so keep per-thread state (connections,
    sessions) in ``threading.local``.  Retries, backoff, temporary names and
    cleanup belong to the framework: :meth:`fetch` makes one attempt.
    """

    #: True for a downloader whose files are placeholders (``simulated``): the
    #: framework then checks no size or digest an entry gives.
    placeholder_bodies = False

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings

    def fetch(self, request: DownloadRequest) -> int:
        """GET ``request.url`` with ``request.headers``, write the body, return the file's size.

        Write it through ``request.writer``: the entry's size and digests are
        then checked while it streams, ``--max-file-size`` and
        ``--file-timeout`` kept, and a retry continues a broken transfer
        (send :meth:`~.sink.BodyWriter.range_headers` too).  A file written
        otherwise to ``request.destination`` is read once more afterwards to
        be checked.

        Raise :class:`~download_pipeline_processor.errors.TransientDownloadError`
        for a failure worth retrying, :class:`PermanentDownloadError` otherwise,
        and ``request.stop.error()`` soon after ``request.stop`` is set.  A
        partly written destination is removed by the caller.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement fetch()")

    def fetch_many(self, feed: DownloadFeed) -> None:
        """Optional: download every job ``feed`` gives, up to ``--download-workers`` at once.

        Runs on one thread for the whole run.  Take jobs with
        :meth:`DownloadFeed.take` and give each back once; return when
        ``feed.take(wait=True)`` returns None.  Only the first attempt
        belongs here: a failure given to :meth:`DownloadFeed.failed` is
        retried through :meth:`fetch`.  A backend without this method is run
        by ``--download-workers`` threads calling :meth:`fetch`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement fetch_many()")

    def close(self) -> None:
        """Release connections at the end of the run; the default does nothing."""


def drives_many(downloader: Downloader) -> bool:
    """True when ``downloader`` implements :meth:`Downloader.fetch_many` for its own ``fetch``.

    A subclass that overrides ``fetch`` (to sign URLs, say) but inherits
    ``fetch_many`` runs on worker threads: the inherited loop would go around
    its ``fetch``.
    """
    cls = type(downloader)
    if cls.fetch_many is Downloader.fetch_many:
        return False
    many = next(k for k in cls.__mro__ if "fetch_many" in vars(k))
    fetch = next(k for k in cls.__mro__ if "fetch" in vars(k))
    return fetch is many or not issubclass(fetch, many)


def takes_request(downloader: Downloader) -> bool:
    """False for a downloader written for the old ``fetch(file_data, destination, should_stop)``."""
    try:
        parameters = list(inspect.signature(type(downloader).fetch).parameters.values())[1:]
    except (TypeError, ValueError):  # no signature to read: trust the documented one
        return True
    positional = [
        parameter
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) < 3


def fetch_of(downloader: Downloader) -> Callable[[DownloadRequest], int]:
    """How the framework calls ``downloader``: its ``fetch``, adapted if it has the old signature.

    Called once per run.  An old ``fetch(file_data, destination, should_stop)``
    still runs, with one :class:`DeprecationWarning`; its file is then checked
    after the fact (it writes through no body writer), and its retries start over.
    """
    if takes_request(downloader):
        return downloader.fetch
    cls = type(downloader)
    warnings.warn(
        f"{cls.__module__}.{cls.__qualname__}.fetch(file_data, destination, should_stop) is "
        "deprecated: take one DownloadRequest, fetch(request) (see the plugin guide)",
        DeprecationWarning,
        stacklevel=2,
    )
    old_fetch: Callable[..., int] = downloader.fetch

    def fetch(request: DownloadRequest) -> int:
        return old_fetch(request.file_data, Path(request.destination), request.stop)

    return fetch
