"""The download backend seam: one attempt at fetching one URL to one path.

A backend implements :meth:`Downloader.fetch`, which the framework calls from
``--download-workers`` threads at once.  A backend that multiplexes many
connections on one thread (an event loop) may implement
:meth:`Downloader.fetch_many` as well: the framework then runs it on one
thread and feeds it :class:`DownloadJob` objects through a
:class:`DownloadFeed`, and uses :meth:`fetch` only for the attempts the backend
hands back (retries, and whatever its loop does not handle).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from .file_data import FileData
    from .settings import PipelineSettings


__all__ = ["Attempt", "DownloadFeed", "DownloadJob", "Downloader", "drives_many"]


class DownloadJob:
    """One file for :meth:`Downloader.fetch_many`: the body of ``file_data.url``."""

    __slots__ = ("destination", "file_data", "sequence", "target")

    def __init__(self, sequence: int, file_data: FileData, destination: Path, target: Path) -> None:
        self.sequence = sequence
        self.file_data = file_data
        #: The temporary (``.part``) name to write; the framework renames it.
        self.destination = destination
        self.target = target

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
    #: :class:`PipelineInterrupted`) and return soon.
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

    def fetch(self, file_data: FileData, destination: Path, should_stop: threading.Event) -> int:
        """Write the body of ``file_data.url`` to ``destination`` and return its size.

        Write it through ``sink.body_writer(destination)``: the entry's size
        and digests are then checked while it streams, ``--max-file-size`` and
        ``--file-timeout`` kept, and a retry continues a broken transfer
        (send :meth:`~.sink.BodyWriter.range_headers`).  A file written
        otherwise is read once more afterwards to be checked.

        Raise :class:`~download_pipeline_processor.errors.TransientDownloadError`
        for a failure worth retrying, :class:`PermanentDownloadError` otherwise,
        and :class:`PipelineInterrupted` soon after ``should_stop`` is set.  A
        partly written ``destination`` is removed by the caller.
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
