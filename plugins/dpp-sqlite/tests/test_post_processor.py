"""The ``sqlite`` post-processor on its own: rows, batches, runs, table names, pragmas."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import importlib_metadata
import pytest

import dpp_sqlite.plugin
from download_pipeline_processor import FileData, RunSummary
from download_pipeline_processor._registry import POST_PROCESSOR, PluginRegistry
from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.testing import make_plugin_manager
from dpp_sqlite import SqlitePostProcessor, schema

Make = Callable[..., SqlitePostProcessor]
Query = Callable[..., list[sqlite3.Row]]


def ok_file(file_id: str = "a", **extra: Any) -> FileData:
    """A file that went through every stage."""
    return FileData(
        url=f"http://127.0.0.1:1/{file_id}.bin",
        id=file_id,
        name=f"{file_id}-name",
        additional_fields=extra,
    )


def failed_file(file_id: str, stage: str, error: BaseException, url: str = "") -> FileData:
    """A file that failed in ``stage``."""
    file_data = FileData(url=url or f"http://127.0.0.1:1/{file_id}.bin", id=file_id)
    file_data.fail(stage, error)
    return file_data


def count(query: Query, table: str = "files") -> int:
    """Rows committed to ``table``, as another connection sees them."""
    return int(query(f'SELECT COUNT(*) FROM "{table}"')[0][0])  # noqa: S608 - test's own names


class TestRecording:
    def test_ok_file_row(self, make_processor: Make, query: Query) -> None:
        """A successful file is one row with its id, name, url, result and extras as JSON."""
        processor = make_processor()
        processor.post_process({"sha256": "abc", "size": 3}, ok_file("a", language="en"))
        processor.close()
        (row,) = query("SELECT * FROM files")
        assert row["run_id"] == processor.run_id
        assert (row["id"], row["name"], row["url"]) == ("a", "a-name", "http://127.0.0.1:1/a.bin")
        assert row["status"] == "succeeded"
        assert row["error_stage"] is None
        assert row["error_message"] is None
        assert json.loads(row["result"]) == {"sha256": "abc", "size": 3}
        assert json.loads(row["extra"]) == {"language": "en"}

    def test_failed_file_row(self, make_processor: Make, query: Query) -> None:
        """A failed file records its stage and one-line message, and no result."""
        processor = make_processor()
        processor.post_process(
            None, failed_file("b", "download", PermanentDownloadError("HTTP 404 Not Found"))
        )
        processor.close()
        (row,) = query("SELECT * FROM files")
        assert row["status"] == "failed"
        assert row["error_stage"] == "download"
        assert row["error_message"] == "HTTP 404 Not Found"
        assert row["result"] is None
        assert row["extra"] == "{}"

    def test_url_and_message_are_redacted(self, make_processor: Make, query: Query) -> None:
        """Query strings and credentials stay out of the url and the error message."""
        url = "http://user:pw@127.0.0.1:1/c.bin?token=hush"
        processor = make_processor()
        processor.post_process(
            None, failed_file("c", "process", ValueError(f"cannot read {url}"), url=url)
        )
        processor.close()
        (row,) = query("SELECT url, error_message FROM files")
        assert row["url"] == "http://127.0.0.1:1/c.bin?REDACTED"
        assert "hush" not in row["error_message"]
        assert "pw" not in row["error_message"]

    def test_entry_header_values_stay_out(self, make_processor: Make, query: Query) -> None:
        """An entry's request headers are recorded by name only, never their values."""
        processor = make_processor()
        entry = ok_file("h", headers={"Authorization": "Bearer HUSH"}, language="en")
        processor.post_process({"size": 1}, entry)
        processor.close()
        (row,) = query("SELECT extra FROM files")
        assert "HUSH" not in row["extra"]
        extra = json.loads(row["extra"])
        assert extra["language"] == "en"
        assert list(extra["headers"]) == ["Authorization"]

    def test_finished_at_is_utc_iso(self, make_processor: Make, query: Query) -> None:
        """``finished_at`` is an ISO-8601 timestamp in UTC."""
        processor = make_processor()
        processor.post_process(None, failed_file("d", "process", RuntimeError("boom")))
        processor.close()
        (row,) = query("SELECT finished_at FROM files")
        assert datetime.fromisoformat(row["finished_at"]).utcoffset() == timedelta(0)

    def test_result_that_json_cannot_hold(self, make_processor: Make, query: Query) -> None:
        """Paths and other non-JSON values in a result are stored as strings."""
        processor = make_processor()
        processor.post_process({"path": Path("/tmp/x"), "tags": ("a",)}, ok_file())  # noqa: S108 - never touched
        processor.close()
        (row,) = query("SELECT result FROM files")
        assert json.loads(row["result"]) == {"path": "/tmp/x", "tags": ["a"]}  # noqa: S108


class TestBatching:
    def test_rows_commit_a_batch_at_a_time(self, make_processor: Make, query: Query) -> None:
        """Rows become visible to readers only when a full batch is committed."""
        processor = make_processor(batch_size=3, flush_interval=60)
        processor.post_process(None, failed_file("a", "process", RuntimeError("x")))
        processor.post_process({}, ok_file("b"))
        assert count(query) == 0
        processor.post_process({}, ok_file("c"))
        assert count(query) == 3
        processor.post_process({}, ok_file("d"))
        assert count(query) == 3

    def test_partial_batch_committed_within_a_second(
        self, make_processor: Make, query: Query
    ) -> None:
        """With the defaults, rows short of a batch are committed within a second, no file after."""
        processor = make_processor()
        processor.post_process({}, ok_file("a"))
        processor.post_process({}, ok_file("b"))
        deadline = time.monotonic() + 1
        while count(query) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(query) == 2

    def test_timed_commit_repeats(self, make_processor: Make, query: Query) -> None:
        """Each new partial batch gets its own deadline after the previous one was written."""
        processor = make_processor(flush_interval=0.05)
        for written, file_id in enumerate(("a", "b", "c"), start=1):
            processor.post_process({}, ok_file(file_id))
            deadline = time.monotonic() + 2
            while count(query) < written and time.monotonic() < deadline:
                time.sleep(0.02)
            assert count(query) == written

    @pytest.mark.parametrize("flush_interval", [0, -1.5])
    def test_flush_interval_must_be_positive(
        self, make_processor: Make, flush_interval: float
    ) -> None:
        """A flush interval of zero or less is refused."""
        with pytest.raises(ValueError, match="flush_interval"):
            make_processor(flush_interval=flush_interval)

    def test_close_commits_the_rest(self, make_processor: Make, query: Query) -> None:
        """``close()`` writes a partial batch."""
        processor = make_processor(batch_size=500)
        for index in range(7):
            processor.post_process({"n": index}, ok_file(f"f{index}"))
        processor.close()
        assert count(query) == 7

    def test_close_twice(self, make_processor: Make, query: Query) -> None:
        """A second ``close()`` does nothing."""
        processor = make_processor()
        processor.post_process({}, ok_file())
        processor.close()
        processor.close()
        assert count(query) == 1

    def test_post_process_after_close(self, make_processor: Make) -> None:
        """A closed post-processor refuses new rows instead of losing them."""
        processor = make_processor()
        processor.close()
        with pytest.raises(RuntimeError, match="closed"):
            processor.post_process({}, ok_file())

    @pytest.mark.parametrize("batch_size", [0, -1])
    def test_batch_size_must_be_positive(self, make_processor: Make, batch_size: int) -> None:
        """A batch of fewer than one row is refused."""
        with pytest.raises(ValueError, match="batch_size"):
            make_processor(batch_size=batch_size)


class TestRuns:
    def test_run_row_opened_at_construction(self, make_processor: Make, query: Query) -> None:
        """The run's row exists from the start, with ``started_at`` and no ``finished_at``."""
        processor = make_processor()
        (run,) = query("SELECT * FROM files_runs")
        assert run["run_id"] == processor.run_id
        assert run["started_at"] == processor.started_at
        assert run["finished_at"] is None

    def test_close_without_pipeline_fills_counts(self, make_processor: Make, query: Query) -> None:
        """Outside a pipeline, ``close()`` records the counts it saw."""
        processor = make_processor()
        processor.post_process({}, ok_file("a"))
        processor.post_process({}, ok_file("b"))
        processor.post_process(None, failed_file("c", "download", OSError("gone")))
        processor.close()
        (run,) = query("SELECT * FROM files_runs")
        assert (run["total"], run["succeeded"], run["failed"]) == (3, 2, 1)
        assert run["finished_at"] >= run["started_at"]
        assert run["summary_json"] is None

    @pytest.mark.parametrize("close_first", [True, False], ids=["close-first", "hook-first"])
    def test_pipeline_finished_fills_the_run(
        self, make_processor: Make, query: Query, close_first: bool
    ) -> None:
        """The summary lands in the run's row whether ``close()`` came before or after."""
        processor = make_processor()
        processor.post_process({}, ok_file("a"))
        summary = RunSummary(
            total=4,
            succeeded=1,
            failed=1,
            failed_by_stage=Counter(download=1),
            not_started=2,
            bytes_downloaded=1234,
            elapsed=1.5,
            stopped_with=130,
        )
        if close_first:
            processor.close()
            processor.pipeline_finished(summary=summary)
        else:
            processor.pipeline_finished(summary=summary)
            processor.close()
        (run,) = query("SELECT * FROM files_runs")
        assert (run["total"], run["succeeded"], run["failed"]) == (4, 1, 1)
        assert (run["not_started"], run["bytes_downloaded"]) == (2, 1234)
        assert run["elapsed"] == 1.5
        assert run["interrupted"] == 1
        assert json.loads(run["summary_json"])["failed_by_stage"] == {"download": 1}
        assert run["finished_at"] is not None
        assert count(query) == 1

    def test_second_run_appends(self, make_processor: Make, query: Query) -> None:
        """A second run into the same database adds rows under a new run id."""
        first = make_processor()
        first.post_process({}, ok_file("a"))
        first.close()
        second = make_processor()
        second.post_process({}, ok_file("a"))
        second.post_process({}, ok_file("b"))
        second.close()
        assert first.run_id != second.run_id
        per_run = query("SELECT run_id, COUNT(*) AS n FROM files GROUP BY run_id")
        assert {row["run_id"]: row["n"] for row in per_run} == {first.run_id: 1, second.run_id: 2}
        runs = query("SELECT run_id FROM files_runs ORDER BY rowid")
        assert [row["run_id"] for row in runs] == [first.run_id, second.run_id]


class TestTableName:
    def test_custom_table(self, make_processor: Make, query: Query) -> None:
        """``table`` names the files table and, with ``_runs``, the runs table."""
        processor = make_processor(table="downloads_2024")
        processor.post_process({}, ok_file())
        processor.close()
        assert count(query, "downloads_2024") == 1
        assert count(query, "downloads_2024_runs") == 1
        names = {row[0] for row in query("SELECT name FROM sqlite_master")}
        assert "files" not in names

    @pytest.mark.parametrize(
        "table",
        ["", "1files", "my-table", "files; DROP TABLE x", 'files"', "fi les", "sqlite_files"],
    )
    def test_invalid_names_refused(self, make_processor: Make, db: Path, table: str) -> None:
        """Anything but a plain identifier is a ValueError, before the database is touched."""
        with pytest.raises(ValueError, match="table name"):
            make_processor(table=table)
        assert not db.exists()

    def test_foreign_table_refused(self, make_processor: Make, db: Path) -> None:
        """An existing table of that name with other columns is refused up front."""
        connection = sqlite3.connect(str(db))
        connection.execute("CREATE TABLE files (path TEXT)")
        connection.commit()
        connection.close()
        with pytest.raises(ValueError, match="already exists without the columns"):
            make_processor()


class TestConnection:
    def test_wal_mode(self, make_processor: Make, query: Query) -> None:
        """The database is left in WAL journal mode."""
        make_processor().close()
        assert query("PRAGMA journal_mode")[0][0] == "wal"

    def test_synchronous_normal(self, db: Path) -> None:
        """Connections run with ``synchronous=NORMAL``."""
        connection = schema.connect(db)
        try:
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        finally:
            connection.close()

    def test_indexes(self, make_processor: Make, query: Query) -> None:
        """The files table is indexed on ``run_id`` and on ``status``."""
        make_processor().close()
        indexed = {row["name"] for row in query("PRAGMA index_list(files)")}
        assert {"files_run_id_idx", "files_status_idx"} <= indexed

    def test_plain_column_types(self, make_processor: Make, query: Query) -> None:
        """Every column is plain TEXT, INTEGER or REAL, readable from the sqlite3 shell."""
        make_processor().close()
        for table in ("files", "files_runs"):
            types = {row["type"] for row in query(f'PRAGMA table_info("{table}")')}
            assert types <= {"TEXT", "INTEGER", "REAL"}


class TestPlugin:
    def test_registered_as_sqlite(self) -> None:
        """The plugin module registers the class as the ``sqlite`` post-processor."""
        registry = PluginRegistry(make_plugin_manager(dpp_sqlite.plugin))
        assert registry.resolve(POST_PROCESSOR, "sqlite") is SqlitePostProcessor

    def test_entry_point(self) -> None:
        """The installed distribution declares the ``sqlite`` entry point."""
        (entry_point,) = importlib_metadata.entry_points(
            group="download_pipeline_processor", name="sqlite"
        )
        assert entry_point.value == "dpp_sqlite.plugin"
        assert entry_point.dist is not None
        assert entry_point.dist.name == "dpp-sqlite"

    def test_declared_options(self) -> None:
        """``db`` is a required path; the other options have defaults."""
        options = {option.name: option for option in SqlitePostProcessor.options}
        assert options["db"].required
        assert options["db"].type is Path
        assert options["table"].default == "files"
        assert options["batch_size"].type is int
        assert options["batch_size"].default == 500
        assert options["flush_interval"].type is float
        assert options["flush_interval"].default <= 1
