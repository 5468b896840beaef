"""The download stage: retries around one backend attempt, temp names, cleanup."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._cache import DownloadCache
from ._cache_budget import RoomWanted, disk_full_error, expected_size
from ._hosts import HostGate, HostSlot
from ._integrity import expected_checks
from .backend import Attempt, Downloader, DownloadRequest, fetch_of, request_headers
from .errors import DiskFullError, DownloadError, PipelineInterrupted, TransientDownloadError
from .file_data import FileData
from .http_rules import announced_too_large
from .redact import scrub, shown_url
from .settings import PipelineSettings
from .sink import BodyWriter, RateLimit

if TYPE_CHECKING:
    import tenacity

logger = logging.getLogger(__name__)


class DownloadStage:
    """Downloads one file at a time into the cache, retrying transient failures.

    Thread-safe: every download worker calls :meth:`download` on the same
    instance.  A file is written under a ``.part`` name and renamed only once
    the backend returned without error, so a complete name is a complete file.
    """

    def __init__(
        self,
        downloader: Downloader,
        cache: DownloadCache,
        settings: PipelineSettings,
        stop_event: threading.Event,
    ) -> None:
        self.downloader = downloader
        self.cache = cache
        self.settings = settings
        self.stop_event = stop_event
        #: Downloads in flight per host (--max-per-host), and what hosts asked for.
        self.hosts = HostGate(
            settings.max_per_host or settings.download_workers, settings.retry_backoff_max
        )
        #: --limit-rate, shared by every body writer of the run.
        self.rate = RateLimit(settings.limit_rate) if settings.limit_rate else None
        #: The downloader's fetch, adapted once if it has the old signature.
        self.fetch = fetch_of(downloader)
        #: The headers of every request whose entry gives none of its own (shared).
        self.headers = request_headers(settings)
        #: The request of each file being downloaded, by its ``.part`` name.  Set and
        #: removed once per file; a plain dict, each operation atomic: no lock.
        self._requests: dict[str, DownloadRequest] = {}

    def _delay(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        settings = self.settings
        if isinstance(error, TransientDownloadError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), settings.retry_backoff_max)
        return float(min(settings.retry_backoff * (2 ** (attempt - 1)), settings.retry_backoff_max))

    def _wait_seconds(self, retry_state: tenacity.RetryCallState) -> float:
        # The retry loop starts after the first attempt: its attempt n is attempt n + 1.
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return self._delay(error, retry_state.attempt_number + 1)

    def _sleep(self, seconds: float) -> None:
        # Wake up at once when the run is stopped instead of sleeping out the backoff.
        self.stop_event.wait(seconds)

    def _log_retry(
        self, file_data: FileData, attempt: int, delay: float, error: BaseException | None
    ) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "retrying %s in %.1fs (attempt %d of %d failed: %s)",
                shown_url(file_data.url),
                delay,
                attempt,
                self.settings.max_retries + 1,
                # A backend's text may quote a URL this file's URL does not show (a hop).
                scrub(str(error), file_data.url),
            )

    def _log_tenacity_retry(self, retry_state: tenacity.RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        request: DownloadRequest = retry_state.args[0]
        self._log_retry(request.file_data, retry_state.attempt_number + 1, delay, error)

    def request(self, file_data: FileData, part: str) -> DownloadRequest:
        """The request of ``file_data`` into ``part`` across its attempts, made on first use.

        Everything per file is worked out here, once: the URL to send, the
        merged headers, the body writer.  Raises the too-large error when the
        entry announces a size past ``--max-file-size`` (the file fails before
        any request), and :class:`PermanentDownloadError` for a URL no
        downloader could fetch.
        """
        request = self._requests.get(part)
        if request is not None:
            return request
        settings = self.settings
        checks = expected_checks(file_data.additional_fields)
        limit = settings.max_file_size
        if limit is not None and checks.size is not None and checks.size > limit:
            raise announced_too_large(checks.size, limit)
        # --cache-size: the writer keeps the file within its room in real bytes.
        room = None if self.cache.budget.limit is None else functools.partial(self._room, key=part)
        writer = BodyWriter(part, checks, limit, settings.file_timeout, self.rate, room=room)
        request = DownloadRequest.for_file(
            file_data, part, settings, self.stop_event, writer=writer, run_headers=self.headers
        )
        self._requests[part] = request
        return request

    def forget(self, part: str) -> None:
        """The file is done with (complete or failed): drop its request, close its file."""
        request = self._requests.pop(part, None)
        if request is not None:
            with contextlib.suppress(OSError):  # the file is discarded or already complete
                request.writer.close()

    def bytes_in_flight(self) -> int:
        """Bytes written so far of the files still downloading (for a progress display)."""
        return sum(request.writer.size for request in list(self._requests.values()))

    def _writer_of(self, part: str) -> BodyWriter | None:
        request = self._requests.get(part)
        return None if request is None else request.writer

    def _room(
        self, size: int, on_disk: int, wait: bool, exact: bool, ahead: int, *, key: str
    ) -> int:
        """A body writer's request for room in the cache (see ``CacheBudget.need``)."""
        return self.cache.budget.need(
            key, size, on_disk, self.stop_event, wait=wait, exact=exact, ahead=ahead
        )

    def begin_attempt(self, request: DownloadRequest) -> None:
        """Count a new attempt at ``request``'s file and start its ``--file-timeout`` clock.

        An attempt holds a host slot: it never waits for room in the cache.
        Refused room ends it (``RoomWanted``, not counted); the file waits for
        the room between attempts, holding no slot, outside any attempt's clock.
        """
        request.file_data.download.attempts += 1
        writer = request.writer
        writer.new_attempt()
        writer.may_wait = False
        request.stop.deadline = writer.deadline

    def verify(self, file_data: FileData, writer: BodyWriter, size: int) -> int:
        """Check an attempt's complete file against its entry; fill ``file_data.download``.

        A downloader that did not write through the writer had its file read
        once more here.  Raises the mismatch error, which is retried.
        """
        if self.downloader.placeholder_bodies:
            return size  # nothing was downloaded: nothing to check or record
        if writer.used:
            writer.verify()
        elif writer.checks:
            writer.verify_file()
        record = file_data.download
        if writer.used or writer.checks:
            record.sha256 = writer.sha256
            record.http_status = writer.http_status or record.http_status
        record.size = size
        if writer.started is not None:
            record.elapsed = time.monotonic() - writer.started
        return size

    def record_answer(
        self, file_data: FileData, writer: BodyWriter | None, error: BaseException
    ) -> None:
        """Keep the HTTP status of a failed attempt's answer on ``file_data.download``.

        The status an error carries (``check_status``'s), else that of the
        body the attempt began (cut short, or failing its checks); an attempt
        that got no answer leaves the last one recorded.
        """
        status = error.http_status if isinstance(error, DownloadError) else None
        if status is None and writer is not None and writer.used:
            status = writer.http_status
        if status is not None:
            file_data.download.http_status = status

    def _attempt(
        self,
        request: DownloadRequest,
        attempt: Attempt | None = None,
        slot: HostSlot | None = None,
    ) -> int:
        """One attempt, once there is room in the cache and on the host: ``attempt()``, or
        ``fetch``.  ``slot``: the host slot the attempt holds already (else one is taken).

        An attempt refused room in the cache (``RoomWanted``) ends, gives its
        host slot back, and the next one starts once the room is there: waiting
        for room is not a failure, is not a retry and is not counted as an attempt.
        """
        while True:
            try:
                return self._attempt_once(request, attempt, slot)
            except RoomWanted:
                request.file_data.download.attempts -= 1  # a restart for room, not an attempt
                attempt = slot = None  # given back by the attempt that ended

    def _attempt_once(
        self,
        request: DownloadRequest,
        attempt: Attempt | None = None,
        slot: HostSlot | None = None,
    ) -> int:
        file_data = request.file_data
        writer = request.writer
        try:
            if attempt is None and self.stop_event.is_set():
                raise PipelineInterrupted("run stopped before the download finished")
            # A retry, or a job the feed reserved for, holds its room already: no wait.
            self.cache.budget.reserve(
                request.destination, expected_size(file_data), self.stop_event
            )
            if slot is None:
                # Room an earlier attempt was refused, waited for holding no host slot:
                # a file that waits for room never holds up one that waits for a slot.
                writer.wait_for_room()
                # A paused or full host holds its retries back too.
                slot = self.hosts.acquire(file_data.url, self.stop_event)
            if slot is None or (attempt is None and self.stop_event.is_set()):
                raise PipelineInterrupted("run stopped before the download finished")
        except BaseException:
            if slot is not None:
                self.hosts.forget(slot)
            raise
        try:
            size = self._attempt_with(request, attempt)
        except BaseException as exc:
            # A 429 or a Retry-After holds the host back for everyone.
            self.hosts.release(slot, exc)
            if isinstance(exc, DownloadError):
                self.record_answer(file_data, writer, exc)
            raise
        self.hosts.release(slot)
        return size

    def _attempt_with(self, request: DownloadRequest, attempt: Attempt | None) -> int:
        """The attempt itself, through the request's writer: fetch, verify."""
        writer = request.writer
        try:
            try:
                if attempt is not None:
                    # The rest of an attempt a multiplexing backend began: same clock, on a
                    # worker thread; it holds a host slot, so it does not wait for room either.
                    size = attempt()
                else:
                    self.begin_attempt(request)
                    size = self.fetch(request)
            finally:
                writer.close()
        except PipelineInterrupted:
            if self.stop_event.is_set() or not writer.timed_out:
                raise
            raise writer.timeout_error() from None
        except OSError as exc:
            full = disk_full_error(exc)
            if full is None:
                raise
            self._after_disk_full(request.file_data, request.destination)
            raise full from exc
        return self.verify(request.file_data, writer, size)

    def _after_disk_full(self, file_data: FileData, part: str) -> None:
        """Free the partial file and wait for the files already downloaded to be processed.

        Sleeping the backoff alone would try again into the same full disk:
        the room comes back as processing discards cached files.
        """
        self.cache.discard(Path(part))
        writer = self._writer_of(part)
        if writer is not None:
            writer.start_over()
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "no space left on device while writing %s: waiting for the cached files "
                "to be processed",
                shown_url(file_data.url),
            )
        self.cache.budget.wait_drained(self.stop_event, self.settings.retry_backoff_max)

    def _retry(self, request: DownloadRequest, first: TransientDownloadError) -> int:
        """Attempts 2 to max_retries + 1, after the first one failed with ``first``.

        The first attempt runs outside tenacity: building and driving a
        ``Retrying`` costs more than a whole small download, and most files
        succeed at once.
        """
        file_data = request.file_data
        remaining = self.settings.max_retries
        if remaining == 0:
            raise first
        if self.stop_event.is_set():
            raise PipelineInterrupted("run stopped before the download finished") from first
        delay = self._delay(first, 1)
        self._log_retry(file_data, 1, delay, first)
        self._sleep(delay)
        # Imported here: most runs never retry, and tenacity costs start-up time.
        import tenacity

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientDownloadError),
            stop=(
                tenacity.stop_after_attempt(remaining)
                | tenacity.stop_when_event_set(self.stop_event)
            ),
            wait=self._wait_seconds,
            sleep=self._sleep,
            before_sleep=self._log_tenacity_retry,
            reraise=True,
        )
        try:
            size: int = retrying(self._attempt, request)
        except TransientDownloadError as exc:
            attempts = 1 + retrying.statistics.get("attempt_number", 0)
            if self.stop_event.is_set() and attempts <= remaining:
                # The stop, not the retry limit, ended the attempts: report an interrupt.
                raise PipelineInterrupted("run stopped before the download finished") from exc
            raise
        return size

    def download(
        self,
        sequence: int,
        file_data: FileData,
        attempt: Attempt | None = None,
        failure: TransientDownloadError | None = None,
        slot: HostSlot | None = None,
    ) -> int:
        """Download entry ``sequence``; set ``file_data.local_path`` and return the size.

        The first attempt is ``downloader.fetch``, or ``attempt()`` when given
        (the rest of an attempt a multiplexing backend handed over); with
        ``failure``, the first attempt was made elsewhere and failed so.
        ``slot``: the host slot taken for the first attempt (given back when
        it ends); later attempts take their own.
        Raises the last :class:`DownloadError` when every attempt failed, or
        :class:`PipelineInterrupted` when the run was stopped meanwhile.
        """
        try:
            target = self.cache.target_for(sequence, file_data)
        except BaseException:
            if slot is not None:
                self.hosts.forget(slot)
            raise
        part_path = self.cache.part_path(target)
        part = os.fspath(part_path)
        try:
            try:
                # A loop that could not wait for room in the cache: the file goes on here.
                if failure is not None and not isinstance(failure, RoomWanted):
                    if slot is not None:
                        self.hosts.forget(slot)
                    self.record_answer(file_data, self._writer_of(part), failure)
                    if isinstance(failure, DiskFullError):
                        self._after_disk_full(file_data, part)
                    raise failure
                try:
                    request = self.request(file_data, part)
                except BaseException:
                    if slot is not None:
                        self.hosts.forget(slot)
                    raise
                size = self._attempt(request, attempt, slot)
            except TransientDownloadError as first:
                size = self._retry(self.request(file_data, part), first)
            self.cache.commit(part_path, target)
        except BaseException:
            self.forget(part)
            self.cache.discard(part_path)
            raise
        self.forget(part)
        self.cache.budget.complete(part, str(target), size)
        file_data.local_path = target
        return size
