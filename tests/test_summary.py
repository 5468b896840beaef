"""The run summary: failures grouped by a normalised reason, counts of the whole input, text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from download_pipeline_processor import FileData
from download_pipeline_processor.errors import (
    PermanentDownloadError,
    PipelineInterrupted,
    ProcessingTimeoutError,
    TransientDownloadError,
)
from download_pipeline_processor.file_data import StageError
from download_pipeline_processor.http_rules import (
    integrity_mismatch,
    network_error,
    size_mismatch,
    timed_out,
    truncated,
)
from download_pipeline_processor.summary import (
    RunSummary,
    failure_reason,
    human_bytes,
    plural,
    reason_from_message,
)
from download_pipeline_processor.testing import FileServer

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


def failed(ident: str, stage: str, error: BaseException) -> FileData:
    file_data = FileData(url=f"http://127.0.0.1/{ident}", id=ident)
    file_data.fail(stage, error)
    return file_data


class TestFailureReason:
    """One rule turns an error into the short reason failures are grouped by."""

    @pytest.mark.parametrize(
        ("stage", "error", "reason"),
        [
            ("download", PermanentDownloadError("HTTP 404 Not Found"), "HTTP 404"),
            ("download", PermanentDownloadError("HTTP 404"), "HTTP 404"),
            ("download", TransientDownloadError("HTTP 503 Service Unavailable"), "HTTP 503"),
            ("download", timed_out(), "timeout"),
            ("download", integrity_mismatch("sha256", "0" * 64, "1" * 64), "sha256 mismatch"),
            ("download", size_mismatch(10, 12), "size mismatch"),
            ("download", truncated(10, 50), "truncated body"),
            (
                "download",
                network_error(ConnectionResetError(104, "reset by peer")),
                "ConnectionResetError",
            ),
            ("download", PipelineInterrupted("run stopped"), "interrupted"),
            ("process", ValueError("cannot parse row 7"), "ValueError"),
            ("process", ProcessingTimeoutError("took too long"), "processing timeout"),
            ("post_process", OSError(28, "No space left"), "OSError"),
        ],
    )
    def test_reason(self, stage: str, error: BaseException, reason: str) -> None:
        """Download errors give their kind without details; anything else its type's name."""
        assert failure_reason(StageError(stage, error)) == reason

    def test_retried_failure_is_not_named_by_its_class(self) -> None:
        """A file that failed after every retry reads 'HTTP 503', not 'TransientDownloadError'."""
        reason = failure_reason(StageError("download", TransientDownloadError("HTTP 503 Busy")))
        assert "TransientDownloadError" not in reason


class TestRunSummary:
    """Counting files, grouping failures, and what the text and JSON say."""

    def test_groups_count_with_three_examples(self) -> None:
        """Failures of one stage and reason form one group with its count and 3 example ids."""
        summary = RunSummary()
        for index in range(5):
            summary.record(failed(f"m{index}", "download", PermanentDownloadError("HTTP 404 X")))
        summary.record(failed("p0", "process", KeyError("k")))
        summary.record(FileData(url="http://127.0.0.1/ok", id="ok"))
        summary.finish()
        assert (summary.total, summary.succeeded, summary.failed) == (7, 1, 6)
        assert [(g.reason, g.stage, g.count, g.examples) for g in summary.failures] == [
            ("HTTP 404", "download", 5, ["m0", "m1", "m2"]),
            ("KeyError", "process", 1, ["p0"]),
        ]

    def test_total_is_the_whole_input(self) -> None:
        """total counts interrupted, skipped and never-started entries: a stopped run adds up."""
        summary = RunSummary(
            succeeded=3, failed=1, interrupted=4, skipped=2, not_started=10, stopped_with=130
        )
        summary.finish()
        assert summary.total == 20
        assert summary.lines()[0] == (
            "20 files: 3 succeeded, 1 failed, 4 interrupted, 2 skipped (journal), 10 not started"
        )

    def test_text_uses_plurals_and_human_units(self) -> None:
        """One file is '1 file'; bytes read as kB/MB, not '0.0 MB'."""
        summary = RunSummary(succeeded=1, bytes_downloaded=1_536, elapsed=2.0)
        summary.finish()
        assert summary.lines()[:2] == [
            "1 file: 1 succeeded, 0 failed",
            "1.54 kB downloaded in 2.00 s (0.5 files/s, 768 B/s)",
        ]

    def test_failure_lines_list_reasons_and_examples(self) -> None:
        """The text lists each reason with its count, stage and examples, '...' when more."""
        summary = RunSummary()
        for index in range(4):
            summary.record(failed(f"t{index}", "download", timed_out()))
        summary.finish()
        assert summary.lines()[2:] == [
            "failures by reason:",
            "  4  timeout (download)  e.g. t0, t1, t2, ...",
        ]
        assert summary.failure_lines() == ["4 of 4 files failed", *summary.lines()[2:]]

    def test_failure_lines_empty_when_all_succeeded(self) -> None:
        """--quiet's lines are nothing at all when no file failed."""
        summary = RunSummary(succeeded=3)
        summary.finish()
        assert summary.failure_lines() == []

    def test_as_dict_has_the_documented_keys(self) -> None:
        """The JSON form has total, the counts, bytes, elapsed and failures with examples."""
        summary = RunSummary(bytes_downloaded=10, elapsed=1.5)
        summary.record(failed("a", "download", integrity_mismatch("sha256", "0", "1")))
        summary.finish()
        data = json.loads(json.dumps(summary.as_dict()))
        assert {
            key: data[key] for key in ("total", "succeeded", "failed", "skipped", "not_started")
        } == {"total": 1, "succeeded": 0, "failed": 1, "skipped": 0, "not_started": 0}
        assert (data["bytes_downloaded"], data["elapsed"]) == (10, 1.5)
        assert data["failures"] == [
            {"reason": "sha256 mismatch", "stage": "download", "count": 1, "examples": ["a"]}
        ]


class TestUnits:
    """The small formatting rules of the summary and the progress view."""

    @pytest.mark.parametrize(
        ("count", "text"),
        [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.00 kB"),
            (12_345, "12.3 kB"),
            (999_999, "1.00 MB"),
            (205_000_000_000, "205 GB"),
        ],
    )
    def test_human_bytes(self, count: int, text: str) -> None:
        """Decimal units with three significant digits, rolling over at 1000."""
        assert human_bytes(count) == text

    def test_plural(self) -> None:
        """'1 file', '0 files', '2 files'."""
        assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]


class TestReasonFromMessage:
    """A stored message ("Type: text", as the journal keeps it) groups as its error does."""

    @pytest.mark.parametrize(
        ("stage", "error"),
        [
            ("download", PermanentDownloadError("HTTP 404 Not Found")),
            ("download", integrity_mismatch("sha256", "0" * 64, "1" * 64)),
            ("download", timed_out()),
            ("download", PipelineInterrupted("run stopped before this file finished")),
            ("process", ValueError("not an MP3 file")),
            ("process", ProcessingTimeoutError("processing took longer")),
        ],
    )
    def test_same_reason_as_the_error(self, stage: str, error: BaseException) -> None:
        """reason_from_message(message) == failure_reason(error) for the same failure."""
        stage_error = StageError(stage, error)
        assert reason_from_message(stage_error.message) == failure_reason(stage_error)

    def test_unknown_type_keeps_its_name(self) -> None:
        """A message of an exception type the rule does not know gives that type's name."""
        assert reason_from_message("RuntimeError: HTTP 503 Service Unavailable") == "RuntimeError"


def _cli_env() -> dict[str, str]:
    """The command line's environment: the test plugin modules importable, no entry points."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_MODULES), env.get("PYTHONPATH")]))
    env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = ""
    return env


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and signals")
class TestStoppedRuns:
    """Ctrl-C through the command line: the files in flight are interrupted, not failed."""

    @pytest.mark.parametrize("mode", ["thread", "process"])
    def test_ctrl_c_counts_files_in_flight_as_interrupted(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, mode: str
    ) -> None:
        """SIGINT to the process group (a terminal's Ctrl-C, worker processes included): exit 130,
        no traceback, in-flight files interrupted in jsonl and summary, -q tells the counts."""
        files = [{"id": f"f{i}", "url": file_server.add(f"/f{i}", b"x")} for i in range(20)]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(files), encoding="utf-8")
        out, summary_json, started = tmp_path / "out.jsonl", tmp_path / "s.json", tmp_path / "up"
        started.mkdir()
        args = [
            "--files",
            str(listing),
            "--processor",
            "progress_plugins:SleepingProcessor",
            "--processor-option",
            f"started={started}",
            "--processing-limit",
            "2",
            "--processing-mode",
            mode,
            "--download-cache",
            str(tmp_path / "cache"),
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            f"path={out}",
            "--summary-json",
            str(summary_json),
            "-q",
        ]
        proc = subprocess.Popen(
            [str(cli_path), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_cli_env(),
            text=True,
            # Its own process group, as a shell's foreground job: Ctrl-C signals all of it.
            start_new_session=True,
        )
        try:
            _wait_for(lambda: len(list(started.iterdir())) >= 2, "2 files being processed")
            os.killpg(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
                proc.wait()
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        report = json.loads(summary_json.read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert report["failed"] == 0
        assert report["failures"] == []
        assert report["interrupted"] >= 2
        assert report["interrupted"] + report["not_started"] == report["total"] == 20
        assert [row["status"] for row in rows] == ["interrupted"] * report["interrupted"]
        assert {row["error"]["reason"] for row in rows} == {"interrupted"}
        # --quiet keeps the failures and what the stop left undone.
        assert (
            f"0 of 20 files failed, {report['interrupted']} interrupted,"
            f" {report['not_started']} not started"
        ) in stderr


class TestOlderJournalReasons:
    """Journals written before reasons were words ("Class: text") group as they did."""

    @pytest.mark.parametrize(
        ("message", "reason"),
        [
            ("PermanentDownloadError: HTTP 404 Not Found", "HTTP 404"),
            ("TransientDownloadError: timed out: read timeout", "timeout"),
            ("PipelineInterrupted: run stopped before this file finished", "interrupted"),
            ("ProcessingTimeoutError: processing took longer than 5 s", "processing timeout"),
            ("RemoteProcessingError: KeyError: 'k'", "KeyError"),
        ],
    )
    def test_old_message(self, message: str, reason: str) -> None:
        """The framework's class name is dropped; the words behind it give the group."""
        assert reason_from_message(message) == reason

    def test_quiet_lines_of_a_stopped_run(self) -> None:
        """--quiet keeps the not-started and interrupted counts of a stop with no failure."""
        summary = RunSummary(succeeded=5, interrupted=2, not_started=13, stopped_with=130)
        summary.finish()
        assert summary.failure_lines() == ["0 of 20 files failed, 2 interrupted, 13 not started"]
