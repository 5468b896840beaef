"""The README's example queries, run against a database two real runs filled."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

import dpp_sqlite.plugin
from download_pipeline_processor import FileData, ProcessingPipeline
from download_pipeline_processor.builtins._processors import ChecksumProcessor
from download_pipeline_processor.testing import FileServer, make_plugin_manager
from dpp_sqlite import SqlitePostProcessor

Query = Callable[..., list[sqlite3.Row]]

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> dict[str, str]:
    """Every ```sql block of the README, keyed by its first line's ``--`` comment."""
    blocks = re.findall(r"^```sql\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    queries = {}
    for block in blocks:
        title, _, sql = block.partition("\n")
        assert title.startswith("-- "), f"README query without a '-- title' line: {block!r}"
        queries[title[3:].strip()] = sql
    return queries


class RefusesBad(ChecksumProcessor):
    """``checksum``, except that the file with id ``bad`` fails in processing."""

    def process(self, file_data: FileData) -> dict[str, Any]:
        if file_data.id == "bad":
            raise ValueError("refusing bad")
        return super().process(file_data)


def run(db: Path, entries: list[dict[str, Any]]) -> str:
    """One run into ``db``; returns its run id."""
    pipeline = ProcessingPipeline(
        processor=RefusesBad,
        post_processor=["sqlite"],
        post_processor_options=[{"db": str(db)}],
        plugin_manager=make_plugin_manager(dpp_sqlite.plugin),
        retry_backoff=0,
    )
    pipeline.run(entries)
    (post_processor,) = pipeline.post_processors
    assert isinstance(post_processor, SqlitePostProcessor)
    return post_processor.run_id


@pytest.fixture
def two_runs(db: Path, server: FileServer) -> tuple[str, str]:
    """Run 1: one ok, one 404.  Run 2: two ok, two 404, one failed in processing."""
    alpha = {"id": "alpha", "url": server.add("/alpha.bin", b"alpha")}
    bravo = {"id": "bravo", "url": server.add("/bravo.bin", b"bravo")}
    bad = {"id": "bad", "url": server.add("/bad.bin", b"bad")}
    gone = [{"id": f"gone{n}", "url": server.url(f"/gone{n}.bin")} for n in (1, 2)]
    first = run(db, [alpha, gone[0]])
    second = run(db, [alpha, bravo, bad, *gone])
    return first, second


class TestReadmeQueries:
    def test_readme_has_the_queries(self) -> None:
        """The README documents exactly the queries this module checks."""
        assert set(readme_queries()) == {
            "failures of the last run by stage",
            "count per status per run",
            "failed files of the last run",
            "runs",
            "checksums of the last run",
        }

    def test_failures_by_stage(self, query: Query, two_runs: tuple[str, str]) -> None:
        """Failures of the last run, grouped by stage, most frequent first."""
        rows = query(readme_queries()["failures of the last run by stage"])
        assert [tuple(row) for row in rows] == [("download", 2), ("process", 1)]

    def test_count_per_status_per_run(self, query: Query, two_runs: tuple[str, str]) -> None:
        """Files per status for every run, oldest run first."""
        first, second = two_runs
        rows = query(readme_queries()["count per status per run"])
        assert [(row["run_id"], row["status"], row["files"]) for row in rows] == [
            (first, "failed", 1),
            (first, "succeeded", 1),
            (second, "failed", 3),
            (second, "succeeded", 2),
        ]

    def test_failed_files_of_last_run(self, query: Query, two_runs: tuple[str, str]) -> None:
        """The last run's failed files with their stage and message."""
        rows = query(readme_queries()["failed files of the last run"])
        assert [(row["id"], row["error_stage"]) for row in rows] == [
            ("bad", "process"),
            ("gone1", "download"),
            ("gone2", "download"),
        ]
        assert rows[0]["error_message"] == "ValueError: refusing bad"

    def test_runs(self, query: Query, two_runs: tuple[str, str]) -> None:
        """Every run with its counts, oldest first."""
        rows = query(readme_queries()["runs"])
        assert [tuple(row)[:1] + tuple(row)[3:] for row in rows] == [
            (two_runs[0], 2, 1, 1, 0),
            (two_runs[1], 5, 2, 3, 0),
        ]

    def test_checksums(self, query: Query, two_runs: tuple[str, str]) -> None:
        """JSON functions read the digest out of the last run's results."""
        rows = query(readme_queries()["checksums of the last run"])
        assert [tuple(row) for row in rows] == [
            ("alpha", hashlib.sha256(b"alpha").hexdigest(), 5),
            ("bravo", hashlib.sha256(b"bravo").hexdigest(), 5),
        ]
