"""Processors that take a batch (``process_batch``); the channel files move through in batches."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from batch_helpers import ChosenFailure, PerFileProcessor, SizingBatchProcessor
from download_pipeline_processor._batches import BatchChannel, BatchError
from download_pipeline_processor._plan import plan_run
from download_pipeline_processor._registry import PluginRegistry
from download_pipeline_processor.errors import UsageError
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import (
    FileServer,
    PipelineOutcome,
    leftover_files,
    make_plugin_manager,
    run_pipeline,
)

BATCH_PROCESSOR = "batch_helpers:SizingBatchProcessor"


def _files(server: FileServer, count: int, **route: Any) -> list[dict[str, Any]]:
    return [
        {"id": f"f{i}", "url": server.add(f"/f{i}.bin", b"x" * (i + 1), **route)}
        for i in range(count)
    ]


def _batch_sizes(outcome: PipelineOutcome) -> list[int]:
    """The size of each process_batch call, in call order (one processing worker)."""
    calls = {result["call"]: result["batch"] for result in outcome.results}
    return [calls[call] for call in sorted(calls)]


def _run(
    server: FileServer,
    cache_root: Path,
    count: int,
    processor: Any = BATCH_PROCESSOR,
    extra: Sequence[dict[str, Any]] = (),
    **settings: Any,
) -> PipelineOutcome:
    """One download worker (the files come in input order) and one processing worker.

    ``count`` served files, then the ``extra`` entries (already served).
    """
    settings.setdefault("download_workers", 1)
    settings.setdefault("processing_limit", 1)
    files = [*_files(server, count), *extra]
    outcome = run_pipeline(files, processor, download_cache=cache_root, **settings)
    assert len(outcome.outcomes) == len(files)
    assert leftover_files(cache_root) == []
    return outcome


def _run_batched(
    server: FileServer,
    cache_root: Path,
    count: int,
    batch_size: int,
    processor: Any = BATCH_PROCESSOR,
    **settings: Any,
) -> PipelineOutcome:
    """``_run`` in batches of ``batch_size``, each given ample time to fill."""
    settings.setdefault("processing_batch_wait", 5.0)
    return _run(server, cache_root, count, processor, processing_batch_size=batch_size, **settings)


def _failing_run(
    server: FileServer, cache_root: Path, count: int, batch_size: int, **settings: Any
) -> tuple[PipelineOutcome, dict[str, BaseException]]:
    """A ``_run_batched`` that exits 1; its outcome and each failed file's error (``_failed``)."""
    outcome = _run_batched(server, cache_root, count, batch_size, **settings)
    assert outcome.exit_code == 1
    return outcome, _failed(outcome)


def _cli(
    cli_path: Path, tmp_path: Path, *args: str, check: bool = False, **run: Any
) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess over a one-entry listing (never fetched), with ``args`` after it."""
    listing = tmp_path / "files.json"
    listing.write_text('[{"url": "http://127.0.0.1:9/a"}]')
    return subprocess.run(
        [str(cli_path), "--files", str(listing), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        **run,
    )


def _failed(outcome: PipelineOutcome) -> dict[str, BaseException]:
    """Each failed file's id and its error; every one failed at stage process."""
    failed = {}
    for _, file_data in outcome.outcomes:
        if file_data.error is not None:
            assert file_data.error.stage == "process"
            failed[str(file_data.id)] = file_data.error.error
    return failed


class TestBatchChannel:
    """Items go in and come out in batches, within the channel's bound."""

    def test_takes_what_waits_up_to_most(self) -> None:
        """A take returns every waiting item up to its limit, oldest first, without waiting."""
        channel: BatchChannel[int] = BatchChannel(None)
        assert channel.put([1, 2, 3])
        assert channel.take(2, 0.01) == [1, 2]
        assert channel.take(5, 0.01) == [3]
        assert channel.take(5, 0.01) == []

    def test_put_waits_for_room_and_held_items_keep_theirs(self) -> None:
        """A full channel refuses a put; items taken with hold count until released."""
        channel: BatchChannel[int] = BatchChannel(2)
        assert channel.put([1, 2])
        assert not channel.put([3], 0)
        assert channel.take(2, 0.01, hold=True) == [1, 2]
        assert not channel.put([3], 0.05)
        channel.release(1)
        assert channel.put([3], 0)
        assert not channel.put([4], 0)

    def test_put_some_adds_what_fits(self) -> None:
        """A partial put adds items from the front up to the room left, and says how many."""
        channel: BatchChannel[int] = BatchChannel(3)
        assert channel.put_some([1, 2], 0) == 2
        assert channel.put_some([3, 4, 5], 0) == 1
        assert channel.put_some([4, 5], 0) == 0
        assert channel.take(5, 0.01) == [1, 2, 3]

    def test_fill_waits_for_the_batch(self) -> None:
        """With a fill wait, a take collects items put one by one into one batch."""
        channel: BatchChannel[int] = BatchChannel(10)

        def feed() -> None:
            for item in range(4):
                time.sleep(0.02)
                channel.put([item])

        threading.Thread(target=feed, daemon=True).start()
        assert channel.take(4, 5.0, fill_wait=5.0) == [0, 1, 2, 3]

    def test_fill_stops_at_the_wait_and_at_close(self) -> None:
        """A batch that does not fill comes out after the wait, or at once at a close."""
        channel: BatchChannel[int] = BatchChannel(10)
        channel.put([1])
        started = time.monotonic()
        assert channel.take(4, 1.0, fill_wait=0.2) == [1]
        assert 0.15 <= time.monotonic() - started < 3.0
        channel.put([2])
        threading.Timer(0.1, channel.close).start()
        started = time.monotonic()
        assert channel.take(4, 1.0, fill_wait=30.0) == [2]
        assert time.monotonic() - started < 10.0
        assert channel.take(4, 1.0) is None


class TestProcessBatch:
    """process_batch in processing threads: one call per batch, one result per file."""

    def test_one_call_per_batch_up_to_the_size(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """Ten files in batches of four: calls of 4, 4 and 2, each file with its own result."""
        outcome = _run_batched(file_server, cache_root, 10, 4)
        assert outcome.exit_code == 0
        assert _batch_sizes(outcome) == [4, 4, 2]
        sizes = {file_data.id: result["size"] for result, file_data in outcome.outcomes}
        assert sizes == {f"f{i}": i + 1 for i in range(10)}

    @pytest.mark.parametrize(
        ("processor", "batch", "queue", "expected"),
        [
            (SizingBatchProcessor, 32, 10, 64),  # raised: two whole batches
            (SizingBatchProcessor, 32, 100, 100),  # larger already: kept
            (SizingBatchProcessor, 1, 10, 10),  # no batches asked for
            (PerFileProcessor, 32, 10, 10),  # the processor does not batch
        ],
    )
    def test_queue_holds_two_whole_batches(
        self, processor: type, batch: int, queue: int, expected: int
    ) -> None:
        """The downloaded queue of a batching run holds two batches: one to process, one to fill."""
        plan = plan_run(
            processor,
            "dummy",
            registry=PluginRegistry(make_plugin_manager()),
            settings=PipelineSettings(
                simulate_downloads=True, processing_batch_size=batch, download_queue_size=queue
            ),
        )
        assert plan.settings.download_queue_size == expected

    def test_partial_batch_after_the_wait(self, file_server: FileServer, cache_root: Path) -> None:
        """A batch that does not fill within --processing-batch-wait is processed as it is."""
        late = {"id": "late", "url": file_server.add("/late.bin", b"late", delay=1.5)}
        outcome = _run_batched(
            file_server, cache_root, 2, 8, extra=[late], processing_batch_wait=0.3
        )
        assert outcome.exit_code == 0
        assert _batch_sizes(outcome) == [2, 1]

    def test_default_size_is_one_file_per_call(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """Without --processing-batch-size, process_batch gets one file per call."""
        outcome = _run(file_server, cache_root, 5)
        assert outcome.exit_code == 0
        assert _batch_sizes(outcome) == [1] * 5

    def test_exception_instance_fails_that_file_alone(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """An exception in the returned list fails its file alone, at stage process."""
        outcome, failed = _failing_run(
            file_server, cache_root, 4, 4, processor_options={"failing_ids": "f2"}
        )
        assert list(failed) == ["f2"]
        assert isinstance(failed["f2"], ChosenFailure)
        assert _batch_sizes(outcome) == [4]
        assert outcome.summary.succeeded == 3

    def test_raised_exception_fails_the_whole_batch(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A raising process_batch fails every file of its batch, and only those."""
        outcome, failed = _failing_run(
            file_server, cache_root, 8, 4, processor_options={"raising_ids": "f1"}
        )
        assert sorted(failed) == ["f0", "f1", "f2", "f3"]
        assert all(isinstance(error, ChosenFailure) for error in failed.values())
        assert _batch_sizes(outcome) == [4]
        assert outcome.summary.failed_by_stage["process"] == 4

    def test_wrong_length_fails_the_batch_with_a_reason(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A list of the wrong length fails every file of the batch, saying so."""
        _, failed = _failing_run(file_server, cache_root, 3, 3, processor_options={"short": True})
        assert sorted(failed) == ["f0", "f1", "f2"]
        for error in failed.values():
            assert isinstance(error, BatchError)
            assert "returned 2 result(s) for 3 file(s)" in str(error)

    def test_processor_without_it_is_called_per_file(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A processor without process_batch works as before whatever the batch size."""
        outcome = _run(
            file_server,
            cache_root,
            6,
            PerFileProcessor,
            processing_batch_size=4,
            processing_limit=2,
        )
        assert outcome.exit_code == 0
        assert sorted(result["size"] for result in outcome.results) == [1, 2, 3, 4, 5, 6]

    def test_processing_timeout_fails_the_batch(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """--processing-timeout applies to the whole call: a stuck batch fails all its files."""
        gate = threading.Event()

        class Stuck(SizingBatchProcessor):
            def process_batch(self, files: list[Any]) -> list[Any]:
                if any(file_data.id == "f0" for file_data in files):
                    gate.wait(10)
                return super().process_batch(files)

        try:
            outcome = _run_batched(file_server, cache_root, 6, 3, Stuck, processing_timeout=0.5)
        finally:
            gate.set()
        assert sorted(_failed(outcome)) == ["f0", "f1", "f2"]
        assert outcome.summary.succeeded == 3


class TestProcessBatchInProcesses:
    """process_batch in worker processes (--processing-mode process): the same rules."""

    def test_batches_and_failures_in_worker_processes(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """In a worker process an exception instance fails one file, a raise its batch."""
        options = {"failing_ids": "f5", "raising_ids": "f1"}
        outcome, failed = _failing_run(
            file_server, cache_root, 8, 4, processor_options=options, processing_mode="process"
        )
        assert sorted(failed) == ["f0", "f1", "f2", "f3", "f5"]
        assert "raised" in str(failed["f0"])
        assert "failed alone" in str(failed["f5"])
        assert {result["batch"] for result in outcome.results} == {4}
        assert {result["pid"] for result in outcome.results} != {os.getpid()}

    def test_wrong_length_in_worker_processes(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A list of the wrong length from a worker process fails its batch, saying so."""
        options = {"short": True}
        _, failed = _failing_run(
            file_server, cache_root, 2, 2, processor_options=options, processing_mode="process"
        )
        assert sorted(failed) == ["f0", "f1"]
        assert "returned 1 result(s) for 2 file(s)" in str(failed["f0"])


class TestBatchSettings:
    """The batch settings are checked, on the command line and in the library."""

    @pytest.mark.parametrize(
        ("flag", "value"),
        [
            ("--processing-batch-size", "0"),
            ("--processing-batch-size", "many"),
            ("--processing-batch-wait", "-1"),
            ("--processing-batch-wait", "soon"),
        ],
    )
    def test_bad_flag_is_a_usage_error(
        self, flag: str, value: str, cli_path: Path, tmp_path: Path
    ) -> None:
        """A bad value exits 2 with one error line naming the flag, before any request."""
        proc = _cli(cli_path, tmp_path, flag, value)
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1
        assert flag in errors[0]
        assert "Traceback" not in proc.stderr

    @pytest.mark.parametrize(
        "setting", [{"processing_batch_size": 0}, {"processing_batch_wait": -0.5}]
    )
    def test_library_refuses_bad_values(self, setting: dict[str, Any]) -> None:
        """PipelineSettings refuses a batch size under 1 and a negative wait, naming the setting."""
        with pytest.raises(UsageError, match=next(iter(setting))):
            PipelineSettings(**setting)

    def test_dry_run_shows_the_batches(self, cli_path: Path, tmp_path: Path) -> None:
        """--dry-run says a processor with process_batch gets batches, and of what size."""
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}

        def dry_run(processor: str) -> subprocess.CompletedProcess[str]:
            args = ("--dry-run", "--processing-batch-size", "16", "--processor", processor)
            return _cli(cli_path, tmp_path, *args, check=True, env=env)

        with_batches = dry_run(BATCH_PROCESSOR)
        assert "batches of up to 16 (waiting 0.05 s to fill)" in with_batches.stdout
        per_file = dry_run("batch_helpers:PerFileProcessor")
        assert "batches of up to" not in per_file.stdout


class TestBatchesInsideThePipeline:
    """Files move between the stages in batches; every file still arrives exactly once."""

    def test_many_quick_files_each_reach_the_post_processor_once(self, cache_root: Path) -> None:
        """A quick per-file processor over many simulated files: each once, none lost."""
        files = [{"id": f"s{i}", "url": f"http://127.0.0.1:9/s{i}.bin"} for i in range(3000)]
        outcome = run_pipeline(
            files,
            "dummy",
            download_cache=cache_root,
            simulate_downloads=True,
            simulate_delay=(0.0, 0.0),
            processing_limit=3,
        )
        assert outcome.exit_code == 0
        seen = Counter(str(file_data.id) for _, file_data in outcome.outcomes)
        assert seen == Counter(f"s{i}" for i in range(3000))
        assert outcome.summary.succeeded == 3000
        assert leftover_files(cache_root) == []
