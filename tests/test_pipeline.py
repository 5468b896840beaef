"""The pipeline end to end, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from download_helpers import SHIPPED_DOWNLOADER_NAMES, shipped_plugin_manager
from download_pipeline_processor import (
    DOWNLOAD,
    BasePostProcessor,
    BaseProcessor,
    FileData,
    ProcessingPipeline,
    affinity,
    hookimpl,
)
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor._plugins import PluginSource
from download_pipeline_processor._registry import DOWNLOADER, PluginRegistry
from download_pipeline_processor.errors import (
    PipelineInterrupted,
    PluginOptionError,
    ProcessingTimeoutError,
)
from download_pipeline_processor.testing import (
    CollectingPostProcessor,
    FileServer,
    leftover_files,
    make_plugin_manager,
    run_pipeline,
)


def _body(index: int, size: int = 2048) -> bytes:
    return (f"file {index} ".encode() * size)[:size]


class FailingProcessor(BaseProcessor):
    """Fails on files whose id starts with 'bad'."""

    def process(self, file_data: FileData) -> Any:
        if file_data.id.startswith("bad"):
            raise ValueError(f"cannot process {file_data.id}")
        assert file_data.local_path is not None
        return file_data.local_path.stat().st_size


class TestEndToEnd:
    """Files go through download, processing and post-processing."""

    def test_hundred_files_checksummed(self, file_server: FileServer, cache_root: Path) -> None:
        """100 served files give 100 correct sha256 results, exit 0 and an empty cache."""
        expected = {}
        files = []
        for index in range(100):
            body = _body(index, 1000 + index * 37)
            files.append({"id": f"f{index}", "url": file_server.add(f"/f{index}.bin", body)})
            expected[f"f{index}"] = hashlib.sha256(body).hexdigest()
        outcome = run_pipeline(files, "checksum", download_cache=cache_root, download_workers=8)
        assert outcome.exit_code == 0
        got = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
        assert got == expected
        assert len(outcome.outcomes) == 100
        assert leftover_files(cache_root) == []
        assert outcome.summary.succeeded == 100
        assert outcome.summary.bytes_downloaded == sum(1000 + i * 37 for i in range(100))

    def test_failures_are_isolated(self, file_server: FileServer, cache_root: Path) -> None:
        """A flaky file succeeds, an always-500 and a 404 fail alone, the rest succeed."""
        files = [
            {"id": "flaky", "url": file_server.add("/flaky", b"ok", statuses=(500, 200))},
            {"id": "down", "url": file_server.add("/down", b"", statuses=(500,))},
            {"id": "gone", "url": file_server.url("/gone")},
        ] + [{"id": f"ok{i}", "url": file_server.add(f"/ok{i}", _body(i))} for i in range(5)]
        outcome = run_pipeline(files, "checksum", download_cache=cache_root, max_retries=3)
        assert outcome.exit_code == 1
        failed = {fd.id: fd.error for fd in outcome.failures}
        assert set(failed) == {"down", "gone"}
        assert all(error is not None and error.stage == "download" for error in failed.values())
        assert file_server.request_count("/flaky") == 2
        assert file_server.request_count("/down") == 4
        assert file_server.request_count("/gone") == 1
        assert outcome.summary.succeeded == 6
        assert outcome.summary.failed_by_stage == {"download": 2}
        assert leftover_files(cache_root) == []

    def test_processing_failure_reaches_post_processor(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A processor exception fails that file in stage 'process' and deletes its cached copy."""
        files = [
            {"id": "bad-1", "url": file_server.add("/b1", b"x")},
            {"id": "good", "url": file_server.add("/g", b"xyz")},
        ]
        outcome = run_pipeline(files, FailingProcessor, download_cache=cache_root)
        assert outcome.exit_code == 1
        (failure,) = outcome.failures
        assert failure.error is not None
        assert failure.error.stage == "process"
        assert isinstance(failure.error.error, ValueError)
        assert outcome.results == [3]
        assert leftover_files(cache_root) == []

    def test_every_file_reaches_post_processor_once(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """Successes and failures of every stage are each post-processed exactly once."""
        files = [{"id": f"f{i}", "url": file_server.add(f"/f{i}", _body(i))} for i in range(30)]
        files += [{"id": f"bad{i}", "url": file_server.add(f"/bad{i}", b"b")} for i in range(5)]
        files += [{"id": f"missing{i}", "url": file_server.url(f"/missing{i}")} for i in range(5)]
        outcome = run_pipeline(
            files, FailingProcessor, download_cache=cache_root, processing_limit=4
        )
        ids = [fd.id for _, fd in outcome.outcomes]
        assert sorted(ids) == sorted(entry["id"] for entry in files)
        assert len(ids) == len(set(ids))

    def test_extra_fields_reach_processor(self, file_server: FileServer, cache_root: Path) -> None:
        """Extra input keys are readable as attributes in the processor."""

        class LanguageProcessor(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                return file_data.language

        files = [{"url": file_server.add("/talk.mp3", b"a"), "language": "fr"}]
        outcome = run_pipeline(files, LanguageProcessor, download_cache=cache_root)
        assert outcome.results == ["fr"]
        assert outcome.outcomes[0][1].id == "talk"

    def test_programmatic_run_from_path(
        self, file_server: FileServer, cache_root: Path, tmp_path: Path
    ) -> None:
        """run() accepts a path to a JSON file and returns the exit code."""
        listing = tmp_path / "files.json"
        listing.write_text(f'[{{"url": "{file_server.add("/a.txt", b"abc")}"}}]')
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "checksum",
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
        )
        assert pipeline.run(str(listing)) == 0
        assert collector.outcomes[0][0]["size"] == 3
        assert pipeline.summary.total == 1
        assert pipeline.summary.elapsed > 0

    def test_pipeline_runs_twice(
        self, file_server: FileServer, cache_root: Path, tmp_path: Path
    ) -> None:
        """A second run() builds fresh post-processors instead of reusing closed ones."""
        report = tmp_path / "out.jsonl"
        files = [{"id": "a", "url": file_server.add("/twice", b"2")}]
        pipeline = ProcessingPipeline(
            "checksum",
            "jsonl",
            post_processor_options={"path": str(report), "append": "true"},
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
        )
        assert pipeline.run(files) == 0
        assert pipeline.run(files) == 0
        assert len(report.read_text().splitlines()) == 2


class TestPostProcessors:
    """Post-processor calling conventions and failures."""

    def test_seed_one_argument_form(self, file_server: FileServer, cache_root: Path) -> None:
        """A post_process(self, result) written for the seed still receives every result."""

        class SeedStyle(BasePostProcessor):
            def __init__(self) -> None:
                self.results: list[Any] = []

            def post_process(self, result: Any) -> None:  # type: ignore[override]
                self.results.append(result)

        seed_style = SeedStyle()
        files = [{"url": file_server.add(f"/s{i}", b"abc")} for i in range(3)]
        pipeline = ProcessingPipeline(
            "checksum", seed_style, plugin_manager=make_plugin_manager(), download_cache=cache_root
        )
        assert pipeline.run(files) == 0
        assert [result["size"] for result in seed_style.results] == [3, 3, 3]

    def test_post_processor_failure_is_recorded(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """An exception in post_process fails that file in stage 'post_process' only."""

        class Picky(BasePostProcessor):
            def __init__(self) -> None:
                self.seen: list[str] = []

            def post_process(self, result: Any, file_data: FileData) -> None:
                self.seen.append(file_data.id)
                if file_data.id == "b":
                    raise RuntimeError("disk full")

        picky = Picky()
        files = [{"id": name, "url": file_server.add(f"/{name}", b"1")} for name in "abc"]
        pipeline = ProcessingPipeline(
            "dummy", picky, plugin_manager=make_plugin_manager(), download_cache=cache_root
        )
        assert pipeline.run(files) == 1
        assert sorted(picky.seen) == ["a", "b", "c"]
        assert pipeline.summary.failed_by_stage == {"post_process": 1}

    def test_several_post_processors_get_every_result(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """Each of several post-processors receives every file, in the same order."""
        first, second = CollectingPostProcessor(), CollectingPostProcessor()
        files = [{"id": str(i), "url": file_server.add(f"/m{i}", b"m")} for i in range(10)]
        pipeline = ProcessingPipeline(
            "dummy",
            [first, second],
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
        )
        assert pipeline.run(files) == 0
        order = [fd.id for _, fd in first.outcomes]
        assert sorted(order) == sorted(str(i) for i in range(10))
        assert [fd.id for _, fd in second.outcomes] == order


class TestWorkers:
    """Threads, instances and backpressure."""

    def test_one_processor_instance_per_thread(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """processing_limit instances are built once, each used by a single thread."""

        class Recording(BaseProcessor):
            instances: ClassVar[list[Recording]] = []

            def __init__(self) -> None:
                self.threads: set[str] = set()
                Recording.instances.append(self)

            def process(self, file_data: FileData) -> Any:
                self.threads.add(threading.current_thread().name)
                time.sleep(0.005)
                return None

        files = [{"url": file_server.add(f"/r{i}", b"r")} for i in range(40)]
        outcome = run_pipeline(files, Recording, download_cache=cache_root, processing_limit=3)
        assert outcome.exit_code == 0
        assert len(Recording.instances) == 3
        threads = [instance.threads for instance in Recording.instances]
        assert all(len(names) <= 1 for names in threads)
        used = set().union(*threads)
        assert len(used) == sum(1 for names in threads if names)

    def test_full_queue_holds_downloads_back(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """While processing is blocked, downloads stop at queue size + workers + processors."""
        gate = threading.Event()

        class Blocked(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                gate.wait(10)
                return None

        files = [{"url": file_server.add(f"/q{i}", b"q")} for i in range(60)]
        result: list[int] = []
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            Blocked,
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            download_workers=2,
            download_queue_size=5,
            processing_limit=2,
        )
        runner = threading.Thread(target=lambda: result.append(pipeline.run(files)))
        runner.start()
        try:
            time.sleep(0.8)
            # 2 files being processed + 5 queued + 2 downloaded and waiting to be queued.
            assert file_server.request_count() <= 2 + 5 + 2
            assert file_server.request_count() >= 5
        finally:
            gate.set()
            runner.join(20)
        assert result == [0]
        assert len(collector.outcomes) == 60


class TestStop:
    """A stop request winds the run down cleanly."""

    def test_stop_reports_in_flight_and_counts_not_started(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """stop() returns its exit code, reports started files once and counts the rest."""
        started = threading.Event()

        class Slow(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                started.set()
                time.sleep(0.2)
                return "done"

        files = [{"id": str(i), "url": file_server.add(f"/s{i}", b"s")} for i in range(200)]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            Slow,
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            download_queue_size=4,
            processing_limit=2,
            stop_grace=1.0,
        )
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(pipeline.run(files)))
        runner.start()
        assert started.wait(10)
        pipeline.stop(143)
        runner.join(10)
        assert not runner.is_alive()
        assert codes == [143]
        summary = pipeline.summary
        ids = [fd.id for _, fd in collector.outcomes]
        assert len(ids) == len(set(ids)) == summary.succeeded + summary.failed + summary.interrupted
        # total is the input's size, whatever the stop left unread.
        assert summary.total == summary.finished + summary.interrupted + summary.not_started == 200
        assert summary.not_started > 100
        interrupted = [fd for fd in collector.outcomes if fd[1].has_error]
        assert all(isinstance(fd.error.error, PipelineInterrupted) for _, fd in interrupted)  # type: ignore[union-attr]
        assert leftover_files(cache_root) == []
        assert summary.interrupted

    def test_stuck_processor_is_abandoned_after_grace(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A processor that never returns is abandoned once the grace period ends."""
        release = threading.Event()

        class Stuck(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                release.wait(30)
                return None

        files = [{"id": str(i), "url": file_server.add(f"/t{i}", b"t")} for i in range(5)]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            Stuck,
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_limit=1,
            stop_grace=0.3,
        )
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(pipeline.run(files)))
        runner.start()
        time.sleep(0.5)
        began = time.monotonic()
        pipeline.stop()
        runner.join(10)
        release.set()
        assert codes == [130]
        assert time.monotonic() - began < 3
        stages = {fd.id: fd.error.stage for _, fd in collector.outcomes if fd.error}
        assert "process" in stages.values()
        assert leftover_files(cache_root) == []


class TestLifecycleHooks:
    """Observers see the run without changing it."""

    def test_hooks_called_with_their_arguments(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """pipeline_started, file_finished and pipeline_finished each fire with their data."""
        seen: dict[str, list[Any]] = {"started": [], "file": [], "finished": []}

        class Observer:
            __name__ = "observer"

            @hookimpl
            def pipeline_started(self, settings: Any) -> None:
                seen["started"].append(settings.download_workers)

            @hookimpl
            def file_finished(self, file_data: FileData, result: Any) -> None:
                seen["file"].append((file_data.id, result))

            @hookimpl
            def pipeline_finished(self, summary: Any) -> None:
                seen["finished"].append(summary.succeeded)

        files = [{"id": str(i), "url": file_server.add(f"/h{i}", b"h")} for i in range(4)]
        outcome = run_pipeline(
            files, "dummy", plugins=[Observer()], download_cache=cache_root, download_workers=3
        )
        assert outcome.exit_code == 0
        assert seen["started"] == [3]
        assert sorted(file_id for file_id, _ in seen["file"]) == ["0", "1", "2", "3"]
        assert seen["finished"] == [4]

    def test_failing_observer_does_not_change_the_run(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """An observer that raises is logged and the files still succeed."""

        class Broken:
            __name__ = "broken-observer"

            @hookimpl
            def file_finished(self, file_data: FileData) -> None:
                raise RuntimeError("observer bug")

        files = [{"url": file_server.add(f"/o{i}", b"o")} for i in range(3)]
        outcome = run_pipeline(files, "dummy", plugins=[Broken()], download_cache=cache_root)
        assert outcome.exit_code == 0
        assert outcome.summary.succeeded == 3

    def test_post_processor_instance_observes_run(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A post-processor with a @hookimpl pipeline_finished method gets the summary."""

        class Summarising(BasePostProcessor):
            def __init__(self) -> None:
                self.summaries: list[Any] = []

            def post_process(self, result: Any, file_data: FileData) -> None:
                pass

            @hookimpl
            def pipeline_finished(self, summary: Any) -> None:
                self.summaries.append(summary.total)

        post = Summarising()
        manager = make_plugin_manager()
        files = [{"url": file_server.add(f"/p{i}", b"p")} for i in range(2)]
        pipeline = ProcessingPipeline(
            "dummy", post, plugin_manager=manager, download_cache=cache_root
        )
        assert pipeline.run(files) == 0
        assert post.summaries == [2]
        assert post not in manager.get_plugins()


class TestSimulationAndOptions:
    """Simulated downloads and option validation."""

    def test_simulation_makes_no_request(self, file_server: FileServer, cache_root: Path) -> None:
        """Simulated downloads give processors a real placeholder file and touch no server."""
        files = [{"id": str(i), "url": file_server.url(f"/sim{i}.mp3")} for i in range(20)]
        outcome = run_pipeline(
            files,
            "checksum",
            download_cache=cache_root,
            simulate_downloads=True,
            simulate_delay=(0.0, 0.0),
        )
        assert outcome.exit_code == 0
        assert all(result["size"] > 0 for result in outcome.results)
        assert file_server.request_count() == 0
        assert leftover_files(cache_root) == []

    def test_bad_processor_option_fails_before_download(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """An unknown processor option raises before any request is made."""
        files = [{"url": file_server.add("/x", b"x")}]
        with pytest.raises(PluginOptionError, match="unknown option 'colour'"):
            run_pipeline(
                files, "checksum", processor_options={"colour": "red"}, download_cache=cache_root
            )
        assert file_server.request_count() == 0


class AffinityProcessor(BaseProcessor):
    """Returns the CPUs the thread (or worker process) it runs in may use."""

    def process(self, file_data: FileData) -> list[int]:
        return sorted(os.sched_getaffinity(0))


class AffinityPostProcessor(BasePostProcessor):
    """Records the CPUs of the post-processor thread."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, ...]] = set()
        self.results: set[tuple[int, ...]] = set()

    def post_process(self, result: Any, file_data: FileData) -> None:
        assert file_data.error is None, file_data.error
        self.results.add(tuple(result))
        self.seen.add(tuple(sorted(os.sched_getaffinity(0))))


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning is Linux-only and needs two CPUs to be seen",
)
class TestPinThreads:
    """--pin-threads keeps the pipeline's threads on one core, never process-mode workers."""

    @staticmethod
    def _run(
        cache_root: Path, **settings: Any
    ) -> tuple[set[tuple[int, ...]], set[tuple[int, ...]]]:
        post = AffinityPostProcessor()
        pipeline = ProcessingPipeline(
            AffinityProcessor,
            post,
            plugin_manager=make_plugin_manager(),
            simulate_downloads=True,
            simulate_delay=(0.0, 0.0),
            download_cache=cache_root,
            **settings,
        )
        files = [{"url": f"http://127.0.0.1:9/{i}.bin"} for i in range(20)]
        assert pipeline.run(files) == 0
        return post.results, post.seen

    def test_threads_pinned(self, cache_root: Path) -> None:
        everything = tuple(sorted(os.sched_getaffinity(0)))
        processors, posts = self._run(cache_root, pin_threads=True)
        assert processors == {(everything[0],)}
        assert posts == {(everything[0],)}
        # The caller's own thread is left alone.
        assert tuple(sorted(os.sched_getaffinity(0))) == everything

    def test_a_failed_pinning_does_not_fail_the_run(
        self, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the CPU cannot be had (it left the process's set), threads run unpinned."""

        def refused(cpu: int, allowed: Any = None) -> None:
            raise OSError(22, "Invalid argument")

        # Faked: a CPU leaving the process's set mid-run (cgroups) cannot be
        # arranged from a test; the refusal is what sched_setaffinity then says.
        monkeypatch.setattr(affinity, "pin_thread", refused)
        everything = tuple(sorted(os.sched_getaffinity(0)))
        processors, posts = self._run(cache_root, pin_threads=True)
        assert processors == {everything}
        assert posts == {everything}

    def test_off_by_default(self, cache_root: Path) -> None:
        everything = tuple(sorted(os.sched_getaffinity(0)))
        processors, posts = self._run(cache_root)
        assert processors == {everything}
        assert posts == {everything}

    def test_process_workers_keep_every_core(self, cache_root: Path) -> None:
        everything = tuple(sorted(os.sched_getaffinity(0)))
        processors, posts = self._run(
            cache_root, pin_threads=True, processing_mode="process", processing_limit=1
        )
        assert processors == {everything}
        assert posts == {(everything[0],)}


class TestDownloaderSeam:
    """Download backends come from the register_downloaders hook."""

    def test_plugin_downloader_selected_by_name(self, cache_root: Path) -> None:
        """A downloader registered by a plugin is used when settings name it."""
        from download_pipeline_processor import Downloader
        from download_pipeline_processor.backend import DownloadRequest

        class Constant(Downloader):
            def fetch(self, request: DownloadRequest) -> int:
                Path(request.destination).write_bytes(b"constant")
                return 8

        class Plugin:
            __name__ = "constant-downloader"

            @hookimpl
            def register_downloaders(self, register: Any) -> None:
                register("constant", Constant)

        outcome = run_pipeline(
            [{"url": "http://127.0.0.1:9/never-contacted"}],
            "checksum",
            plugins=[Plugin()],
            downloader="constant",
            download_cache=cache_root,
        )
        assert outcome.exit_code == 0
        assert outcome.results[0]["sha256"] == hashlib.sha256(b"constant").hexdigest()

    def test_old_fetch_signature_runs_with_one_warning(self, cache_root: Path) -> None:
        """A downloader with the old fetch(file_data, destination, should_stop) still runs.

        It is adapted once, with one DeprecationWarning, and its files are checked
        after the fact: an entry's digest still fails a wrong body.
        """
        from download_pipeline_processor import Downloader

        class OldStyle(Downloader):
            def fetch(self, file_data: FileData, destination: Path, should_stop: Any) -> int:
                assert not should_stop.is_set()
                destination.write_bytes(b"old " + file_data.id.encode())
                return 4 + len(file_data.id)

        class Plugin:
            __name__ = "old-downloader"

            @hookimpl
            def register_downloaders(self, register: Any) -> None:
                register("old", OldStyle)

        good = hashlib.sha256(b"old a").hexdigest()
        old = r"OldStyle\.fetch\(file_data, destination, should_stop\) is deprecated"
        with pytest.warns(DeprecationWarning, match=old) as seen:
            outcome = run_pipeline(
                [
                    {"id": "a", "url": "http://127.0.0.1:9/a", "sha256": good},
                    {"id": "b", "url": "http://127.0.0.1:9/b", "sha256": good},
                ],
                "checksum",
                plugins=[Plugin()],
                downloader="old",
                download_cache=cache_root,
                max_retries=0,
            )
        assert len([w for w in seen if issubclass(w.category, DeprecationWarning)]) == 1
        assert outcome.summary.succeeded == 1
        (failed,) = outcome.failures
        assert failed.id == "b"
        assert "sha256 mismatch" in str(failed.error)

    def test_unknown_downloader_is_usage_error(self, cache_root: Path) -> None:
        """Naming a downloader nobody registered fails before any work with the choices."""
        from download_pipeline_processor.errors import UnknownPluginError

        with pytest.raises(UnknownPluginError, match="available: requests, simulated"):
            run_pipeline([{"url": "http://127.0.0.1:9/x"}], downloader="nope")


class TestStopCounting:
    """Files never started are counted without reading the rest of the list."""

    def test_not_started_counted_from_the_checking_pass(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """After a stop, the summary's not_started comes from the count, not by draining."""
        from download_pipeline_processor._inputs import CheckedEntries

        url = file_server.add("/same.bin", b"s")
        started = threading.Event()

        def entries() -> Any:
            for index in range(100):
                yield {"id": str(index), "url": url}
            raise AssertionError("the list was read past what the workers took")

        class Slow(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                started.set()
                time.sleep(0.2)
                return None

        pipeline = ProcessingPipeline(
            Slow,
            CollectingPostProcessor(),
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_limit=1,
            stop_grace=0.5,
        )
        codes: list[int] = []
        runner = threading.Thread(
            target=lambda: codes.append(pipeline.run(CheckedEntries(entries(), 1000)))
        )
        runner.start()
        assert started.wait(10)
        pipeline.stop()
        runner.join(10)
        assert codes == [130]
        summary = pipeline.summary
        assert summary.total == summary.finished + summary.interrupted + summary.not_started == 1000


class TestInputChangingMidRun:
    """A list that cannot be read on the second pass ends the input, not the run."""

    def test_unreadable_rest_of_list(self, file_server: FileServer, cache_root: Path) -> None:
        """Entries read before the failure are processed; the run exits 1 with one log line."""
        from download_pipeline_processor._inputs import CheckedEntries
        from download_pipeline_processor.errors import InputError

        url = file_server.add("/ok.bin", b"ok")

        def entries() -> Any:
            for index in range(3):
                yield {"id": str(index), "url": url}
            raise InputError("files.json: malformed JSON at line 9, column 1: Expecting value")

        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "dummy", collector, plugin_manager=make_plugin_manager(), download_cache=cache_root
        )
        assert pipeline.run(CheckedEntries(entries(), 10)) == 1
        assert sorted(fd.id for _, fd in collector.outcomes) == ["0", "1", "2"]
        assert leftover_files(cache_root) == []


PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The misbehaving processors, importable by name here and in worker processes."""
    # Worker processes of process mode start with this process's sys.path.
    monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
    return importlib.import_module("faulty_plugins")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the cache, which links planted in the cache point into."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("must survive")
    return folder


def _fault_files(server: FileServer) -> list[dict[str, Any]]:
    good = [{"id": f"ok{i}", "url": server.add(f"/ok{i}.bin", _body(i, 100))} for i in range(4)]
    bad = [{"id": f"bad{i}", "url": server.add(f"/bad{i}.bin", _body(i, 50))} for i in range(2)]
    return good + bad


def _run_bounded(pipeline: ProcessingPipeline, files: list[dict[str, Any]]) -> int:
    """Run ``pipeline``, failing the test (instead of hanging it) if the run never ends."""
    codes: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            codes.append(pipeline.run(files))
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)
    if runner.is_alive():
        pipeline.stop()
        runner.join(5)
        pytest.fail("the run did not finish")
    if errors:
        raise errors[0]
    return codes[0]


def _assert_clean_end(
    collector: CollectingPostProcessor, files: list[dict[str, Any]], cache_root: Path
) -> None:
    """Every file reported exactly once, and nothing at all left in the cache root."""
    ids = [fd.id for _, fd in collector.outcomes]
    assert sorted(ids) == sorted(entry["id"] for entry in files)
    assert list(cache_root.iterdir()) == []


# A pipeline thread that dies of an exception is the failure these tests exist for.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
class TestPluginFaults:
    """Whatever plugin code or clean-up does, the run finishes and reports every file once."""

    @pytest.mark.parametrize("mode", ["thread", "process"])
    @pytest.mark.parametrize(
        "action",
        [
            "raise-base-exception",
            "raise-system-exit",
            "close-raises",
            "replace-with-folder",
            "replace-with-full-folder",
            "replace-with-link-to-file",
            "replace-with-link-to-folder",
            "delete",
            "move-out",
        ],
    )
    def test_processor_fault_touches_its_file_only(
        self,
        *,
        faulty: ModuleType,
        outside: Path,
        file_server: FileServer,
        cache_root: Path,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
        mode: str,
        action: str,
    ) -> None:
        """A processor that raises or does anything to its file fails or passes that file alone."""
        files = _fault_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            faulty.FaultyProcessor,
            collector,
            processor_options={"action": action, "outside": str(outside)},
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_mode=mode,
            processing_limit=2,
            download_queue_size=2,
        )
        code = _run_bounded(pipeline, files)
        raises = action.startswith("raise-")
        assert code == (1 if raises else 0)
        _assert_clean_end(collector, files, cache_root)
        failed = {fd.id: fd.error for _, fd in collector.outcomes if fd.error}
        if raises:
            assert set(failed) == {"bad0", "bad1"}
            assert {error.stage for error in failed.values()} == {"process"}
        else:
            assert failed == {}
        # Links planted in the cache were removed, never followed.
        assert (outside / "keep.txt").read_text() == "must survive"
        # A failing close() is logged in the run's log in both modes, not as a
        # worker process's traceback on stderr.
        assert "Traceback" not in capfd.readouterr().err
        closing = [r.getMessage() for r in caplog.records if "close() failed" in r.getMessage()]
        if action == "close-raises":
            assert closing == ["processor close() failed: PluginBug: close bug"] * 2
        else:
            assert closing == []

    @pytest.mark.parametrize("mode", ["thread", "process"])
    @pytest.mark.parametrize("how", ["returns-error", "raises"])
    def test_failed_clean_up_fails_that_file(
        self,
        monkeypatch: pytest.MonkeyPatch,
        file_server: FileServer,
        cache_root: Path,
        mode: str,
        how: str,
    ) -> None:
        """A cached file that cannot be removed fails that file; the cache still goes at the end."""
        original = DownloadCache.discard

        # Root removes any file it owns, so a real unlink failure cannot be staged here.
        def discard(cache: DownloadCache, path: Path | None) -> OSError | None:
            if path is not None and "-bad" in path.name:
                error = PermissionError(13, "Permission denied", str(path))
                if how == "raises":
                    raise error
                return error
            return original(cache, path)

        monkeypatch.setattr(DownloadCache, "discard", discard)
        files = _fault_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "checksum",
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_mode=mode,
            processing_limit=2,
        )
        assert _run_bounded(pipeline, files) == 1
        _assert_clean_end(collector, files, cache_root)
        failed = {fd.id: fd.error for _, fd in collector.outcomes if fd.error}
        assert set(failed) == {"bad0", "bad1"}
        assert all(error.stage == "process" for error in failed.values())
        assert all(isinstance(error.error, PermissionError) for error in failed.values())

    @pytest.mark.parametrize("where", ["post_process", "close"])
    def test_post_processor_fault(
        self, file_server: FileServer, cache_root: Path, where: str
    ) -> None:
        """A post-processor raising a BaseException fails that file; close() raising, none."""

        class Faulty(CollectingPostProcessor):
            def post_process(self, result: Any, file_data: FileData) -> None:
                super().post_process(result, file_data)
                if where == "post_process" and file_data.id.startswith("bad"):
                    raise _PluginBug("post-processor bug")

            def close(self) -> None:
                if where == "close":
                    raise _PluginBug("close bug")

        files = _fault_files(file_server)
        collector = Faulty()
        pipeline = ProcessingPipeline(
            "checksum", collector, plugin_manager=make_plugin_manager(), download_cache=cache_root
        )
        code = _run_bounded(pipeline, files)
        _assert_clean_end(collector, files, cache_root)
        failed = {fd.id: fd.error for _, fd in collector.outcomes if fd.error}
        if where == "post_process":
            assert code == 1
            assert set(failed) == {"bad0", "bad1"}
            assert all(error.stage == "post_process" for error in failed.values())
        else:
            assert code == 0
            assert failed == {}

    @pytest.mark.parametrize("hook", ["pipeline_started", "file_finished", "pipeline_finished"])
    def test_observer_raising_base_exception(
        self, file_server: FileServer, cache_root: Path, hook: str
    ) -> None:
        """An observer hook raising a BaseException subclass changes nothing in the run."""

        class Observer:
            __name__ = "faulty-observer"

        def raiser(**_kwargs: Any) -> None:
            raise _PluginBug(f"{hook} bug")

        # One hook per case, with the signature pluggy checks against the spec.
        implementations = {
            "pipeline_started": lambda settings: raiser(),
            "file_finished": lambda file_data: raiser(),
            "pipeline_finished": lambda summary: raiser(),
        }
        setattr(Observer, hook, staticmethod(hookimpl(implementations[hook])))
        files = _fault_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "checksum",
            collector,
            plugin_manager=make_plugin_manager(Observer()),
            download_cache=cache_root,
        )
        assert _run_bounded(pipeline, files) == 0
        _assert_clean_end(collector, files, cache_root)

    @pytest.mark.parametrize("downloader", SHIPPED_DOWNLOADER_NAMES)
    def test_downloader_close_raising(
        self, file_server: FileServer, cache_root: Path, downloader: str
    ) -> None:
        """A downloader whose close() raises still leaves an empty cache and the run's exit code."""
        manager = shipped_plugin_manager()
        base = PluginRegistry(manager).resolve(DOWNLOADER, downloader)

        class ClosingBadly(base):  # type: ignore[misc, valid-type]
            def close(self) -> None:
                super().close()
                raise _PluginBug("downloader close bug")

        class Plugin:
            __name__ = "closing-badly"

            @hookimpl
            def register_downloaders(self, register: Any) -> None:
                register("closing-badly", ClosingBadly)

        manager.register_source(Plugin(), PluginSource("closing-badly", "test", "0"))
        files = _fault_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "checksum",
            collector,
            plugin_manager=manager,
            download_cache=cache_root,
            downloader="closing-badly",
        )
        assert _run_bounded(pipeline, files) == 0
        _assert_clean_end(collector, files, cache_root)

    def test_stop_while_a_folder_stands_in_for_the_file(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A file abandoned at a stop after its processor made a folder of it is removed too."""
        started = threading.Event()
        release = threading.Event()

        class FolderThenStuck(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                assert file_data.local_path is not None
                file_data.local_path.unlink()
                (file_data.local_path / "inner").mkdir(parents=True)
                started.set()
                release.wait(30)
                return None

        files = [{"id": "only", "url": file_server.add("/only.bin", b"o")}]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            FolderThenStuck,
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_limit=1,
            stop_grace=0.2,
        )
        threading.Timer(0, lambda: started.wait(10) and pipeline.stop()).start()
        try:
            assert _run_bounded(pipeline, files) == 130
        finally:
            release.set()
        _assert_clean_end(collector, files, cache_root)
        ((_, file_data),) = collector.outcomes
        assert isinstance(file_data.error.error, PipelineInterrupted)  # type: ignore[union-attr]


class _PluginBug(BaseException):
    """A plugin's own BaseException subclass, which ``except Exception`` lets through."""


class StuckProcessor(BaseProcessor):
    """Hangs on the file "stuck" until ``release`` is set; returns other files' sizes.

    Class attributes are reset by the ``stuck`` fixture: every instance built
    and every (instance, file id) call are recorded, so a test can tell the
    abandoned instance from its replacement.
    """

    release: ClassVar[threading.Event]
    returned: ClassVar[threading.Event]
    #: Set: the first file of a replacement releases the stuck one and waits for it.
    release_from_replacement: ClassVar[bool]
    built: ClassVar[list[StuckProcessor]]
    calls: ClassVar[list[tuple[int, str]]]

    def __init__(self) -> None:
        self.closed = False
        type(self).built.append(self)

    def process(self, file_data: FileData) -> Any:
        cls = type(self)
        cls.calls.append((cls.built.index(self), file_data.id))
        if file_data.id == "stuck":
            cls.release.wait(30)
            cls.returned.set()
            return "late"
        if cls.release_from_replacement and cls.built.index(self) > 0:
            cls.release.set()
            cls.returned.wait(10)
        assert file_data.local_path is not None
        return file_data.local_path.stat().st_size

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def stuck() -> Iterator[type[StuckProcessor]]:
    """StuckProcessor with fresh state; its stuck thread is released when the test ends."""
    StuckProcessor.release = threading.Event()
    StuckProcessor.returned = threading.Event()
    StuckProcessor.release_from_replacement = False
    StuckProcessor.built = []
    StuckProcessor.calls = []
    yield StuckProcessor
    StuckProcessor.release.set()  # the abandoned daemon thread ends instead of lingering


def _timed_out_pipeline(
    stuck: type[StuckProcessor], collector: CollectingPostProcessor, cache_root: Path
) -> ProcessingPipeline:
    """One download and one processing thread, a 0.3 s processing timeout."""
    return ProcessingPipeline(
        stuck,
        collector,
        plugin_manager=make_plugin_manager(),
        download_cache=cache_root,
        download_workers=1,
        processing_limit=1,
        processing_timeout=0.3,
    )


def _stuck_files(server: FileServer) -> list[dict[str, Any]]:
    first = [{"id": "stuck", "url": server.add("/stuck.bin", _body(0, 100))}]
    return first + [
        {"id": f"f{i}", "url": server.add(f"/f{i}.bin", _body(i, 100))} for i in range(1, 10)
    ]


class TestProcessingTimeout:
    """--processing-timeout in thread mode: the file fails, the stuck thread is replaced."""

    def test_stuck_file_fails_and_the_rest_succeed(
        self,
        file_server: FileServer,
        cache_root: Path,
        stuck: type[StuckProcessor],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A file processed forever fails at stage process; the run ends and the others succeed."""
        files = _stuck_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = _timed_out_pipeline(stuck, collector, cache_root)
        with caplog.at_level("WARNING"):
            assert _run_bounded(pipeline, files) == 1
        _assert_clean_end(collector, files, cache_root)
        (failure,) = [fd for _, fd in collector.outcomes if fd.has_error]
        assert failure.id == "stuck"
        assert failure.error is not None
        assert failure.error.stage == "process"
        assert isinstance(failure.error.error, ProcessingTimeoutError)
        assert "processing timeout (0.3 s)" in str(failure.error.error)
        assert pipeline.summary.succeeded == 9
        assert pipeline.summary.failed_by_stage["process"] == 1
        # The replacement has its own processor; the stuck one took nothing more.
        assert len(stuck.built) == 2
        assert [file_id for index, file_id in stuck.calls if index == 0] == ["stuck"]
        warnings = [r for r in caplog.records if "cannot be killed" in r.getMessage()]
        assert len(warnings) == 1
        assert "stuck" in warnings[0].getMessage()

    def test_late_result_of_a_stuck_thread_is_dropped(
        self, file_server: FileServer, cache_root: Path, stuck: type[StuckProcessor]
    ) -> None:
        """A stuck thread that returns during the run reports nothing and takes no more files."""
        stuck.release_from_replacement = True
        files = _stuck_files(file_server)
        collector = CollectingPostProcessor()
        pipeline = _timed_out_pipeline(stuck, collector, cache_root)
        assert _run_bounded(pipeline, files) == 1
        assert stuck.returned.is_set()
        _assert_clean_end(collector, files, cache_root)
        assert "late" not in [result for result, _ in collector.outcomes]
        assert [file_id for index, file_id in stuck.calls if index == 0] == ["stuck"]
        # The stuck thread closes its own processor on its way out.
        deadline = time.monotonic() + 10
        while not stuck.built[0].closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stuck.built[0].closed
        assert stuck.built[1].closed

    def test_no_timeout_by_default(
        self, file_server: FileServer, cache_root: Path, stuck: type[StuckProcessor]
    ) -> None:
        """Without --processing-timeout a slow file is waited for and succeeds."""
        stuck.release_from_replacement = False
        files = _stuck_files(file_server)[:3]
        threading.Timer(0.5, stuck.release.set).start()
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            stuck,
            collector,
            plugin_manager=make_plugin_manager(),
            download_cache=cache_root,
            processing_limit=1,
        )
        assert _run_bounded(pipeline, files) == 0
        assert len(stuck.built) == 1
        _assert_clean_end(collector, files, cache_root)


class KnownResultProcessor(BaseProcessor):
    """Knows the result of files whose id starts with "known" before their download.

    Refuses files whose id starts with "refused" before their download; every
    other file is downloaded and its size returned.  Counts the instances built.
    """

    built: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).built += 1

    def result_without_download(self, file_data: FileData) -> Any:
        if file_data.id.startswith("known"):
            return f"known result of {file_data.id}"
        if file_data.id.startswith("refused"):
            raise ValueError(f"{file_data.id} is refused before its download")
        return DOWNLOAD

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        return file_data.local_path.stat().st_size


class TestResultWithoutDownload:
    """BaseProcessor.result_without_download settles files before any request."""

    @pytest.mark.parametrize("downloader", SHIPPED_DOWNLOADER_NAMES)
    def test_known_files_are_never_requested(
        self, file_server: FileServer, cache_root: Path, downloader: str
    ) -> None:
        """A file with a result before its download is never requested and succeeds with it."""
        KnownResultProcessor.built = 0
        files = [
            {"id": f"{kind}{i}", "url": file_server.add(f"/{kind}{i}.bin", _body(i, 100))}
            for kind in ("known", "refused", "fetched")
            for i in range(3)
        ]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            KnownResultProcessor,
            collector,
            plugin_manager=shipped_plugin_manager(),
            download_cache=cache_root,
            downloader=downloader,
            processing_limit=2,
        )
        assert _run_bounded(pipeline, files) == 1
        _assert_clean_end(collector, files, cache_root)
        outcomes = {fd.id: (result, fd) for result, fd in collector.outcomes}
        for i in range(3):
            result, known = outcomes[f"known{i}"]
            assert result == f"known result of known{i}"
            assert known.error is None
            assert known.local_path is None
            assert known.download.attempts == 0
            assert file_server.request_count(f"/known{i}.bin") == 0
            _, refused = outcomes[f"refused{i}"]
            assert refused.error is not None
            assert refused.error.stage == "process"
            assert "refused before its download" in str(refused.error.error)
            assert refused.download.attempts == 0
            assert file_server.request_count(f"/refused{i}.bin") == 0
            assert outcomes[f"fetched{i}"][0] == 100
            assert file_server.request_count(f"/fetched{i}.bin") == 1
        # Two processing instances and the one that answers before downloads.
        assert KnownResultProcessor.built == 3
        assert pipeline.summary.succeeded == 6

    def test_processors_that_do_not_override_get_no_extra_instance(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """Without an override every file is downloaded and no extra instance is built."""

        class Counting(BaseProcessor):
            built = 0

            def __init__(self) -> None:
                type(self).built += 1

            def process(self, file_data: FileData) -> Any:
                return file_data.download.attempts

        files = [{"url": file_server.add(f"/n{i}.bin", b"n")} for i in range(3)]
        outcome = run_pipeline(files, Counting, processing_limit=2, download_cache=cache_root)
        assert outcome.exit_code == 0
        assert outcome.results == [1, 1, 1]
        assert Counting.built == 2
