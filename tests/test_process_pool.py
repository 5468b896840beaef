"""Processing in worker processes (--processing-mode process)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from dpp_example_plugin.plugin import PidProcessor

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor._process_pool import WorkerProcessError
from download_pipeline_processor.errors import (
    PluginError,
    PluginOptionError,
    ProcessingTimeoutError,
    RemoteProcessingError,
)
from download_pipeline_processor.testing import (
    FileServer,
    PipelineOutcome,
    leftover_files,
    run_pipeline,
)


def _files(server: FileServer, count: int, prefix: str = "f") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "url": server.add(f"/{prefix}{i}.bin", f"body {i}".encode())}
        for i in range(count)
    ]


class TestProcessMode:
    """Processors run in worker processes and results come back by pickling."""

    def test_checksum_in_processes(self, file_server: FileServer, cache_root: Path) -> None:
        """The built-in checksum processor gives the same digests in process mode."""
        files = _files(file_server, 12)
        outcome = run_pipeline(
            files,
            "checksum",
            processing_mode="process",
            processing_limit=2,
            download_cache=cache_root,
        )
        assert outcome.exit_code == 0
        digests = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
        expected = {f"f{i}": hashlib.sha256(f"body {i}".encode()).hexdigest() for i in range(12)}
        assert digests == expected
        assert leftover_files(cache_root) == []

    def test_runs_outside_this_process(self, file_server: FileServer, cache_root: Path) -> None:
        """Every result comes from a worker process, at most processing_limit of them."""
        outcome = run_pipeline(
            _files(file_server, 20),
            PidProcessor,
            processing_mode="process",
            processing_limit=2,
            download_cache=cache_root,
        )
        pids = set(outcome.results)
        assert os.getpid() not in pids
        assert 1 <= len(pids) <= 2

    def test_dead_worker_fails_one_file_and_restarts(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A worker that dies fails only its file; the next files get a fresh worker."""
        files = _files(file_server, 6) + _files(file_server, 1, prefix="crash")
        outcome = run_pipeline(
            files,
            PidProcessor,
            processor_options={"crash_on": "crash"},
            processing_mode="process",
            processing_limit=1,
            download_cache=cache_root,
        )
        assert outcome.exit_code == 1
        (failure,) = outcome.failures
        assert failure.id == "crash0"
        assert failure.error is not None
        assert failure.error.stage == "process"
        assert isinstance(failure.error.error, WorkerProcessError)
        assert len(outcome.results) == 6

    def test_unpicklable_result_fails_the_file(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """A result that cannot be sent back fails that file with a clear message."""
        outcome = run_pipeline(
            _files(file_server, 2),
            PidProcessor,
            processor_options={"unpicklable": "yes"},
            processing_mode="process",
            processing_limit=1,
            download_cache=cache_root,
        )
        assert outcome.exit_code == 1
        assert all("cannot be sent back" in str(fd.error) for fd in outcome.failures)
        assert len(outcome.failures) == 2

    def test_unpicklable_exception_comes_back_as_text(
        self, file_server: FileServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A processor's exception that cannot be pickled comes back as its type and text."""
        # The spawned workers start with this process's sys.path.
        monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
        plugins = importlib.import_module("executor_plugins")
        outcome = run_pipeline(
            _files(file_server, 2),
            plugins.UnpicklableErrorProcessor,
            processing_mode="process",
            processing_limit=1,
            download_cache=cache_root,
        )
        assert outcome.exit_code == 1
        assert sorted(
            (fd.id, fd.error.stage, type(fd.error.error), str(fd.error.error))  # type: ignore[union-attr]
            for fd in outcome.failures
        ) == [
            (f"f{i}", "process", RemoteProcessingError, f"UnpicklableError: bad bytes in f{i}")
            for i in range(2)
        ]

    def test_processor_exception_comes_back(
        self, file_server: FileServer, cache_root: Path
    ) -> None:
        """An exception raised in the worker is recorded on the file as it was raised."""
        outcome = run_pipeline(
            _files(file_server, 1),
            "checksum",
            processing_mode="process",
            processing_limit=1,
            download_cache=cache_root,
            simulate_downloads=True,
            simulate_delay=(0.0, 0.0),
        )
        assert outcome.exit_code == 0
        outcome = run_pipeline(
            [{"url": file_server.url("/nothing.bin"), "id": "x"}],
            "checksum",
            processing_mode="process",
            processing_limit=1,
            download_cache=cache_root,
        )
        assert outcome.failures[0].error.stage == "download"  # type: ignore[union-attr]


class TestProcessModeSetup:
    """Set-up problems surface before any download."""

    def test_bad_option_before_download(self, file_server: FileServer, cache_root: Path) -> None:
        """An invalid option value is a usage error and no request is made."""
        with pytest.raises(PluginError, match="unsupported algorithm"):
            run_pipeline(
                _files(file_server, 1),
                "checksum",
                processor_options={"algorithm": "nope"},
                processing_mode="process",
                download_cache=cache_root,
            )
        with pytest.raises(PluginOptionError, match="unknown option"):
            run_pipeline(
                _files(file_server, 1),
                "checksum",
                processor_options={"nope": "1"},
                processing_mode="process",
                download_cache=cache_root,
            )
        assert file_server.request_count() == 0

    def test_local_class_refused(self, file_server: FileServer, cache_root: Path) -> None:
        """A class defined inside a function cannot be sent to a worker: exit-2 error."""

        class Local(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                return None

        with pytest.raises(PluginError, match="cannot run in worker processes"):
            run_pipeline(
                _files(file_server, 1),
                Local,
                processing_mode="process",
                download_cache=cache_root,
            )
        assert file_server.request_count() == 0

    def test_cli_process_mode(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """--processing-mode process selects worker processes from the command line."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(_files(file_server, 4)))
        proc = subprocess.Popen(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "example-pid",
                "--processing-mode",
                "process",
                "--processing-limit",
                "2",
                "--post-processor",
                "jsonl",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "example"},
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        pids = {json.loads(line)["result"] for line in out.splitlines()}
        assert proc.pid not in pids
        assert 1 <= len(pids) <= 2


PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


class TestProcessingTimeout:
    """--processing-timeout in process mode: the stuck worker is killed and replaced."""

    def test_stuck_worker_is_killed_and_replaced(
        self,
        file_server: FileServer,
        cache_root: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The stuck file fails at stage process; its worker is dead, a new one does the rest."""
        # Worker processes of process mode start with this process's sys.path.
        monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
        hanging = importlib.import_module("faulty_plugins").HangingProcessor
        files = _files(file_server, 4) + _files(file_server, 1, prefix="hang")
        files += _files(file_server, 5, prefix="later")
        outcomes: list[PipelineOutcome] = []

        def run() -> None:
            outcomes.append(
                run_pipeline(
                    files,
                    hanging,
                    processing_mode="process",
                    processing_limit=1,
                    # One at a time, in order: the files before the hang meet the first worker.
                    download_workers=1,
                    processing_timeout=1.0,
                    download_cache=cache_root,
                )
            )

        with caplog.at_level("WARNING"):
            runner = threading.Thread(target=run, daemon=True)
            runner.start()
            runner.join(60)
        if not outcomes:
            pytest.fail("the run did not finish within 60 s")
        outcome = outcomes[0]
        assert outcome.exit_code == 1
        ids = [fd.id for _, fd in outcome.outcomes]
        assert sorted(ids) == sorted(entry["id"] for entry in files)
        (failure,) = outcome.failures
        assert failure.id == "hang0"
        assert failure.error is not None
        assert failure.error.stage == "process"
        assert isinstance(failure.error.error, ProcessingTimeoutError)
        assert "processing timeout (1 s)" in str(failure.error.error)
        pids = {fd.id: result for result, fd in outcome.outcomes if not fd.has_error}
        (before,) = {pids[f"f{i}"] for i in range(4)}
        (after,) = {pids[f"later{i}"] for i in range(5)}
        assert after != before
        with pytest.raises(ProcessLookupError):
            os.kill(before, 0)  # the killed worker: our child, already reaped
        assert any("killed" in r.getMessage() for r in caplog.records)
        assert leftover_files(cache_root) == []
