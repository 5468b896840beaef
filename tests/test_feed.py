"""The feed contract of Downloader.fetch_many (downloader.py), as RunFeed (feed.py) keeps it.

Each test registers a small multiplexing backend through ``register_downloaders``
and runs the real pipeline with it.  The backends write bodies themselves, so
no URL is contacted; what is pinned is the framework's side: the worker limit
counting handed-off jobs, retries through ``fetch()``, jobs given back twice,
and backends that return or raise while they still hold jobs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import BaseProcessor, Downloader, FileData, hookimpl
from download_pipeline_processor._cache import PART_SUFFIX
from download_pipeline_processor.backend import (
    DownloadFeed,
    DownloadJob,
    DownloadRequest,
    drives_many,
)
from download_pipeline_processor.errors import PermanentDownloadError, TransientDownloadError
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import PipelineOutcome, leftover_files, run_pipeline
from dpp_fast.fast import FastDownloader

#: Generous bound on a run that must not hang; the runs themselves take well under a second.
HANG = 10.0


def files(count: int) -> list[dict[str, Any]]:
    """Entries whose URLs are never contacted: the backends under test write the bodies."""
    return [{"id": f"f{i}", "url": f"http://127.0.0.1:9/f{i}.bin"} for i in range(count)]


def body(file_data: FileData) -> bytes:
    return f"body of {file_data.id}".encode()


def write(job: DownloadJob) -> int:
    """Do a job's download: write its body to the temporary name; return the size."""
    data = body(job.file_data)
    job.destination.write_bytes(data)
    return len(data)


def run_backend(
    backend: type[Downloader],
    entries: list[dict[str, Any]],
    cache_root: Path,
    processor: Any = "checksum",
    **settings: Any,
) -> PipelineOutcome:
    """Run the pipeline with ``backend`` registered by a plugin and selected by name."""

    class Plugin:
        __name__ = "feed-test-downloader"

        @hookimpl
        def register_downloaders(self, register: Any) -> None:
            register("under-test", backend)

    began = time.monotonic()
    outcome = run_pipeline(
        entries,
        processor,
        plugins=[Plugin()],
        downloader="under-test",
        download_cache=cache_root,
        **settings,
    )
    assert time.monotonic() - began < HANG
    return outcome


def reported_ids(outcome: PipelineOutcome) -> Counter[str]:
    """How often each entry reached the post-processor."""
    return Counter(fd.id for _, fd in outcome.outcomes)


def errors(outcome: PipelineOutcome) -> dict[str, BaseException]:
    """The download error of every failed file, by id."""
    found = {}
    for file_data in outcome.failures:
        assert file_data.error is not None
        assert file_data.error.stage == "download"
        found[file_data.id] = file_data.error.error
    return found


class TakeAll(Downloader):
    """Downloads every job itself, one at a time, as the feed gives them."""

    def fetch_many(self, feed: DownloadFeed) -> None:
        while (job := feed.take(wait=True)) is not None:
            feed.done(job, write(job))


class TestTakeAndDone:
    """The plain contract: take jobs, write them, give them back done."""

    def test_only_backends_with_fetch_many(self) -> None:
        """drives_many tells a multiplexing backend from a fetch()-only one."""

        class FetchOnly(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                return 0

        assert drives_many(TakeAll(PipelineSettings()))
        assert not drives_many(FetchOnly(PipelineSettings()))

    def test_a_subclass_with_its_own_fetch_runs_on_worker_threads(self) -> None:
        """An inherited loop would go around the subclass's fetch() (URL signing, say)."""

        class Signing(FastDownloader):
            def fetch(self, request: DownloadRequest) -> int:
                return super().fetch(request)

        class SigningLoop(Signing):
            def fetch_many(self, feed: DownloadFeed) -> None:
                super().fetch_many(feed)

        settings = PipelineSettings()
        assert drives_many(FastDownloader(settings))
        assert not drives_many(Signing(settings))
        assert drives_many(SigningLoop(settings))  # it says its loop fits its fetch

    def test_waiting_while_holding_jobs_raises(self, cache_root: Path) -> None:
        """take(wait=True) with jobs out would wait for slots only the caller can free."""
        raised: list[str] = []

        class Impatient(Downloader):
            def fetch_many(self, feed: DownloadFeed) -> None:
                job = feed.take()
                assert job is not None
                try:
                    feed.take(wait=True)
                except RuntimeError as exc:
                    raised.append(str(exc))
                feed.done(job, write(job))
                while (job := feed.take(wait=True)) is not None:
                    feed.done(job, write(job))

        outcome = run_backend(Impatient, files(3), cache_root, download_workers=1)
        assert raised
        assert "while jobs are out" in raised[0]
        assert outcome.exit_code == 0
        assert reported_ids(outcome) == Counter({f"f{i}": 1 for i in range(3)})

    def test_done_renames_and_counts(self, cache_root: Path) -> None:
        """Jobs given back with done() reach the processor under their final name, once each."""
        seen: dict[str, tuple[str, bytes]] = {}

        class Reading(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                path = file_data.local_path
                assert path is not None
                seen[file_data.id] = (path.name, path.read_bytes())

        outcome = run_backend(TakeAll, files(20), cache_root, processor=Reading)
        assert outcome.exit_code == 0
        assert reported_ids(outcome) == Counter({f"f{i}": 1 for i in range(20)})
        assert {key: data for key, (_, data) in seen.items()} == {
            f"f{i}": f"body of f{i}".encode() for i in range(20)
        }
        assert not any(name.endswith(PART_SUFFIX) for name, _ in seen.values())
        assert outcome.summary.bytes_downloaded == sum(len(f"body of f{i}") for i in range(20))
        assert leftover_files(cache_root) == []


class TestGivingBack:
    """Every job is given back once; twice is the backend's bug, raised in the backend."""

    def test_twice_raises(self, cache_root: Path) -> None:
        """Giving back a job already given back raises RuntimeError and changes nothing."""
        raised: list[str] = []

        class Twice(Downloader):
            def fetch_many(self, feed: DownloadFeed) -> None:
                while (job := feed.take(wait=True)) is not None:
                    feed.done(job, write(job))
                    for again in (
                        lambda: feed.done(job, 0),
                        lambda: feed.failed(job, TransientDownloadError("late")),
                        lambda: feed.hand_off(job),
                    ):
                        try:
                            again()
                        except RuntimeError as exc:
                            raised.append(str(exc))

        outcome = run_backend(Twice, files(5), cache_root)
        assert len(raised) == 15
        assert all("given back twice" in message for message in raised)
        assert outcome.exit_code == 0
        assert reported_ids(outcome) == Counter({f"f{i}": 1 for i in range(5)})

    def test_returning_while_holding_jobs(self, cache_root: Path) -> None:
        """Jobs a backend still holds when it returns fail; the run ends, exit 1."""

        class Forgetful(Downloader):
            def fetch_many(self, feed: DownloadFeed) -> None:
                taken = [feed.take(), feed.take(), feed.take()]
                assert all(job is not None for job in taken)
                first = taken[0]
                assert first is not None
                feed.done(first, write(first))

        outcome = run_backend(Forgetful, files(3), cache_root, download_workers=4)
        assert outcome.exit_code == 1
        failed = errors(outcome)
        assert sorted(failed) == ["f1", "f2"]
        for error in failed.values():
            assert isinstance(error, RuntimeError)
            assert "returned without finishing" in str(error)
        assert reported_ids(outcome) == Counter({"f0": 1, "f1": 1, "f2": 1})
        assert leftover_files(cache_root) == []

    def test_raising_backend(self, cache_root: Path) -> None:
        """A backend that raises: the jobs it held fail with its error; the rest are kept."""
        broke = ValueError("backend broke")
        release = threading.Event()

        def slow_attempt(job: DownloadJob) -> Any:
            def attempt() -> int:
                release.wait(HANG)
                return write(job)

            return attempt

        class Raising(Downloader):
            def fetch_many(self, feed: DownloadFeed) -> None:
                done, handed, held = feed.take(), feed.take(), feed.take()
                assert done is not None
                assert handed is not None
                assert held is not None
                feed.done(done, write(done))
                feed.hand_off(handed, slow_attempt(handed))
                release.set()  # the hand-off is likely still running when the backend raises
                raise broke

        outcome = run_backend(Raising, files(3), cache_root, download_workers=4)
        assert outcome.exit_code == 1
        assert errors(outcome) == {"f2": broke}
        assert reported_ids(outcome) == Counter({"f0": 1, "f1": 1, "f2": 1})
        assert leftover_files(cache_root) == []

    @pytest.mark.parametrize("raises", [False, True], ids=["returns", "raises"])
    def test_entries_never_taken_are_not_lost(self, cache_root: Path, raises: bool) -> None:
        """A backend that stops early: the entries it never took still reach the post-processor."""

        fetched: list[str] = []

        class Quitter(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                file_data, destination = request.file_data, Path(request.destination)
                fetched.append(file_data.id)
                destination.write_bytes(body(file_data))
                return len(body(file_data))

            def fetch_many(self, feed: DownloadFeed) -> None:
                job = feed.take()
                assert job is not None
                feed.done(job, write(job))
                if raises:
                    raise ValueError("backend broke")

        outcome = run_backend(Quitter, files(10), cache_root, download_workers=2)
        assert reported_ids(outcome) == Counter({f"f{i}": 1 for i in range(10)})
        # The rest went through fetch() on worker threads, and all of them arrived.
        assert sorted(fetched) == sorted(f"f{i}" for i in range(1, 10))
        assert outcome.exit_code == 0
        assert outcome.summary.succeeded == 10


class TestRetriesAndHandOffs:
    """What a backend gives back goes on through fetch() on the feed's helper threads."""

    def test_hand_off_without_attempt_uses_fetch(self, cache_root: Path) -> None:
        """hand_off(job) runs the backend's own fetch() once per job, off the backend's thread."""
        threads: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        lock = threading.Lock()

        class Delegating(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                file_data, destination = request.file_data, Path(request.destination)
                with lock:
                    calls[file_data.id] += 1
                    threads[threading.current_thread().name.rstrip("0123456789")] += 1
                destination.write_bytes(body(file_data))
                return len(body(file_data))

            def fetch_many(self, feed: DownloadFeed) -> None:
                while (job := feed.take(wait=True)) is not None:
                    feed.hand_off(job)

        outcome = run_backend(Delegating, files(12), cache_root, download_workers=3)
        assert outcome.exit_code == 0
        assert calls == Counter({f"f{i}": 1 for i in range(12)})
        assert set(threads) == {"dpp-download-helper-"}
        assert leftover_files(cache_root) == []

    def test_failures_retried_through_fetch(self, cache_root: Path) -> None:
        """A transient failure is retried by fetch() up to max_retries; a permanent one is not."""
        calls: Counter[str] = Counter()
        lock = threading.Lock()

        class Failing(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                file_data, destination = request.file_data, Path(request.destination)
                with lock:
                    calls[file_data.id] += 1
                if file_data.id == "f1":
                    raise TransientDownloadError("still down")
                destination.write_bytes(body(file_data))
                return len(body(file_data))

            def fetch_many(self, feed: DownloadFeed) -> None:
                while (job := feed.take(wait=True)) is not None:
                    if job.file_data.id == "f2":
                        feed.failed(job, PermanentDownloadError("gone for good"))
                    elif job.file_data.id == "f3":
                        feed.hand_off(job, broken_attempt)
                    else:
                        feed.failed(job, TransientDownloadError("first attempt failed"))

        def broken_attempt() -> int:
            raise TransientDownloadError("the handed-off attempt failed")

        outcome = run_backend(Failing, files(4), cache_root, max_retries=2)
        assert outcome.exit_code == 1
        # f0: the first retry succeeds; f1: both retries fail; f2: never retried;
        # f3: its handed-off attempt failed, and the first retry succeeds.
        assert calls == Counter({"f0": 1, "f1": 2, "f3": 1})
        failed = errors(outcome)
        assert sorted(failed) == ["f1", "f2"]
        assert str(failed["f1"]) == "still down"
        assert str(failed["f2"]) == "gone for good"
        assert outcome.summary.succeeded == 2

    def test_no_retries_fails_at_once(self, cache_root: Path) -> None:
        """With max_retries=0 a transient failure of the first attempt is final: no fetch()."""
        calls: list[str] = []

        class Failing(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                calls.append(request.file_data.id)
                return 0

            def fetch_many(self, feed: DownloadFeed) -> None:
                while (job := feed.take(wait=True)) is not None:
                    feed.failed(job, TransientDownloadError("first attempt failed"))

        outcome = run_backend(Failing, files(3), cache_root, max_retries=0)
        assert outcome.exit_code == 1
        assert calls == []
        assert {str(error) for error in errors(outcome).values()} == {"first attempt failed"}


class TestLimit:
    """take() never lets more than download_workers jobs out, handed-off ones included."""

    def test_handed_off_jobs_hold_their_slots(self, cache_root: Path) -> None:
        """Three workers: three jobs, then none while their hand-offs run, never four at once."""
        workers = 3
        gate = threading.Event()
        lock = threading.Lock()
        outstanding = [0]  # taken, attempt not finished
        most = [0]
        first_round: list[DownloadJob] = []
        while_running: list[DownloadJob | None] = []

        def attempt_for(job: DownloadJob, wait: bool) -> Any:
            def attempt() -> int:
                if wait:
                    gate.wait(HANG)
                else:
                    time.sleep(0.005)
                size = write(job)
                with lock:
                    outstanding[0] -= 1
                return size

            return attempt

        def taken(job: DownloadJob) -> None:
            with lock:
                outstanding[0] += 1
                most[0] = max(most[0], outstanding[0])

        class Greedy(Downloader):
            def fetch_many(self, feed: DownloadFeed) -> None:
                while (job := feed.take(wait=False)) is not None:
                    taken(job)
                    first_round.append(job)
                for job in first_round:
                    feed.hand_off(job, attempt_for(job, wait=True))
                while_running.append(feed.take(wait=False))
                gate.set()
                while (job := feed.take(wait=True)) is not None:
                    taken(job)
                    feed.hand_off(job, attempt_for(job, wait=False))

        outcome = run_backend(Greedy, files(20), cache_root, download_workers=workers)
        assert outcome.exit_code == 0
        assert len(first_round) == workers
        assert while_running == [None]
        assert most[0] == workers
        assert reported_ids(outcome) == Counter({f"f{i}": 1 for i in range(20)})
