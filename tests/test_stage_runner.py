"""StageRunner: the stages of a run inside one worker process, fed batch by batch.

Driven directly, as a distributed executor's worker drives it, over real
HTTP to a loopback server.  The processors are in
``tests/plugin_modules/executor_plugins.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from download_pipeline_processor import FileData
from download_pipeline_processor._registry import PluginRegistry
from download_pipeline_processor.backend import DownloadFeed, DownloadJob
from download_pipeline_processor.builtins import RequestsDownloader
from download_pipeline_processor.errors import PipelineInterrupted, RemoteProcessingError
from download_pipeline_processor.executor import StageSpec
from download_pipeline_processor.plan import plan_run
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.stage_runner import StageRunner, close_runner, runner_for
from download_pipeline_processor.testing import FileServer, leftover_files, make_plugin_manager

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"

SpecFactory = Callable[..., StageSpec]
RunnerFactory = Callable[..., StageRunner]


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The seam tests' processors, with their class-wide counters reset."""
    monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
    module = importlib.import_module("executor_plugins")
    module.CountingProcessor.built = 0
    module.SlowProcessor.started.clear()
    module.SlowProcessor.release.clear()
    yield module
    # A slow processor still waiting must not outlive the test.
    module.SlowProcessor.release.set()


@pytest.fixture
def make_spec(cache_root: Path) -> SpecFactory:
    """A stage spec from plan_run for ``processor``, caching under the test's cache root."""

    def factory(processor: Any = "checksum", **settings: Any) -> StageSpec:
        settings.setdefault("retry_backoff", 0.0)
        settings.setdefault("download_cache", cache_root)
        plan = plan_run(
            processor,
            registry=PluginRegistry(make_plugin_manager()),
            settings=PipelineSettings(**settings),
        )
        return plan.stage_spec

    return factory


@pytest.fixture
def start_runner(make_spec: SpecFactory) -> Iterator[RunnerFactory]:
    """Starts a runner from ``make_spec``'s arguments; each is stopped after the test."""
    made: list[StageRunner] = []

    def factory(*args: Any, **settings: Any) -> StageRunner:
        runner = StageRunner(make_spec(*args, **settings))
        made.append(runner)
        return runner

    yield factory
    for runner in made:
        runner.close(stop=True, timeout=30)


@pytest.fixture
def token() -> Iterator[str]:
    """A run token for runner_for; its runner is closed after the test."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    close_runner(name, stop=True, timeout=30)


def serve(server: FileServer, count: int, prefix: str = "f", **route: Any) -> list[FileData]:
    """Serve ``count`` distinct bodies; their entries, in order."""
    return [
        FileData(server.add(f"/{prefix}{i}.bin", f"{prefix}{i} ".encode() * (i + 1), **route))
        for i in range(count)
    ]


def sha256_of(server_entry: FileData) -> str:
    name = server_entry.id.removesuffix(".bin")
    index = int(name.lstrip("abcdefghijklmnopqrstuvwxyz"))
    return hashlib.sha256(f"{name} ".encode() * (index + 1)).hexdigest()


def run_batch(runner: StageRunner, entries: list[FileData], timeout: float = 60) -> list[Any]:
    """``runner.run_batch(entries)``; fail the test instead of hanging if it never returns."""
    got: list[list[Any]] = []
    thread = threading.Thread(target=lambda: got.append(runner.run_batch(entries)), daemon=True)
    thread.start()
    thread.join(timeout)
    if not got:
        # The daemon thread is left behind; the start_runner fixture stops the runner.
        pytest.fail(f"run_batch still running {timeout:.0f} s after it was called")
    return got[0]


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_folders(root: Path) -> list[Path]:
    """The runs' private folders under a cache root."""
    return sorted(root.glob("run-*")) if root.exists() else []


class HoldsItsJobs(RequestsDownloader):
    """A multiplexing downloader: takes every job it may before it finishes the ones it holds.

    As an event loop does with transfers in flight, it asks for more with
    ``take()`` (no wait) while it holds jobs; then downloads them over HTTP.
    """

    def fetch_many(self, feed: DownloadFeed) -> None:
        held: list[DownloadJob] = []
        while True:
            while (job := feed.take(wait=not held)) is not None:
                held.append(job)
            if not held:
                return
            for job in held:
                feed.done(job, self.fetch(job.request))
            held.clear()


class TestBatches:
    """run_batch gives every entry back once, in order, with its result."""

    def test_multiplexing_downloader_batch_after_batch(
        self, file_server: FileServer, make_spec: SpecFactory
    ) -> None:
        """A downloader asking for more while it holds jobs hears "not now", not the next batch."""
        spec = replace(make_spec(download_workers=8), downloader_class=HoldsItsJobs)
        runner = StageRunner(spec)
        try:
            for prefix in ("a", "b", "c"):
                entries = serve(file_server, 5, prefix=prefix)
                outcomes = run_batch(runner, entries, timeout=20)
                assert [file_data.error for file_data, _ in outcomes] == [None] * 5
                assert [result["sha256"] for _, result in outcomes] == [
                    sha256_of(e) for e in entries
                ]
        finally:
            runner.close(stop=True, timeout=30)

    def test_every_entry_once_in_order(
        self, file_server: FileServer, start_runner: RunnerFactory
    ) -> None:
        """Entries finishing out of order come back in the batch's order, each with its sha256."""
        # The first files are served slowest, so they finish last.
        entries = [
            FileData(file_server.add(f"/f{i}.bin", f"f{i} ".encode() * (i + 1), delay=delay))
            for i, delay in enumerate([0.3, 0.2, 0.1] + [0.0] * 9)
        ]
        runner = start_runner(download_workers=4, processing_limit=3)
        outcomes = run_batch(runner, entries)
        assert [file_data.id for file_data, _ in outcomes] == [e.id for e in entries]
        assert all(file_data.error is None for file_data, _ in outcomes)
        assert [result["sha256"] for _, result in outcomes] == [sha256_of(e) for e in entries]
        assert file_server.request_count() == len(entries)

    def test_processors_built_once_per_runner(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        start_runner: RunnerFactory,
    ) -> None:
        """Three batches through one runner build its processor once, not once per batch."""
        runner = start_runner("executor_plugins:CountingProcessor", processing_limit=1)
        for prefix in ("a", "b", "c"):
            entries = serve(file_server, 4, prefix)
            outcomes = run_batch(runner, entries)
            assert [result for _, result in outcomes] == [
                len(f"{prefix}0 ") * (i + 1) for i in range(4)
            ]
        assert plugins.CountingProcessor.built == 1

    def test_two_batches_at_once(
        self, file_server: FileServer, start_runner: RunnerFactory
    ) -> None:
        """Two threads running a batch each at the same time both get all their own entries."""
        runner = start_runner(download_workers=3, processing_limit=2)
        batches = {prefix: serve(file_server, 15, prefix) for prefix in ("a", "b")}
        got: dict[str, list[tuple[FileData, Any]]] = {}
        threads = [
            threading.Thread(
                target=lambda p=prefix: got.__setitem__(p, runner.run_batch(batches[p])),
                daemon=True,  # a runner that never answers must not hang the test run
            )
            for prefix in batches
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(got) == ["a", "b"]
        for prefix, entries in batches.items():
            assert [fd.id for fd, _ in got[prefix]] == [e.id for e in entries]
            assert [r["sha256"] for _, r in got[prefix]] == [sha256_of(e) for e in entries]


class TestFailures:
    """Failures come back on the entries, ready to cross to another process."""

    def test_processor_that_cannot_be_built(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        start_runner: RunnerFactory,
    ) -> None:
        """Every entry fails at stage process naming the set-up error; nothing is requested."""
        runner = start_runner("executor_plugins:BrokenSetUpProcessor")
        outcomes = run_batch(runner, serve(file_server, 3))
        assert len(outcomes) == 3
        for file_data, result in outcomes:
            assert result is None
            assert file_data.error is not None
            assert file_data.error.stage == "process"
            message = str(file_data.error.error)
            assert "cannot be set up on this worker" in message
            assert "model weights missing" in message
        assert file_server.request_log == []

    def test_unpicklable_exception_comes_back_as_text(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        start_runner: RunnerFactory,
    ) -> None:
        """A processor's exception that cannot be pickled comes back as RemoteProcessingError."""
        runner = start_runner("executor_plugins:UnpicklableErrorProcessor")
        entries = serve(file_server, 2)
        outcomes = run_batch(runner, entries)
        for (file_data, _), entry in zip(outcomes, entries):
            assert file_data.error is not None
            assert file_data.error.stage == "process"
            assert isinstance(file_data.error.error, RemoteProcessingError)
            assert str(file_data.error.error) == f"UnpicklableError: bad bytes in {entry.id}"
        back = pickle.loads(pickle.dumps(outcomes))  # noqa: S301 - bytes this test made
        assert [str(fd.error.error) for fd, _ in back] == [  # type: ignore[union-attr]
            str(fd.error.error)
            for fd, _ in outcomes  # type: ignore[union-attr]
        ]

    def test_unpicklable_result_fails_its_file_alone(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        start_runner: RunnerFactory,
    ) -> None:
        """An unpicklable result fails its own file at stage process; the batch still crosses."""
        runner = start_runner("executor_plugins:UnpicklableResultProcessor")
        entries = serve(file_server, 3)
        outcomes = run_batch(runner, entries)
        by_id = {file_data.id: (file_data, result) for file_data, result in outcomes}
        failed, result = by_id[entries[1].id]
        assert result is None
        assert failed.error is not None
        assert failed.error.stage == "process"
        assert "result cannot be sent back" in str(failed.error.error)
        for entry in (entries[0], entries[2]):
            file_data, result = by_id[entry.id]
            assert file_data.error is None
            assert result == {"id": entry.id}
        pickle.loads(pickle.dumps(outcomes))  # noqa: S301 - bytes this test made


class TestClosing:
    """A runner winds down on close, or by itself when no batch comes, and leaves no files."""

    def test_stop_interrupts_the_pending_batch(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        start_runner: RunnerFactory,
    ) -> None:
        """close(stop=True) while a processor works: the batch returns, its entries interrupted."""
        runner = start_runner("executor_plugins:SlowProcessor", processing_limit=1, stop_grace=0.2)
        got: list[list[tuple[FileData, Any]]] = []
        batch = threading.Thread(
            target=lambda: got.append(runner.run_batch(serve(file_server, 3))), daemon=True
        )
        batch.start()
        assert plugins.SlowProcessor.started.wait(20)
        runner.close(stop=True, timeout=20)
        batch.join(20)
        assert not batch.is_alive()
        (outcomes,) = got
        assert len(outcomes) == 3
        for file_data, result in outcomes:
            assert result is None
            assert file_data.error is not None
            assert isinstance(file_data.error.error, PipelineInterrupted)

    def test_idle_timeout_closes_and_runner_for_builds_anew(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        make_spec: SpecFactory,
        cache_root: Path,
        token: str,
    ) -> None:
        """With no batch for idle_timeout the runner closes its stages; the next use builds anew."""
        spec = make_spec("executor_plugins:CountingProcessor", processing_limit=1)
        runner = runner_for(token, spec, idle_timeout=0.5)
        assert runner_for(token, spec, idle_timeout=0.5) is runner
        assert [r for _, r in run_batch(runner, serve(file_server, 2, "a"))] == [3, 6]
        assert runner.closed.wait(20)
        # The stages set ``closed`` first (no new batch gets in), then clean up.
        assert wait_for(lambda: run_folders(cache_root) == [])
        assert plugins.CountingProcessor.built == 1
        again = runner_for(token, spec, idle_timeout=0.5)
        assert again is not runner
        assert [r for _, r in run_batch(again, serve(file_server, 2, "b"))] == [3, 6]
        assert plugins.CountingProcessor.built == 2

    def test_runner_for_keeps_one_runner_per_run(
        self,
        plugins: ModuleType,
        file_server: FileServer,
        make_spec: SpecFactory,
        token: str,
    ) -> None:
        """runner_for gives one run's batches the same runner; close_runner closes it."""
        spec = make_spec("executor_plugins:CountingProcessor", processing_limit=1)
        runner = runner_for(token, spec)
        for prefix in ("a", "b", "c"):
            assert runner_for(token, spec) is runner
            run_batch(runner, serve(file_server, 2, prefix))
        assert plugins.CountingProcessor.built == 1
        assert close_runner(token) is True
        assert runner.closed.is_set()
        assert close_runner(token) is False

    def test_private_cache_folder_gone_after_close(
        self,
        file_server: FileServer,
        cache_root: Path,
        start_runner: RunnerFactory,
    ) -> None:
        """The runner downloads into a private folder of the cache root, removed at close."""
        runner = start_runner()
        run_batch(runner, serve(file_server, 3))
        assert len(run_folders(cache_root)) == 1
        runner.close(timeout=20)
        assert runner.closed.is_set()
        assert run_folders(cache_root) == []
        assert leftover_files(cache_root) == []
