"""Every report of one file's outcome: one status word, one reason text, a report form."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor.errors import (
    PermanentDownloadError,
    PipelineInterrupted,
    ProcessingTimeoutError,
    RemoteProcessingError,
    TransientDownloadError,
    error_text,
)
from download_pipeline_processor.http_rules import timed_out
from download_pipeline_processor.report import outcome_record, to_json
from download_pipeline_processor.testing import FileServer, run_pipeline

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


class TestErrorText:
    """The one function that turns a failure into the words every report shows."""

    @pytest.mark.parametrize(
        ("error", "text"),
        [
            (PermanentDownloadError("HTTP 404 File not found"), "HTTP 404 File not found"),
            (TransientDownloadError("HTTP 503"), "HTTP 503"),
            (timed_out(), str(timed_out())),
            (PipelineInterrupted("run stopped"), "interrupted: run stopped"),
            (ProcessingTimeoutError("took 5 s"), "processing timeout: took 5 s"),
            (RemoteProcessingError("KeyError: 'k'"), "KeyError: 'k'"),
            (ValueError("bad header\nsecond line"), "ValueError: bad header"),
            (RuntimeError(), "RuntimeError"),
        ],
    )
    def test_words_not_framework_classes(self, error: BaseException, text: str) -> None:
        """Download errors read as their message, a processor's keeps its type, one line."""
        assert error_text(error) == text

    def test_status_words(self) -> None:
        """succeeded, failed and interrupted: the journal's words, in jsonl too."""
        ok = FileData(url="http://127.0.0.1/a")
        failed = FileData(url="http://127.0.0.1/b")
        failed.fail("download", PermanentDownloadError("HTTP 404 Not Found"))
        stopped = FileData(url="http://127.0.0.1/c")
        stopped.fail("download", PipelineInterrupted("run stopped"))
        records = [outcome_record(None, file_data) for file_data in (ok, failed, stopped)]
        assert [record["status"] for record in records] == ["succeeded", "failed", "interrupted"]
        assert records[1]["error"] == {
            "stage": "download",
            "message": "HTTP 404 Not Found",
            "reason": "HTTP 404",
        }


def _cli_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_MODULES), env.get("PYTHONPATH")]))
    env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = "sqlite"
    return env


def _rows(db: Path, query: str) -> list[dict[str, Any]]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(query)]
    finally:
        connection.close()


class TestOneVocabulary:
    """jsonl, the summary, the journal and dpp-sqlite say the same words for the same file."""

    def test_404_and_processor_error_read_alike_everywhere(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A 404 and a processor's exception: one status word and one reason text in every report,
        and no framework class name anywhere a user reads."""
        files = [
            {"id": "good", "url": file_server.add("/good", b"fine")},
            {"id": "gone", "url": file_server.url("/gone")},
            {"id": "bad-doc", "url": file_server.add("/bad", b"junk")},
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(files), encoding="utf-8")
        out, summary_json = tmp_path / "out.jsonl", tmp_path / "summary.json"
        journal, db = tmp_path / "job.db", tmp_path / "files.sqlite"
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "progress_plugins:RejectingProcessor",
                "--max-retries",
                "0",
                "--download-cache",
                str(tmp_path / "cache"),
                "--post-processor",
                "jsonl",
                "--post-processor",
                "sqlite",
                "--post-processor-option",
                f"jsonl.path={out}",
                "--post-processor-option",
                f"sqlite.db={db}",
                "--journal",
                str(journal),
                "--summary-json",
                str(summary_json),
            ],
            capture_output=True,
            text=True,
            env=_cli_env(),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        expected = {
            "good": ("succeeded", None),
            "gone": ("failed", "HTTP 404 Not Found"),
            "bad-doc": ("failed", "UnreadableDocumentError: cannot parse bad-doc"),
        }
        jsonl = {
            row["id"]: (row["status"], row["error"] and row["error"]["message"])
            for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())
        }
        journal_rows = {
            row["id"]: (row["status"], row["reason"])
            for row in _rows(journal, "SELECT id, status, reason FROM entries")
        }
        sqlite_rows = {
            row["id"]: (row["status"], row["error_message"])
            for row in _rows(db, "SELECT id, status, error_message FROM files")
        }
        assert jsonl == journal_rows == sqlite_rows == expected
        summary = json.loads(summary_json.read_text(encoding="utf-8"))
        assert {(group["reason"], tuple(group["examples"])) for group in summary["failures"]} == {
            ("HTTP 404", ("gone",)),
            ("UnreadableDocumentError", ("bad-doc",)),
        }
        # The journal command groups the journal's reasons as the summary grouped the run's.
        shown = subprocess.run(
            [str(cli_path), "journal", str(journal), "--json"],
            capture_output=True,
            text=True,
            env=_cli_env(),
            timeout=60,
            check=True,
        )
        assert {group["reason"] for group in json.loads(shown.stdout)["failures"]} == {
            "HTTP 404",
            "UnreadableDocumentError",
        }
        everything = proc.stderr + out.read_text(encoding="utf-8") + summary_json.read_text()
        for name in ("PermanentDownloadError", "DownloadError", "PipelineError", '"ok"'):
            assert name not in everything
class Blob:
    """A result carrying bulk bytes that says what its report keeps."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def report_form(self) -> dict[str, Any]:
        return {"bytes": len(self.data)}


class BlobProcessor(BaseProcessor):
    """Returns the downloaded file as a Blob."""

    def process(self, file_data: FileData) -> Blob:
        assert file_data.local_path is not None
        return Blob(Path(file_data.local_path).read_bytes())


class TestReportForm:
    def test_report_form_replaces_the_object(self) -> None:
        """An object whose class defines report_form() is written as what it returns."""
        assert json.loads(to_json({"result": Blob(b"x" * 10)})) == {"result": {"bytes": 10}}

    def test_jsonl_line_keeps_the_report_form_only(self, tmp_path: Path) -> None:
        """The jsonl post-processor writes a result's report form, never its bytes."""
        out = tmp_path / "out.jsonl"
        with FileServer() as server:
            url = server.add("/blob.bin", b"SECRET-BYTES" * 100)
            outcome = run_pipeline(
                [{"url": url}],
                BlobProcessor,
                post_processors=["jsonl"],
                post_processor_options={"path": str(out)},
            )
        assert outcome.exit_code == 0
        text = out.read_text(encoding="utf-8")
        assert json.loads(text)["result"] == {"bytes": 1200}
        assert "SECRET-BYTES" not in text
