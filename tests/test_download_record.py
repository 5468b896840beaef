"""The download record (``FileData.download``): HTTP status, attempts, size, sha256 and time.

Every test runs once per shipped downloader (the ``transport`` fixture): the
record means the same whichever downloader made the requests.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from download_helpers import DOWNLOADER_NAMES, SHIPPED_PLUGINS, shipped_plugin_manager
from download_pipeline_processor.cli import main
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.testing import FileServer, run_pipeline

pytestmark = pytest.mark.usefixtures("transport")

BODY = b"record me " * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def records(
    transport: str, entries: list[dict[str, Any]], tmp_path: Path, **settings: Any
) -> dict[str, FileData]:
    """Run ``entries`` through the downloader of ``transport``; every file by id."""
    settings.setdefault("timeout", 5.0)
    settings.setdefault("download_cache", tmp_path / "cache")
    outcome = run_pipeline(
        entries,
        "dummy",
        plugins=SHIPPED_PLUGINS,
        downloader=DOWNLOADER_NAMES[transport],
        **settings,
    )
    return {file_data.id: file_data for _, file_data in outcome.outcomes}


class TestRecord:
    """What the download stage records on ``file_data.download``."""

    def test_success(self, transport: str, file_server: FileServer, tmp_path: Path) -> None:
        """Served at once: status 200, one attempt, the size, the sha256 (none asked), a time."""
        url = file_server.add("/ok", BODY)
        record = records(transport, [{"id": "ok", "url": url}], tmp_path)["ok"].download
        assert (record.http_status, record.attempts, record.size) == (200, 1, len(BODY))
        assert record.sha256 == sha256(BODY)
        assert record.elapsed is not None
        assert record.elapsed > 0

    def test_not_found(self, transport: str, file_server: FileServer, tmp_path: Path) -> None:
        """A 404 is recorded as 404 after its one attempt (not retried), with no size or digest."""
        url = file_server.add("/gone", BODY, statuses=(404,))
        file_data = records(transport, [{"id": "gone", "url": url}], tmp_path)["gone"]
        assert file_data.has_error
        record = file_data.download
        assert (record.http_status, record.attempts, record.size, record.sha256) == (
            404,
            1,
            None,
            None,
        )

    def test_retried_then_served(
        self, transport: str, file_server: FileServer, tmp_path: Path
    ) -> None:
        """A 503 then a 200: the last answer's status, 200, and two attempts."""
        url = file_server.add("/flaky", BODY, statuses=(503, 200))
        record = records(transport, [{"id": "flaky", "url": url}], tmp_path)["flaky"].download
        assert (record.http_status, record.attempts, record.size) == (200, 2, len(BODY))
        assert record.sha256 == sha256(BODY)

    def test_retries_exhausted(
        self, transport: str, file_server: FileServer, tmp_path: Path
    ) -> None:
        """A 503 on every attempt is recorded as 503 after max_retries + 1 attempts."""
        url = file_server.add("/down", BODY, statuses=(503,))
        record = records(transport, [{"id": "down", "url": url}], tmp_path, max_retries=2)[
            "down"
        ].download
        assert (record.http_status, record.attempts) == (503, 3)

    def test_wrong_bytes(self, transport: str, file_server: FileServer, tmp_path: Path) -> None:
        """A body that fails its sha256 on every attempt: the answers' status, 200, is kept."""
        url = file_server.add("/wrong", BODY)
        entry = {"id": "wrong", "url": url, "sha256": sha256(b"other")}
        file_data = records(transport, [entry], tmp_path, max_retries=1)["wrong"]
        assert file_data.error is not None
        assert "sha256 mismatch" in str(file_data.error)
        assert (file_data.download.http_status, file_data.download.attempts) == (200, 2)


class TestJournalRow:
    """The record reaches the journal's row, through the CLI."""

    def test_rows(self, transport: str, file_server: FileServer, tmp_path: Path) -> None:
        """Succeeded, retried and failed files: the rows hold status, attempts, bytes and sha256."""
        entries = [
            {"id": "ok", "url": file_server.add("/ok", BODY)},
            {"id": "flaky", "url": file_server.add("/flaky", BODY, statuses=(503, 200))},
            {"id": "gone", "url": file_server.add("/gone", BODY, statuses=(404,))},
            {"id": "down", "url": file_server.add("/down", BODY, statuses=(503,))},
        ]
        listing = tmp_path / "list.json"
        listing.write_text(json.dumps(entries), encoding="utf-8")
        journal = tmp_path / "journal.db"
        args = [
            *("--files", str(listing), "--journal", str(journal)),
            *("--downloader", DOWNLOADER_NAMES[transport], "--quiet"),
            *("--download-cache", str(tmp_path / "cache"), "--retry-backoff", "0"),
            *("--max-retries", "1", "--timeout", "5"),
        ]
        obj = {"plugin_manager": shipped_plugin_manager()}
        result = CliRunner().invoke(main, args, obj=obj, catch_exceptions=False)
        assert result.exit_code == 1, result.output
        connection = sqlite3.connect(journal)
        try:
            rows = {
                row[0]: row[1:]
                for row in connection.execute(
                    "SELECT id, status, http_status, attempts, bytes, sha256 FROM entries"
                )
            }
        finally:
            connection.close()
        assert rows == {
            "ok": ("succeeded", 200, 1, len(BODY), sha256(BODY)),
            "flaky": ("succeeded", 200, 2, len(BODY), sha256(BODY)),
            "gone": ("failed", 404, 1, None, None),
            "down": ("failed", 503, 2, None, None),
        }
