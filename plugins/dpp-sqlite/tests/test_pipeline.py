"""The ``sqlite`` post-processor in a real pipeline against a loopback server."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

import dpp_sqlite.plugin
from download_pipeline_processor import ProcessingPipeline
from download_pipeline_processor.errors import PluginError
from download_pipeline_processor.testing import FileServer, make_plugin_manager
from dpp_sqlite import SqlitePostProcessor

Query = Callable[..., list[sqlite3.Row]]


def run_into(db: Path, entries: list[dict[str, Any]]) -> tuple[int, ProcessingPipeline]:
    """Run ``checksum`` then ``sqlite`` over ``entries``: the exit code and the pipeline."""
    pipeline = ProcessingPipeline(
        processor="checksum",
        post_processor=["sqlite"],
        post_processor_options=[{"db": str(db)}],
        plugin_manager=make_plugin_manager(dpp_sqlite.plugin),
        retry_backoff=0,
    )
    return pipeline.run(entries), pipeline


def run_id_of(pipeline: ProcessingPipeline) -> str:
    """The run id the pipeline's ``sqlite`` post-processor wrote under."""
    (post_processor,) = pipeline.post_processors
    assert isinstance(post_processor, SqlitePostProcessor)
    return post_processor.run_id


class TestPipeline:
    def test_rows_and_statuses(
        self, db: Path, query: Query, entries: list[dict[str, Any]], bodies: dict[str, bytes]
    ) -> None:
        """Every file is one row: the served ones ok with their digest, the 404 failed."""
        exit_code, pipeline = run_into(db, entries)
        assert exit_code == 1
        rows = {row["id"]: row for row in query("SELECT * FROM files")}
        assert sorted(rows) == ["alpha", "bravo", "missing", "secret"]
        for file_id, body in bodies.items():
            assert rows[file_id]["status"] == "succeeded"
            assert json.loads(rows[file_id]["result"]) == {
                "sha256": hashlib.sha256(body).hexdigest(),
                "size": len(body),
            }
        missing = rows["missing"]
        assert missing["status"] == "failed"
        assert missing["error_stage"] == "download"
        assert "404" in missing["error_message"]
        assert missing["result"] is None
        assert json.loads(rows["secret"]["extra"]) == {"language": "en"}
        assert {row["run_id"] for row in rows.values()} == {run_id_of(pipeline)}

    def test_secret_never_stored(
        self, db: Path, query: Query, entries: list[dict[str, Any]], secret: str
    ) -> None:
        """A URL's token reaches neither the rows nor any byte of the database files."""
        run_into(db, entries)
        (row,) = query("SELECT url FROM files WHERE id = 'secret'")
        assert row["url"].endswith("/secret.bin?REDACTED")
        connection = sqlite3.connect(str(db))
        try:
            dump = "\n".join(connection.iterdump())
        finally:
            connection.close()
        assert secret not in dump
        for path in db.parent.glob(db.name + "*"):
            assert secret.encode() not in path.read_bytes(), path

    def test_run_row_from_summary(
        self, db: Path, query: Query, entries: list[dict[str, Any]], bodies: dict[str, bytes]
    ) -> None:
        """The runs table holds the pipeline's summary for the run."""
        _, pipeline = run_into(db, entries)
        summary = pipeline.summary
        (run,) = query("SELECT * FROM files_runs")
        assert run["run_id"] == run_id_of(pipeline)
        assert (run["total"], run["succeeded"], run["failed"]) == (4, 3, 1)
        assert (run["total"], run["succeeded"], run["failed"]) == (
            summary.total,
            summary.succeeded,
            summary.failed,
        )
        assert run["not_started"] == 0
        assert run["bytes_downloaded"] == sum(len(body) for body in bodies.values())
        assert run["elapsed"] == summary.elapsed
        assert run["interrupted"] == 0
        assert run["finished_at"] >= run["started_at"]
        assert json.loads(run["summary_json"]) == json.loads(json.dumps(summary.as_dict()))

    def test_second_run_appends(
        self, db: Path, query: Query, entries: list[dict[str, Any]]
    ) -> None:
        """Running again into the same database adds a run and its rows."""
        ids = [run_id_of(run_into(db, listed)[1]) for listed in (entries, entries[:2])]
        per_run = query("SELECT run_id, COUNT(*) AS n FROM files GROUP BY run_id")
        assert {row["run_id"]: row["n"] for row in per_run} == {ids[0]: 4, ids[1]: 2}
        runs = query("SELECT run_id, total FROM files_runs ORDER BY started_at")
        assert [(row["run_id"], row["total"]) for row in runs] == [(ids[0], 4), (ids[1], 2)]

    def test_interrupted_run(self, db: Path, query: Query, entries: list[dict[str, Any]]) -> None:
        """A run stopped before it started records no files and an interrupted run row."""
        pipeline = ProcessingPipeline(
            processor="checksum",
            post_processor=["sqlite"],
            post_processor_options=[{"db": str(db)}],
            plugin_manager=make_plugin_manager(dpp_sqlite.plugin),
            retry_backoff=0,
        )
        pipeline.stop(130)
        assert pipeline.run(entries) == 130
        assert query("SELECT COUNT(*) FROM files")[0][0] == 0
        (run,) = query("SELECT * FROM files_runs")
        # total counts the input's entries, started or not.
        assert (run["interrupted"], run["not_started"], run["total"]) == (1, 4, 4)

    def test_bad_table_is_a_setup_error(
        self, db: Path, entries: list[dict[str, Any]], server: FileServer
    ) -> None:
        """A bad table name stops the run at set-up, before any download, naming the problem."""
        pipeline = ProcessingPipeline(
            processor="checksum",
            post_processor=["sqlite"],
            post_processor_options=[{"db": str(db), "table": "my-files"}],
            plugin_manager=make_plugin_manager(dpp_sqlite.plugin),
        )
        with pytest.raises(PluginError, match="table name 'my-files'"):
            pipeline.run(entries)
        assert not db.exists()
        assert server.request_count() == 0
