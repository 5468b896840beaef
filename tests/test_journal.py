"""The journal (--journal): outcomes recorded, reruns that skip what succeeded, kills survived."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli_helpers import checksum_report_args, write_list
from download_pipeline_processor import (
    BasePostProcessor,
    DownloadRecord,
    FileData,
    ProcessingPipeline,
)
from download_pipeline_processor._journal import (
    FLUSH_INTERVAL,
    SCHEMA_VERSION,
    Journal,
    lock_path,
    url_key,
)
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import JournalBusyError, PipelineInterrupted
from download_pipeline_processor.report import outcome_record
from download_pipeline_processor.testing import (
    CollectingPostProcessor,
    FileServer,
    make_plugin_manager,
)

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")


def invoke(args: list[str]) -> Result:
    """The CLI in process, with the built-in plugins only."""
    obj = {"plugin_manager": make_plugin_manager()}
    return CliRunner().invoke(main, args, obj=obj, catch_exceptions=False)


def journal_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Every entry row of the journal at ``path``, by id (none if a kill came before its schema)."""
    if not path.exists():
        return {}
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        made = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'entries'").fetchone()
        if made is None:
            return {}
        return {row["id"]: dict(row) for row in connection.execute("SELECT * FROM entries")}
    finally:
        connection.close()


def succeeded_ids(path: Path) -> set[str]:
    return {i for i, row in journal_rows(path).items() if row["status"] == "succeeded"}


def jsonl_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def requested_paths(server: FileServer, since: int = 0) -> list[str]:
    return [target.split("?", 1)[0] for _, target, _ in server.request_log[since:]]


def run_args(listing: Path, journal: Path, report: Path, cache: Path) -> list[str]:
    """A checksum run over ``listing`` with ``journal``, one JSON line per file to ``report``."""
    return [
        *("--files", str(listing), "--journal", str(journal)),
        *("--processor", "checksum", "--post-processor", "jsonl"),
        *("--post-processor-option", f"path={report}", "--download-cache", str(cache)),
        *("--retry-backoff", "0", "--max-retries", "0"),
    ]


class TestRerun:
    """A run with a journal skips what an earlier run finished and retries the rest."""

    def test_rerun_skips_succeeded_and_retries_failed(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """No request and no post-processing for succeeded entries; failed ones run again."""
        entries = [{"id": f"ok{i}", "url": file_server.add(f"/ok{i}", b"x" * i)} for i in range(5)]
        # 404 the first time (a permanent failure), found the second.
        entries += [
            {"id": f"late{i}", "url": file_server.add(f"/late{i}", b"y", statuses=(404, 200))}
            for i in range(2)
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        first = invoke(run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"))
        assert first.exit_code == 1, first.stderr
        rows = journal_rows(journal)
        assert {i: r["status"] for i, r in rows.items()} == {
            **{f"ok{i}": "succeeded" for i in range(5)},
            "late0": "failed",
            "late1": "failed",
        }
        assert rows["late0"]["stage"] == "download"
        assert "404" in rows["late0"]["reason"]
        # What the download stage learnt reaches the row.
        ok = rows["ok3"]
        assert (ok["http_status"], ok["attempts"], ok["bytes"]) == (200, 1, 3)
        assert ok["download_seconds"] is not None

        before = len(file_server.request_log)
        second = invoke(run_args(listing, journal, tmp_path / "2.jsonl", tmp_path / "c"))
        assert second.exit_code == 0, second.stderr
        assert sorted(requested_paths(file_server, before)) == ["/late0", "/late1"]
        assert sorted(jsonl_ids(tmp_path / "2.jsonl")) == ["late0", "late1"]
        assert "5 skipped (journal)" in second.stderr
        rows = journal_rows(journal)
        assert {r["status"] for r in rows.values()} == {"succeeded"}
        assert (rows["late0"]["tries"], rows["late0"]["reason"]) == (2, None)
        assert rows["ok0"]["tries"] == 1

    def test_skip_failed_leaves_failed_entries_out(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """--skip-failed: a rerun requests neither the succeeded nor the failed entries."""
        entries = [
            {"id": "good", "url": file_server.add("/good", b"g")},
            {"id": "bad", "url": file_server.add("/bad", b"", statuses=(404, 200))},
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"))
        before = len(file_server.request_log)
        again = invoke(
            [*run_args(listing, journal, tmp_path / "2.jsonl", tmp_path / "c"), "--skip-failed"]
        )
        assert again.exit_code == 0, again.stderr
        assert requested_paths(file_server, before) == []
        assert jsonl_ids(tmp_path / "2.jsonl") == []
        assert "2 skipped (journal)" in again.stderr
        assert journal_rows(journal)["bad"]["status"] == "failed"

    def test_entries_match_by_id_and_url(self, tmp_path: Path, file_server: FileServer) -> None:
        """Same URL under another id, or same id for another URL, is a new entry; ids default
        from the URL."""
        one = file_server.add("/one.bin", b"1")
        two = file_server.add("/two.bin", b"2")
        journal = tmp_path / "j.db"
        first = write_list(tmp_path / "a.json", [{"url": one}, {"id": "x", "url": one}])
        assert invoke(run_args(first, journal, tmp_path / "1.jsonl", tmp_path / "c")).exit_code == 0
        before = len(file_server.request_log)
        second = write_list(
            tmp_path / "b.json",
            [
                {"url": one},
                {"id": "one", "url": one},
                {"id": "y", "url": one},
                {"id": "x", "url": two},
            ],
        )
        result = invoke(run_args(second, journal, tmp_path / "2.jsonl", tmp_path / "c"))
        assert result.exit_code == 0, result.stderr
        # {"url": one} and {"id": "one", ...} are one entry: its id defaults to "one".
        assert sorted(jsonl_ids(tmp_path / "2.jsonl")) == ["x", "y"]
        assert sorted(requested_paths(file_server, before)) == ["/one.bin", "/two.bin"]

    def test_an_entry_listed_twice_runs_twice(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """Rows written by the run itself never skip its own entries: duplicates run as without
        a journal."""
        journal = tmp_path / "j.db"
        first = write_list(tmp_path / "0.json", [{"url": file_server.add("/first", b"f")}])
        invoke(run_args(first, journal, tmp_path / "0.jsonl", tmp_path / "c"))
        other = file_server.add("/other", b"o")
        # The slow file between the two keeps the run going until the first one is committed.
        slow = file_server.add("/slow", b"s", delay=FLUSH_INTERVAL + 0.4)
        listing = write_list(tmp_path / "l.json", [{"url": other}, {"url": slow}, {"url": other}])
        result = invoke(
            [
                *run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"),
                *("--download-workers", "1"),
            ]
        )
        assert result.exit_code == 0, result.stderr
        assert jsonl_ids(tmp_path / "1.jsonl") == ["other", "slow", "other"]
        assert journal_rows(journal)["other"]["tries"] == 2

    def test_summary_adds_up_after_a_stop(self, tmp_path: Path, file_server: FileServer) -> None:
        """Stopped mid-rerun: succeeded + failed + skipped + not started is the input's size."""
        entries = [{"id": str(i), "url": file_server.add(f"/f{i}", b"f")} for i in range(40)]
        journal = tmp_path / "j.db"
        warm = ProcessingPipeline(
            "dummy", CollectingPostProcessor(), journal=journal, download_cache=tmp_path / "c"
        )
        assert warm.run(entries[::2]) == 0  # the even ones succeed first

        class StopAfterThree(BasePostProcessor):
            seen = 0

            def post_process(self, result: Any, file_data: FileData) -> None:
                StopAfterThree.seen += 1
                if StopAfterThree.seen == 3:
                    pipeline.stop(130)

        pipeline = ProcessingPipeline(
            "dummy",
            StopAfterThree(),
            journal=journal,
            download_cache=tmp_path / "c",
            download_workers=1,
            download_queue_size=1,
            processing_limit=1,
        )
        assert pipeline.run(entries) == 130
        summary = pipeline.summary
        assert summary.skipped > 0
        assert summary.not_started > 0
        assert (
            summary.succeeded
            + summary.failed
            + summary.interrupted
            + summary.skipped
            + summary.not_started
            == 40
        )
        assert summary.as_dict()["skipped"] == summary.skipped


class TestRecords:
    """What a row holds."""

    def test_row_holds_outcome_download_record_and_times(self, tmp_path: Path) -> None:
        """Status, stage, reason, HTTP status, attempts, bytes, sha256 and UTC ISO times."""
        journal = Journal(tmp_path / "j.db")
        recorder = journal.recorder()
        done = FileData("https://h/a.bin?token=s3cret", "a")
        done.download = DownloadRecord(
            attempts=2, http_status=200, size=5, sha256="ab" * 32, elapsed=0.5
        )
        failed = FileData("https://user:pw@h/b.bin", "b")
        failed.download = DownloadRecord(attempts=4, http_status=503)
        failed.fail("download", RuntimeError("HTTP 503 Service Unavailable"))
        stopped = FileData("https://h/c.bin", "c")
        stopped.fail("download", PipelineInterrupted("run stopped before this file finished"))
        for file_data in (done, failed, stopped):
            recorder.post_process(None, file_data)
        recorder.close()
        rows = journal_rows(tmp_path / "j.db")
        a, b, c = rows["a"], rows["b"], rows["c"]
        assert (a["status"], a["stage"], a["reason"]) == ("succeeded", None, None)
        assert (a["attempts"], a["http_status"], a["bytes"], a["sha256"]) == (2, 200, 5, "ab" * 32)
        assert a["download_seconds"] == 0.5
        assert a["url"] == "https://h/a.bin?REDACTED"
        assert a["url_key"] == url_key("https://h/a.bin?token=s3cret")
        assert (b["status"], b["stage"], b["http_status"], b["attempts"]) == (
            "failed",
            "download",
            503,
            4,
        )
        assert b["reason"] == "RuntimeError: HTTP 503 Service Unavailable"
        assert b["bytes"] is None
        assert b["sha256"] is None
        assert c["status"] == "interrupted"
        for row in rows.values():
            assert row["recorded_at"].endswith("+00:00")
            assert row["recorded_at"][10] == "T"
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert b"s3cret" not in raw
        assert b"pw@" not in raw

    def test_schema_is_versioned_and_run_rows_count(self, tmp_path: Path) -> None:
        """user_version and application_id mark the journal; each run has a row with its counts."""
        Journal(tmp_path / "j.db").close()
        journal = Journal(tmp_path / "j.db")
        recorder = journal.recorder()
        recorder.post_process(None, FileData("http://h/a"))
        recorder.close()
        connection = sqlite3.connect(tmp_path / "j.db")
        try:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            runs = connection.execute(
                "SELECT run, succeeded, finished_at IS NOT NULL FROM runs ORDER BY run"
            ).fetchall()
        finally:
            connection.close()
        assert runs == [(1, 0, 1), (2, 1, 1)]

    def test_odd_text_is_stored(self, tmp_path: Path) -> None:
        """An id with a lone surrogate (valid JSON) is recorded and matched, not a failed batch."""
        journal = Journal(tmp_path / "j.db")
        recorder = journal.recorder()
        recorder.post_process(None, FileData("http://h/a", "\ud800x"))
        recorder.close()
        again = Journal(tmp_path / "j.db")
        try:
            assert again.already_done(FileData("http://h/a", "\ud800x"))
        finally:
            again.close()


class TestFlushing:
    """Rows reach the database a bounded time after their file's post-processing."""

    def test_rows_committed_while_the_run_waits(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """With the run idle on a slow file, finished files are committed within the interval."""
        quick = [{"id": f"q{i}", "url": file_server.add(f"/q{i}", b"q")} for i in range(20)]
        slow = {"id": "slow", "url": file_server.add("/slow", b"s", delay=3)}
        journal = tmp_path / "j.db"
        seen = threading.Event()

        class Watch(BasePostProcessor):
            count = 0

            def post_process(self, result: Any, file_data: FileData) -> None:
                Watch.count += 1
                if Watch.count == 20:
                    seen.set()

        pipeline = ProcessingPipeline(
            "dummy",
            Watch(),
            journal=journal,
            download_cache=tmp_path / "c",
            download_workers=4,
            stop_grace=0.1,
        )
        runner = threading.Thread(target=pipeline.run, args=([slow, *quick],))
        runner.start()
        try:
            assert seen.wait(10)
            # The bound, with room for a slow machine; far less than the slow file's delay.
            time.sleep(FLUSH_INTERVAL + 0.5)
            assert succeeded_ids(journal) == {f"q{i}" for i in range(20)}
        finally:
            pipeline.stop()
            runner.join(10)


class TestLock:
    """One run at a time per journal."""

    @POSIX_ONLY
    def test_second_run_exits_2_at_once(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A run on a journal another live process holds exits 2 at once, naming the journal."""
        journal = tmp_path / "j.db"
        slow = write_list(tmp_path / "s.json", [{"url": file_server.add("/s", b"s", delay=30)}])
        holder = spawn(run_args(slow, journal, tmp_path / "1.jsonl", tmp_path / "c"), cli_path)
        try:
            wait_for(lambda: file_server.request_count("/s") == 1, "the first run's request")
            listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
            started = time.monotonic()
            second = subprocess.run(
                [str(cli_path), *run_args(listing, journal, tmp_path / "2.jsonl", tmp_path / "c")],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert time.monotonic() - started < 10
            assert second.returncode == 2
            errors = [line for line in second.stderr.splitlines() if line.startswith("Error")]
            assert errors == [
                f"Error: journal {journal} is in use by another run "
                f"(locked through {lock_path(journal)})"
            ]
            assert file_server.request_count("/a") == 0
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.communicate(timeout=20)
        # The kernel dropped the killed holder's lock: the journal is free again.
        Journal(journal).close()

    def test_busy_in_process(self, tmp_path: Path) -> None:
        """A second Journal on one path is refused while the first is open, and free after."""
        first = Journal(tmp_path / "j.db")
        with pytest.raises(JournalBusyError, match="in use by another run"):
            Journal(tmp_path / "j.db")
        first.close()
        Journal(tmp_path / "j.db").close()


class TestBadJournal:
    """A journal path that cannot be a journal is a one-line usage error."""

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            (b"this is not a database at all, just some text" * 30, "not a journal database"),
            (None, "not a journal of download-pipeline-processor"),
        ],
    )
    def test_run_refuses_non_journal(
        self, tmp_path: Path, content: bytes | None, problem: str
    ) -> None:
        """Text, or another application's SQLite file: exit 2 before any request."""
        path = tmp_path / "j.db"
        if content is None:
            connection = sqlite3.connect(path)
            connection.execute("CREATE TABLE mine (x)")
            connection.commit()
            connection.close()
        else:
            path.write_bytes(content)
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(run_args(listing, path, tmp_path / "1.jsonl", tmp_path / "c"))
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"Error: journal {path}: {problem}"
            + (" (file is not a database)" if content is not None else "")
        ]

    def test_newer_schema_refused(self, tmp_path: Path) -> None:
        """A journal of a later schema version is refused, saying to upgrade."""
        Journal(tmp_path / "j.db").close()
        connection = sqlite3.connect(tmp_path / "j.db")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        connection.close()
        result = invoke(["journal", str(tmp_path / "j.db")])
        assert result.exit_code == 2
        assert "newer than this version understands" in result.stderr
        assert "Traceback" not in result.stderr

    def test_skip_failed_needs_a_journal(self, tmp_path: Path) -> None:
        """--skip-failed without --journal is exit 2, not a silent no-op."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(["--files", str(listing), "--skip-failed"])
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            "Error: --skip-failed needs --journal: only a journal knows what failed"
        )

    def test_folder_refused(self, tmp_path: Path) -> None:
        """--journal naming a folder is exit 2."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(["--files", str(listing), "--journal", str(tmp_path)])
        assert result.exit_code == 2
        assert "--journal" in result.stderr


class TestJournalCommand:
    """download-pipeline-processor journal PATH [--json]."""

    def _journal(self, tmp_path: Path, file_server: FileServer) -> Path:
        entries = [{"id": f"ok{i}", "url": file_server.add(f"/ok{i}", b"o")} for i in range(3)]
        entries += [{"id": f"gone{i}", "url": file_server.url(f"/gone{i}")} for i in range(5)]
        entries += [{"id": "broken", "url": file_server.add("/broken", b"", statuses=(500,))}]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"))
        return journal

    def test_text(self, tmp_path: Path, file_server: FileServer) -> None:
        """Counts by status, then failures by reason, largest first, with up to 3 example ids."""
        journal = self._journal(tmp_path, file_server)
        result = invoke(["journal", str(journal)])
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"{journal}: 9 entries, 1 run(s); the last started ")
        assert lines[1:4] == ["  succeeded    3", "  failed       6", "  interrupted  0"]
        assert lines[4] == "failures by reason:"
        assert lines[5].startswith("  5  download: ")
        assert "404" in lines[5]
        examples = lines[5].rpartition("(e.g. ")[2]
        assert examples.endswith(", ...)")
        assert set(examples.removesuffix(", ...)").split(", ")) < {f"gone{i}" for i in range(5)}
        assert lines[6].startswith("  1  download: ")
        assert "500" in lines[6]
        assert lines[6].endswith("(e.g. broken)")

    def test_groups_as_the_run_summary_does(self, tmp_path: Path, file_server: FileServer) -> None:
        """Messages differing only in details (digests) form one group named as in the summary."""
        entries = [
            {"id": f"bad{i}", "url": file_server.add(f"/b{i}", bytes([i])), "sha256": "0" * 64}
            for i in range(3)
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"))
        result = invoke(["journal", str(journal), "--json"])
        assert result.exit_code == 0, result.stderr
        (group,) = json.loads(result.stdout)["failures"]
        assert (group["stage"], group["reason"], group["count"]) == (
            "download",
            "sha256 mismatch",
            3,
        )
        assert sorted(group["examples"]) == ["bad0", "bad1", "bad2"]

    def test_json(self, tmp_path: Path, file_server: FileServer) -> None:
        """--json: the same as one object for machines."""
        journal = self._journal(tmp_path, file_server)
        result = invoke(["journal", str(journal), "--json"])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["entries"] == 9
        assert data["by_status"] == {"succeeded": 3, "failed": 6, "interrupted": 0}
        assert data["runs"] == 1
        assert data["last_run"]["finished_at"]
        (gone, broken) = data["failures"]
        assert (gone["count"], gone["stage"], len(gone["examples"])) == (5, "download", 3)
        assert set(gone["examples"]) < {f"gone{i}" for i in range(5)}
        assert "404" in gone["reason"]
        assert (broken["count"], broken["examples"]) == (1, ["broken"])

    def test_missing_journal(self, tmp_path: Path) -> None:
        """A missing journal is one line and exit 2; no file is made."""
        result = invoke(["journal", str(tmp_path / "nope.db")])
        assert result.exit_code == 2
        assert result.stderr.strip() == f"Error: journal {tmp_path / 'nope.db'}: no such file"
        assert not (tmp_path / "nope.db").exists()

    def test_corrupt_journal(self, tmp_path: Path) -> None:
        """A file that is not a database is one line and exit 2."""
        (tmp_path / "j.db").write_bytes(os.urandom(4096))
        result = invoke(["journal", str(tmp_path / "j.db")])
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "not a journal" in result.stderr


# -- killed runs: real processes, real signals ------------------------------------------------


def spawn(args: list[str], cli_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(cli_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
    )


def wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def corpus(server: FileServer, count: int = 200) -> list[dict[str, str]]:
    """Small files, every 25th slow, so a run lasts long enough to be cut anywhere."""
    return [
        {
            "id": f"e{i:03}",
            "url": server.add(f"/e{i:03}", b"e" * (i + 1), delay=0.4 if i % 25 == 7 else 0),
        }
        for i in range(count)
    ]


def rerun_finishes_the_job(
    tmp_path: Path, server: FileServer, cli_path: Path, *, listing: Path, journal: Path, tag: str
) -> None:
    """After a cut run: the rerun requests nothing the journal holds as succeeded, and every
    other entry reaches the post-processor."""
    entries = json.loads(listing.read_text())
    done = succeeded_ids(journal)
    before = len(server.request_log)
    report = tmp_path / f"rerun-{tag}.jsonl"
    proc = subprocess.run(
        [str(cli_path), *run_args(listing, journal, report, tmp_path / "c"), "--skip-failed"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    requested = set(requested_paths(server, before))
    assert not requested & {f"/{i}" for i in done}, tag
    rerun = jsonl_ids(report)
    assert not set(rerun) & done, tag
    assert set(rerun) | done == {entry["id"] for entry in entries}, tag
    assert len(rerun) == len(set(rerun)), tag
    assert succeeded_ids(journal) == {entry["id"] for entry in entries}, tag
    if done:
        assert f"{len(done)} skipped (journal)" in proc.stderr, tag


@POSIX_ONLY
class TestKilledRuns:
    """A run cut by kill -9, Ctrl-C or SIGTERM is finished by a rerun with the same journal."""

    def test_kill_9_at_random_moments(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """kill -9 at three moments of a 200-file run; each rerun finishes the job exactly."""
        rng = random.Random(20240501)  # noqa: S311 - kill moments, not secrets
        listing = write_list(tmp_path / "l.json", corpus(file_server))
        for trial, reached in enumerate((0, 60, 140)):
            journal = tmp_path / f"j{trial}.db"
            report = tmp_path / f"cut{trial}.jsonl"
            proc = spawn(run_args(listing, journal, report, tmp_path / "c"), cli_path)
            wait_for(lambda: len(jsonl_ids(report)) >= reached, "files to finish")  # noqa: B023
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=20)
            assert proc.returncode == -signal.SIGKILL
            rerun_finishes_the_job(
                tmp_path, file_server, cli_path, listing=listing, journal=journal, tag=str(trial)
            )

    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_graceful_stop(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, sig: int, code: int
    ) -> None:
        """Ctrl-C or SIGTERM: exit 130/143, files in flight recorded as interrupted, and the
        rerun (even with --skip-failed) finishes the job."""
        listing = write_list(tmp_path / "l.json", corpus(file_server))
        journal = tmp_path / "j.db"
        report = tmp_path / "cut.jsonl"
        proc = spawn(
            [*run_args(listing, journal, report, tmp_path / "c"), "--download-workers", "2"],
            cli_path,
        )
        wait_for(lambda: len(jsonl_ids(report)) >= 20, "files to finish")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err[-2000:]
        assert "not started" in err
        rows = journal_rows(journal)
        # The journal was closed cleanly: every file the post-processor saw is in it.
        assert set(rows) == set(jsonl_ids(report))
        assert {r["status"] for r in rows.values()} <= {"succeeded", "interrupted"}
        rerun_finishes_the_job(
            tmp_path, file_server, cli_path, listing=listing, journal=journal, tag=sig.name
        )


class TestDocs:
    """docs/journal.md stays true."""

    def test_example_queries_run(self, tmp_path: Path, file_server: FileServer) -> None:
        """Every SQL example of the guide runs against a real journal, and the schema table
        lists exactly the columns of each table."""
        guide = (Path(__file__).resolve().parents[1] / "docs" / "journal.md").read_text()
        entries = [
            {"id": "ok", "url": file_server.add("/ok", b"o")},
            {"id": "gone", "url": file_server.url("/gone")},
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "1.jsonl", tmp_path / "c"))
        queries = re.findall(r"```sql\n(.*?)```", guide, re.DOTALL)
        assert len(queries) >= 8
        connection = sqlite3.connect(journal)
        try:
            for query in queries:
                connection.execute(query).fetchall()
            connection.commit()
            for table in ("entries", "runs"):
                section = guide.split(f"### `{table}`", 1)[1].split("\n#", 1)[0]
                documented = set()
                for cell in re.findall(r"^\| (`[^|]+) \|", section, re.MULTILINE):
                    documented |= set(re.findall(r"`(\w+)`", cell))
                columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                assert documented == columns, table
        finally:
            connection.close()
        assert journal_rows(journal)["ok"]["status"] == "succeeded"  # the DELETE example ran
        assert "gone" not in journal_rows(journal)


# -- post-processors that publish later (holds_results) ----------------------------------------

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


def published_batches(path: Path) -> list[list[str]]:
    """The ids of every batch the ``BatchPublisher`` published (a cut last line is none)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [
        json.loads(line)["ids"] for line in text.splitlines(keepends=True) if line.endswith("\n")
    ]


def published_ids(path: Path) -> list[str]:
    return [ident for batch in published_batches(path) for ident in batch]


def holding_args(
    listing: Path, journal: Path, batches: Path, cache: Path, *extra: str
) -> list[str]:
    """A run whose post-processor publishes files in batches of 3 (``holding_plugins``)."""
    return [
        *("--files", str(listing), "--journal", str(journal), "--download-cache", str(cache)),
        *("--processor", "holding_plugins:SlowProcessor"),
        *("--post-processor", "holding_plugins:BatchPublisher"),
        *("--post-processor-option", f"path={batches}"),
        *("--retry-backoff", "0", "--max-retries", "0"),
        *extra,
    ]


class TestHeldResults:
    """A post-processor that publishes later (holds_results): the journal records a file only
    once it is published, so a kill never loses a file the journal calls done."""

    @pytest.fixture(autouse=True)
    def _plugin_modules(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.syspath_prepend(str(PLUGIN_MODULES))

    def test_only_published_files_are_recorded(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """Files a holder never publishes are left out of the journal (a warning says so), and
        the rerun does them; failed files are held and recorded the same way."""
        entries = [
            {"id": f"h{i}", "url": file_server.add(f"/h{i}", b"h" * (i + 1))} for i in range(7)
        ]
        entries.append({"id": "gone", "url": file_server.url("/gone")})
        listing = write_list(tmp_path / "l.json", entries)
        journal, batches = tmp_path / "j.db", tmp_path / "batches.jsonl"
        args = holding_args(
            listing, journal, batches, tmp_path / "c", "--processor-option", "seconds=0"
        )
        first = invoke([*args, "--post-processor-option", "publish_at_close=false"])
        assert first.exit_code == 1, first.stderr
        published = published_ids(batches)
        assert len(published) == 6  # two batches of 3; the last 2 files never published
        assert set(journal_rows(journal)) == set(published)
        assert "2 file(s) were never published" in first.stderr

        second = invoke(args)
        assert second.exit_code == 1, second.stderr
        rows = journal_rows(journal)
        assert set(rows) == {entry["id"] for entry in entries}
        assert rows["gone"]["status"] == "failed"
        assert "gone" in published_ids(batches)[6:]
        # Only what the journal did not hold as succeeded ran again.
        assert sorted(published_ids(batches)[6:]) == sorted(
            {entry["id"] for entry in entries} - (set(published) - {"gone"})
        )

    def test_a_file_the_holder_raised_on_is_recorded_at_once(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A holder that raised on a file holds nothing of it: the journal records it as failed
        at post_process without waiting for a publication that never comes."""
        entries = [{"id": f"h{i}", "url": file_server.add(f"/h{i}", b"h")} for i in range(4)]
        listing = write_list(tmp_path / "l.json", entries)
        journal, batches = tmp_path / "j.db", tmp_path / "batches.jsonl"
        args = holding_args(
            listing, journal, batches, tmp_path / "c", "--processor-option", "seconds=0"
        )
        result = invoke(
            [
                *args,
                *("--post-processor-option", "every=100"),
                *("--post-processor-option", "publish_at_close=false"),
                *("--post-processor-option", "fail_on=h2"),
            ]
        )
        assert result.exit_code == 1, result.stderr
        rows = journal_rows(journal)
        assert list(rows) == ["h2"]  # the other three were never published
        assert (rows["h2"]["status"], rows["h2"]["stage"]) == ("failed", "post_process")

    @POSIX_ONLY
    def test_kill_9_loses_no_held_file(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """kill -9 twice (the first run, then its rerun) with files held unpublished: the journal
        never says succeeded for an unpublished file, and after a rerun to the end every entry
        is in a published batch exactly once (twice only if published in the instant before a
        kill, before the journal's commit)."""
        rng = random.Random(20261207)  # noqa: S311 - kill moments, not secrets
        entries = [
            {"id": f"p{i:03}", "url": file_server.add(f"/p{i:03}", b"p" * (i + 1))}
            for i in range(90)
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal, batches = tmp_path / "j.db", tmp_path / "batches.jsonl"
        # A file waits in the buffer longer than the journal's commit interval.
        args = holding_args(
            listing, journal, batches, tmp_path / "c", "--processor-option", "seconds=0.05"
        )
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
            "PYTHONPATH": os.pathsep.join(
                filter(None, (str(PLUGIN_MODULES), os.environ.get("PYTHONPATH")))
            ),
        }
        at_risk: set[str] = set()

        def recorded_only_when_published() -> set[str]:
            # The journal first: whatever it held then was published before.
            recorded = succeeded_ids(journal)
            published = set(published_ids(batches))
            assert recorded <= published, sorted(recorded - published)
            return published - recorded

        for reached in (4, 12):
            proc = subprocess.Popen(
                [str(cli_path), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            # Checked all along the run, not only after the kill.
            deadline = time.monotonic() + 20
            while len(published_batches(batches)) < reached:
                assert time.monotonic() < deadline, "timed out waiting for batches"
                recorded_only_when_published()
                time.sleep(0.01)
            kill_at = time.monotonic() + rng.uniform(0.1, 0.3)
            while time.monotonic() < kill_at:
                recorded_only_when_published()
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=20)
            assert proc.returncode == -signal.SIGKILL
            assert len(succeeded_ids(journal)) < len(entries)  # the kill came mid-run
            at_risk |= recorded_only_when_published()
        final = subprocess.run(
            [str(cli_path), *args], capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert final.returncode == 0, final.stderr[-2000:]
        counts: dict[str, int] = {}
        for ident in published_ids(batches):
            counts[ident] = counts.get(ident, 0) + 1
        assert set(counts) == {entry["id"] for entry in entries}
        assert {i for i, n in counts.items() if n > 1} <= at_risk
        # Each run publishes a file at most once: twice killed in the window, three times.
        assert max(counts.values()) <= 3
        assert succeeded_ids(journal) == set(counts)


# -- results that outlive reruns: export, the result column, append under a journal -----------

#: The status word of a good outcome, from the one function that builds the record.
GOOD = outcome_record(None, FileData("http://127.0.0.1/x"))["status"]


def line_count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def exported(journal: Path) -> list[dict[str, Any]]:
    """``journal PATH --export -`` in process, parsed."""
    result = invoke(["journal", str(journal), "--export", "-"])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class TestExport:
    """``journal PATH --export FILE|-``: the whole job as JSON Lines, one line per entry."""

    @pytest.fixture(autouse=True)
    def _plugin_modules(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.syspath_prepend(str(PLUGIN_MODULES))

    @POSIX_ONLY
    def test_kills_and_reruns_export_one_line_per_entry(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Two runs cut by kill -9 and a rerun to the end (jsonl without append): results.jsonl
        never shrinks, and the export has exactly one line per entry, in input order, each the
        latest outcome with its result, as jsonl wrote it."""
        entries = []
        for i in range(300):
            if i % 50 == 13:  # never found
                url = file_server.url(f"/missing{i}")
            else:  # every 20th: not found the first time, found after
                statuses = (404, 200) if i % 20 == 5 else (200,)
                url = file_server.add(f"/r{i:03}", b"r" * (i + 1), statuses=statuses)
            # Ids out of order: the export follows the input, not the ids.
            entries.append({"id": f"r{(i * 37) % 300:03}", "url": url})
        listing = write_list(tmp_path / "l.json", entries)
        journal, results = tmp_path / "j.db", tmp_path / "results.jsonl"
        args = [
            *("--files", str(listing), "--journal", str(journal)),
            *("--processor", "holding_plugins:SlowProcessor", "--processor-option", "seconds=0.02"),
            *("--post-processor", "jsonl", "--post-processor-option", f"path={results}"),
            *(
                "--download-cache",
                str(tmp_path / "c"),
                "--retry-backoff",
                "0",
                "--max-retries",
                "0",
            ),
        ]
        env = {
            **os.environ,
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
            "PYTHONPATH": os.pathsep.join(
                filter(None, (str(PLUGIN_MODULES), os.environ.get("PYTHONPATH")))
            ),
        }
        before = b""
        for more in (50, 80):
            start = line_count(results)
            proc = subprocess.Popen(
                [str(cli_path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            wait_for(lambda: line_count(results) >= start + more, "lines")  # noqa: B023
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=20)
            assert proc.returncode == -signal.SIGKILL
            after = results.read_bytes()
            assert after.startswith(before)  # appended, never replaced
            assert len(journal_rows(journal)) < len(entries)  # cut mid-run
            before = after
        final = subprocess.run(
            [str(cli_path), *args], capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert final.returncode == 1, final.stderr[-2000:]  # the missing ones failed
        assert results.read_bytes().startswith(before)

        export = subprocess.run(
            [str(cli_path), "journal", str(journal), "--export", "-"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=env,
        )
        records = [json.loads(line) for line in export.stdout.splitlines()]
        assert [r["id"] for r in records] == [e["id"] for e in entries]
        assert [r["index"] for r in records] == list(range(len(entries)))
        rows = journal_rows(journal)
        last_run = max(row["run"] for row in rows.values())
        written: dict[str, dict[str, Any]] = {}
        for line in results.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                written[record["id"]] = record  # the latest line of each id
        for i, record in enumerate(records):
            row = rows[record["id"]]
            if i % 50 == 13:
                assert record["status"] != GOOD
                assert record["result"] is None
                assert record["error"]["stage"] == "download"
            elif row["status"] == "succeeded":
                assert (record["status"], record["result"]) == (GOOD, {"size": i + 1})
            else:  # a 404-then-200 entry first asked for in the last run
                assert i % 20 == 5
                assert row["run"] == last_run
            if row["run"] == last_run:
                # The last run was not cut: its jsonl lines are all there.
                assert record == written[record["id"]]

    def test_export_to_a_file_replaces_it_whole(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """--export FILE replaces FILE by a rename, leaving no temporary file; a failed export
        leaves FILE as it was."""
        entries = [{"id": f"x{i}", "url": file_server.add(f"/x{i}", b"x" * i)} for i in range(4)]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "r.jsonl", tmp_path / "c"))
        out = tmp_path / "out"
        out.mkdir()
        target = out / "job.jsonl"
        target.write_text("old\n", encoding="utf-8")
        with target.open(encoding="utf-8") as old:
            result = invoke(["journal", str(journal), "--export", str(target)])
            assert result.exit_code == 0, result.stderr
            # Renamed over it: the old file was never written to.
            assert old.read() == "old\n"
        lines = target.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in lines] == ["x0", "x1", "x2", "x3"]
        written = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
        assert sorted(lines) == sorted(written)  # the very lines jsonl wrote
        assert [p.name for p in out.iterdir()] == ["job.jsonl"]
        not_a_journal = tmp_path / "plain.db"
        not_a_journal.write_bytes(b"not sqlite at all" * 100)
        failed = invoke(["journal", str(not_a_journal), "--export", str(target)])
        assert failed.exit_code == 2
        assert next(json.loads(line)["id"] for line in target.read_text().splitlines()) == "x0"
        assert [p.name for p in out.iterdir()] == ["job.jsonl"]

    def test_bad_export_is_one_line_exit_2(self, tmp_path: Path, file_server: FileServer) -> None:
        """A missing journal, a missing folder, a non-journal or --export with --json: exit 2
        with one line naming the problem, and nothing written."""
        listing = write_list(tmp_path / "l.json", [{"id": "a", "url": file_server.add("/a", b"a")}])
        journal = tmp_path / "j.db"
        invoke(run_args(listing, journal, tmp_path / "r.jsonl", tmp_path / "c"))
        (tmp_path / "plain.txt").write_text("hello", encoding="utf-8")
        cases = {
            "no such file": [str(tmp_path / "missing.db"), "--export", "-"],
            "no such folder": [str(journal), "--export", str(tmp_path / "nope" / "x.jsonl")],
            "not a journal": [str(tmp_path / "plain.txt"), "--export", str(tmp_path / "x.jsonl")],
            "cannot be used together": [str(journal), "--export", "-", "--json"],
        }
        for words, args in cases.items():
            result = invoke(["journal", *args])
            assert result.exit_code == 2, words
            assert result.stdout == "", words
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (words, result.stderr)
            assert words in lines[0], (words, result.stderr)
        assert not (tmp_path / "x.jsonl").exists()
        assert not (tmp_path / "nope").exists()


class TestAppendUnderJournal:
    """With --journal, jsonl appends by default, so no rerun shrinks its file."""

    def _entries(self, server: FileServer, tmp_path: Path) -> Path:
        entries = [{"id": f"a{i}", "url": server.add(f"/a{i}", b"a" * i)} for i in range(4)]
        entries.append({"id": "late", "url": server.add("/late", b"l", statuses=(404, 200))})
        return write_list(tmp_path / "l.json", entries)

    def test_rerun_appends_by_default(self, tmp_path: Path, file_server: FileServer) -> None:
        """A rerun with the journal adds the retried file's line after the first run's five."""
        listing = self._entries(file_server, tmp_path)
        journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
        assert invoke(run_args(listing, journal, report, tmp_path / "c")).exit_code == 1
        first = report.read_text(encoding="utf-8")
        assert len(first.splitlines()) == 5
        second = invoke(run_args(listing, journal, report, tmp_path / "c"))
        assert second.exit_code == 0, second.stderr
        text = report.read_text(encoding="utf-8")
        assert text.startswith(first)
        assert [json.loads(line)["id"] for line in text.splitlines()[5:]] == ["late"]
        assert "a rerun replaces" not in second.stderr
        # One line per entry, its latest outcome, in input order.
        records = exported(journal)
        assert [r["id"] for r in records] == ["a0", "a1", "a2", "a3", "late"]
        assert records[-1] == json.loads(text.splitlines()[-1])
        assert records[-1]["status"] == GOOD

    def test_explicit_replace_warns_once(self, tmp_path: Path, file_server: FileServer) -> None:
        """append=false with --journal is honoured (the file is replaced) with one warning
        naming the file."""
        listing = self._entries(file_server, tmp_path)
        journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
        invoke(run_args(listing, journal, report, tmp_path / "c"))
        args = [*run_args(listing, journal, report, tmp_path / "c")]
        second = invoke([*args, "--post-processor-option", "append=false"])
        assert second.exit_code == 0, second.stderr
        assert [json.loads(line)["id"] for line in report.read_text().splitlines()] == ["late"]
        warnings = [line for line in second.stderr.splitlines() if "a rerun replaces" in line]
        assert len(warnings) == 1, second.stderr
        assert "append=false" in warnings[0]
        assert str(report) in warnings[0]

    def test_without_a_journal_it_replaces(self, tmp_path: Path, file_server: FileServer) -> None:
        """Without --journal, jsonl's append stays false: a second run replaces the file."""
        listing = self._entries(file_server, tmp_path)
        report = tmp_path / "r.jsonl"
        args = checksum_report_args(listing, report, tmp_path / "c", "--retry-backoff", "0")
        invoke([*args, "--max-retries", "0"])
        invoke([*args, "--max-retries", "0"])
        assert line_count(report) == 5

    def test_a_line_cut_by_a_kill_is_ended(self, tmp_path: Path, file_server: FileServer) -> None:
        """Appending after a line a kill cut short starts a new line: the next records parse."""
        listing = self._entries(file_server, tmp_path)
        journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
        report.write_text('{"id":"cut","na', encoding="utf-8")
        invoke(run_args(listing, journal, report, tmp_path / "c"))
        lines = report.read_text(encoding="utf-8").splitlines()
        assert lines[0] == '{"id":"cut","na'
        assert len([json.loads(line) for line in lines[1:]]) == 5


#: The journal's schema version 1, as released: what an old journal holds.
SCHEMA_1 = (
    """CREATE TABLE runs (run INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
    succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE entries (id TEXT NOT NULL, url_key TEXT NOT NULL, url TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'interrupted')), stage TEXT,
    reason TEXT, http_status INTEGER, attempts INTEGER, bytes INTEGER, sha256 TEXT,
    download_seconds REAL, first_recorded_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 1, run INTEGER NOT NULL REFERENCES runs (run),
    PRIMARY KEY (id, url_key)) WITHOUT ROWID""",
)


def _schema(journal: Path) -> tuple[int, set[str]]:
    """The journal's schema version and the columns of its entries table."""
    connection = sqlite3.connect(journal)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in connection.execute("PRAGMA table_info(entries)")}
    finally:
        connection.close()
    return version, columns


class TestSchemaUpgrade:
    """A journal of an older schema opens, is upgraded in place, and keeps its rows."""

    def test_version_1_journal_is_upgraded(self, tmp_path: Path, file_server: FileServer) -> None:
        """A version-1 journal exports its rows (result null) without being changed, is
        upgraded by the next run, which skips what succeeded and records results from then on."""
        entries = [
            {"id": "old-ok", "url": file_server.add("/old-ok", b"o")},
            {"id": "old-bad", "url": file_server.add("/old-bad", b"bb")},
        ]
        listing = write_list(tmp_path / "l.json", entries)
        journal = tmp_path / "j.db"
        connection = sqlite3.connect(journal)
        for statement in SCHEMA_1:
            connection.execute(statement)
        connection.execute("PRAGMA application_id = 1146114122")  # "DPPJ"
        connection.execute("PRAGMA user_version = 1")
        connection.execute("INSERT INTO runs (run, started_at) VALUES (1, '2024-05-01T00:00')")
        for ident, status, stage, reason, at in (
            ("old-ok", "succeeded", None, None, "2024-05-01T00:01"),
            (
                "old-bad",
                "failed",
                "download",
                "PermanentDownloadError: HTTP 404",
                "2024-05-01T00:02",
            ),
        ):
            url = next(e["url"] for e in entries if e["id"] == ident)
            connection.execute(
                "INSERT INTO entries (id, url_key, url, status, stage, reason, http_status,"
                " attempts, first_recorded_at, recorded_at, run)"
                " VALUES (?, ?, ?, ?, ?, ?, 404, 1, ?, ?, 1)",
                (ident, url_key(url), url, status, stage, reason, at, at),
            )
        connection.commit()
        connection.close()

        records = exported(journal)
        assert [(r["id"], r["result"]) for r in records] == [("old-ok", None), ("old-bad", None)]
        assert records[0]["status"] == GOOD
        assert records[0]["error"] is None
        assert records[1]["error"]["stage"] == "download"
        assert "HTTP 404" in records[1]["error"]["message"]
        assert _schema(journal)[0] == 1  # a reader leaves it as the older release wrote it

        run = invoke(run_args(listing, journal, tmp_path / "r.jsonl", tmp_path / "c"))
        assert run.exit_code == 0, run.stderr
        version, columns = _schema(journal)
        assert version == SCHEMA_VERSION
        assert {"result", "input_index"} <= columns
        assert "1 skipped (journal)" in run.stderr
        records = exported(journal)
        assert [r["id"] for r in records] == ["old-bad", "old-ok"]  # input order, old rows last
        written = json.loads((tmp_path / "r.jsonl").read_text(encoding="utf-8"))
        assert records[0] == written  # retried: its new outcome, with its result
        assert records[0]["status"] == GOOD
        assert records[0]["result"] is not None
        assert records[1]["result"] is None  # skipped: the old row as it was
