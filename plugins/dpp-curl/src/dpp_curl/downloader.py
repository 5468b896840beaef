"""The ``curl`` downloader: every file of a run on libcurl, from one thread.

A run drives it through :meth:`CurlDownloader.fetch_many`: one thread keeps up
to ``--download-workers`` transfers in one libcurl multi handle (plain http,
https, HTTP/2 streams multiplexed on shared connections, proxies, redirects),
with no thread per transfer.  :meth:`CurlDownloader.fetch` makes one blocking
attempt on the calling thread with the same engine; the framework uses it for
retries, and subclasses that override it (to sign URLs, say) run on worker
threads with it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.errors import PipelineInterrupted, TransientDownloadError
from download_pipeline_processor.settings import PipelineSettings

from .config import CurlConfig
from .engine import Engine
from .transfer import Transfer

if TYPE_CHECKING:
    from download_pipeline_processor.backend import DownloadFeed, DownloadRequest

__all__ = ["STOP_POLL", "THREAD_CONNECTIONS", "CurlDownloader"]


#: How often a blocking :meth:`CurlDownloader.fetch` looks at its stop flag, in seconds.
STOP_POLL = 0.1
#: Connections each worker thread's engine keeps for reuse (retries are few).
THREAD_CONNECTIONS = 4


class _ThreadEngine(threading.local):
    engine: Engine | None = None


class CurlDownloader(Downloader):
    """Downloads over libcurl (pycurl): HTTP/1.1 and HTTP/2, with the pipeline's rules."""

    def __init__(self, settings: PipelineSettings) -> None:
        super().__init__(settings)
        self.config = CurlConfig.from_settings(settings)
        self._local = _ThreadEngine()
        self._engines: list[Engine] = []
        self._lock = threading.Lock()

    def _thread_engine(self) -> Engine:
        engine = self._local.engine
        if engine is None:
            engine = self._local.engine = Engine(self.config, THREAD_CONNECTIONS)
            with self._lock:
                self._engines.append(engine)
        return engine

    def fetch(self, request: DownloadRequest) -> int:
        """One attempt on the calling thread, redirects followed, the body through its writer."""
        transfer = Transfer(self.config, request)
        engine = self._thread_engine()
        if not engine.start(transfer):
            raise transfer.error  # type: ignore[misc]  # start() failing sets it
        stop = request.stop
        try:
            while not transfer.finished:
                if stop.is_set():
                    engine.abort(transfer, stop.error())
                engine.step(STOP_POLL)
        except BaseException as exc:
            if not transfer.finished:
                engine.abort(transfer, exc)
            raise
        if transfer.error is not None:
            raise transfer.error
        return transfer.file_size

    def fetch_many(self, feed: DownloadFeed) -> None:
        """Every job of ``feed`` in one multi handle, up to ``--download-workers`` at once."""
        engine = Engine(self.config, max(self.settings.download_workers, THREAD_CONNECTIONS))
        try:
            while True:
                if feed.should_stop.is_set():
                    stopped = PipelineInterrupted("run stopped during the download")
                    self._give_back(feed, engine.abort_all(stopped))
                    return
                while (job := feed.take(wait=not engine.busy)) is not None:
                    transfer = Transfer(self.config, job.request, job)
                    if not engine.start(transfer):
                        self._give_back(feed, [transfer])
                if not engine.busy:
                    return
                self._give_back(feed, engine.step(feed.poll_interval))
        except BaseException as exc:
            # The files in flight are retried through fetch(), on worker threads.
            failure = TransientDownloadError(f"the download loop failed: {exc!r}")
            self._give_back(feed, engine.abort_all(failure))
            raise
        finally:
            engine.close()

    @staticmethod
    def _give_back(feed: DownloadFeed, ended: list[Transfer]) -> None:
        for transfer in ended:
            job = transfer.job
            assert job is not None, "fetch_many's transfers carry their job"
            if transfer.error is None:
                feed.done(job, transfer.file_size)
            else:
                feed.failed(job, transfer.error)

    def close(self) -> None:
        """Close the worker threads' handles and connections."""
        with self._lock:
            engines, self._engines = self._engines, []
        for engine in engines:
            engine.close()
