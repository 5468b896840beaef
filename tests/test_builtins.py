"""Tests for the built-in processors (dummy, checksum) and post-processors (dummy, jsonl)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from download_pipeline_processor.builtins._post_processors import (
    FLUSH_INTERVAL,
    DummyPostProcessor,
    JsonlPostProcessor,
)
from download_pipeline_processor.builtins._processors import (
    ALGORITHMS,
    ChecksumProcessor,
    DummyProcessor,
)
from download_pipeline_processor.errors import PluginOptionError, TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.options import resolve_options
from download_pipeline_processor.testing import FileServer, run_pipeline

SECRET_URL = "https://user:pw@example.com/a/talk.mp3?token=SECRET"


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A 3 MB file of reproducible pseudo-random bytes (more than one hashing chunk)."""
    path = tmp_path / "big.bin"
    # Seeded, not secret: the same bytes every run.
    path.write_bytes(random.Random(1).randbytes(3 * 1024 * 1024 + 17))  # noqa: S311
    return path


def downloaded(path: Path, url: str = "https://example.com/a/big.bin") -> FileData:
    """A FileData as the download stage leaves it: local_path set."""
    return FileData(url, local_path=path)


def failed(url: str = SECRET_URL) -> FileData:
    """A FileData that failed to download, with the URL's secrets in the error text."""
    file_data = FileData(url, id="7")
    file_data.fail("download", TransientDownloadError(f"HTTP 503 for {url}\nsecond line"))
    return file_data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestDummyProcessor:
    """The default processor: id, name and size."""

    def test_result(self, tmp_path: Path) -> None:
        """It returns the file's id, name and size in bytes."""
        path = tmp_path / "x.bin"
        path.write_bytes(b"12345")
        result = DummyProcessor().process(downloaded(path, "https://h/a/talk.mp3"))
        assert result == {"id": "talk", "name": "talk", "size": 5}

    def test_not_downloaded(self) -> None:
        """A file without a local path is a clear error."""
        with pytest.raises(ValueError, match="no local path"):
            DummyProcessor().process(FileData("https://h/x"))

    def test_size_from_the_download_record(self, tmp_path: Path) -> None:
        """The size the download stage recorded is the result's: no stat() of the file."""
        path = tmp_path / "talk.mp3"
        path.write_bytes(b"abc")
        file_data = downloaded(path, "https://h/a/talk.mp3")
        file_data.download.size = 3
        path.unlink()  # a stat() would fail now
        assert DummyProcessor().process(file_data)["size"] == 3


class TestChecksumProcessor:
    """Hashing in chunks."""

    def test_algorithms_are_hashlibs_guaranteed_ones(self) -> None:
        """The spelled-out list is hashlib's guaranteed set, minus the shake_* digests."""
        guaranteed = {a for a in hashlib.algorithms_guaranteed if not a.startswith("shake_")}
        assert set(ALGORITHMS) == guaranteed

    def test_sha256_matches_hashlib(self, big_file: Path) -> None:
        """The default sha256 digest and size match hashlib over the whole file."""
        result = ChecksumProcessor().process(downloaded(big_file))
        data = big_file.read_bytes()
        assert result == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    @pytest.mark.parametrize("algorithm", ["md5", "sha1", "blake2b", "sha3_256"])
    def test_algorithm_option(self, big_file: Path, algorithm: str) -> None:
        """The algorithm option selects the hashlib algorithm and names the result key."""
        result = ChecksumProcessor(algorithm=algorithm).process(downloaded(big_file))
        expected = hashlib.new(algorithm, big_file.read_bytes()).hexdigest()
        assert result[algorithm] == expected

    def test_algorithm_from_cli_option(self, big_file: Path) -> None:
        """algorithm=md5 given as KEY=VALUE resolves and builds a working processor."""
        kwargs = resolve_options(ChecksumProcessor, {"algorithm": "md5"}, "processor 'checksum'")
        result = ChecksumProcessor(**kwargs).process(downloaded(big_file))
        assert result["md5"] == hashlib.md5(big_file.read_bytes()).hexdigest()  # noqa: S324

    @pytest.mark.parametrize("algorithm", ["sha257", "", "SHA256", "shake_128"])
    def test_bad_algorithm(self, algorithm: str) -> None:
        """An unknown algorithm (or one needing a digest length) fails at construction."""
        with pytest.raises(ValueError, match="unsupported algorithm") as info:
            ChecksumProcessor(algorithm=algorithm)
        assert "sha256" in str(info.value)

    def test_unknown_option_rejected(self) -> None:
        """An option checksum does not declare is rejected before construction."""
        with pytest.raises(PluginOptionError, match="accepted options: algorithm"):
            resolve_options(ChecksumProcessor, {"algo": "md5"}, "processor 'checksum'")

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file hashes to the digest of no bytes."""
        path = tmp_path / "empty"
        path.write_bytes(b"")
        result = ChecksumProcessor().process(downloaded(path))
        assert result == {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}


class TestDummyPostProcessor:
    """The default post-processor logs one line per file."""

    def test_success_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A success is logged at INFO with the id and the result as JSON."""
        caplog.set_level(logging.INFO, logger="download_pipeline_processor")
        DummyPostProcessor().post_process({"size": 3}, FileData("https://h/a/talk.mp3"))
        (record,) = caplog.records
        assert record.levelno == logging.INFO
        assert record.getMessage() == 'processed talk: {"size":3}'

    def test_failure_logged_without_secrets(self, caplog: pytest.LogCaptureFixture) -> None:
        """A failure is one WARNING line with the stage and reason, and no URL secrets."""
        caplog.set_level(logging.INFO, logger="download_pipeline_processor")
        DummyPostProcessor().post_process(None, failed())
        (record,) = caplog.records
        message = record.getMessage()
        assert record.levelno == logging.WARNING
        assert message.startswith("failed 7 (https://example.com/a/talk.mp3?REDACTED) in download")
        assert "HTTP 503" in message
        assert "TransientDownloadError" not in message
        assert "\n" not in message
        for secret in ("SECRET", "pw", "user"):
            assert secret not in message


class TestJsonlPostProcessor:
    """One JSON object per file."""

    def test_writes_one_line_per_file(self, tmp_path: Path) -> None:
        """Each file becomes one line with id, name, redacted url, status, error and result."""
        out = tmp_path / "out.jsonl"
        post = JsonlPostProcessor(path=str(out))
        post.post_process({"size": 3, "path": Path("/x/y")}, FileData(SECRET_URL))
        post.post_process(None, failed())
        post.close()
        ok, bad = read_jsonl(out)
        assert ok == {
            "id": "talk",
            "name": "talk",
            "url": "https://example.com/a/talk.mp3?REDACTED",
            "status": "succeeded",
            "error": None,
            "result": {"size": 3, "path": "/x/y"},
            "index": None,
            "fields": {},
            "http_status": None,
            "attempts": 0,
            "size": None,
            "sha256": None,
            "elapsed": None,
        }
        assert bad["status"] == "failed"
        assert bad["result"] is None
        assert bad["error"]["stage"] == "download"
        assert bad["error"]["message"].startswith("HTTP 503 for ")
        assert bad["error"]["reason"] == "HTTP 503"
        assert "SECRET" not in out.read_text(encoding="utf-8")
        assert "pw@" not in out.read_text(encoding="utf-8")

    def test_rows_carry_index_fields_and_download_facts(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A real run's rows carry the input index, extra fields, HTTP status, attempts, time."""
        body = b"retried body"
        entries = [
            {
                "id": "retried",
                "url": file_server.add("/r", body, statuses=(503, 200)),
                "lang": "fr",
            },
            {"id": "missing", "url": file_server.add("/m", statuses=(404,)), "n": 7},
            {
                "id": "headed",
                "url": file_server.add("/h", b"h"),
                "headers": {"Authorization": "Bearer TOPSECRET"},
            },
        ]
        report = tmp_path / "report.jsonl"
        outcome = run_pipeline(
            entries,
            "checksum",
            post_processors=["jsonl"],
            post_processor_options={"path": str(report)},
            download_cache=tmp_path / "cache",
        )
        assert outcome.exit_code == 1
        rows = {row["id"]: row for row in read_jsonl(report)}
        retried, missing, headed = rows["retried"], rows["missing"], rows["headed"]
        assert (retried["index"], missing["index"], headed["index"]) == (0, 1, 2)
        assert retried["fields"] == {"lang": "fr"}
        assert missing["fields"] == {"n": 7}
        assert (retried["http_status"], retried["attempts"], retried["size"]) == (200, 2, 12)
        assert retried["sha256"] == hashlib.sha256(body).hexdigest()
        assert isinstance(retried["elapsed"], float)
        assert retried["elapsed"] >= 0
        assert (missing["status"], missing["http_status"], missing["attempts"]) == (
            "failed",
            404,
            1,
        )
        assert headed["fields"] == {"headers": {"Authorization": "REDACTED"}}
        assert "TOPSECRET" not in report.read_text(encoding="utf-8")
        # The keys rows had before stay as they were.
        assert list(retried)[:6] == ["id", "name", "url", "status", "error", "result"]

    def test_line_flushed_per_file(self, tmp_path: Path) -> None:
        """A line is on disk as soon as post_process returns, before close()."""
        out = tmp_path / "out.jsonl"
        post = JsonlPostProcessor(path=str(out))
        try:
            post.post_process(1, FileData("https://h/x"))
            assert len(read_jsonl(out)) == 1
        finally:
            post.close()

    def test_burst_flushed_without_a_next_file(self, tmp_path: Path) -> None:
        """Lines written in a burst reach the file within FLUSH_INTERVAL, with no later file."""
        out = tmp_path / "out.jsonl"
        post = JsonlPostProcessor(path=str(out))
        try:
            for value in range(5):
                post.post_process(value, FileData(f"https://h/{value}"))
            deadline = time.monotonic() + 1 + FLUSH_INTERVAL
            while len(read_jsonl(out)) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [r["result"] for r in read_jsonl(out)] == [0, 1, 2, 3, 4]
        finally:
            post.close()

    def test_close_stops_the_flush_thread(self, tmp_path: Path) -> None:
        """close() ends the timed flush's thread and leaves every line in the file."""
        out = tmp_path / "out.jsonl"
        before = set(threading.enumerate())
        post = JsonlPostProcessor(path=str(out))
        for value in range(3):
            post.post_process(value, FileData(f"https://h/{value}"))
        started = set(threading.enumerate()) - before
        assert started
        post.close()
        assert [r["result"] for r in read_jsonl(out)] == [0, 1, 2]
        assert not started & set(threading.enumerate())

    def test_replaces_by_default(self, tmp_path: Path) -> None:
        """Without append an existing file is replaced."""
        out = tmp_path / "out.jsonl"
        out.write_text('{"old": true}\n', encoding="utf-8")
        post = JsonlPostProcessor(path=str(out))
        post.post_process(1, FileData("https://h/x"))
        post.close()
        assert [r["result"] for r in read_jsonl(out)] == [1]

    def test_append_option(self, tmp_path: Path) -> None:
        """append=true (as given on the command line) adds to an existing file."""
        out = tmp_path / "out.jsonl"
        for value in (1, 2):
            options = resolve_options(
                JsonlPostProcessor, {"path": str(out), "append": "true"}, "post-processor 'jsonl'"
            )
            post = JsonlPostProcessor(**options)
            post.post_process(value, FileData("https://h/x"))
            post.close()
        assert [r["result"] for r in read_jsonl(out)] == [1, 2]

    def test_stdout_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a path, lines go to standard output, which close() leaves open."""
        post = JsonlPostProcessor()
        post.post_process("r", FileData("https://h/a/x.bin"))
        post.close()
        (line,) = capsys.readouterr().out.splitlines()
        assert json.loads(line)["result"] == "r"
        print("still open")
        assert capsys.readouterr().out == "still open\n"

    def test_non_json_results_become_strings(self, tmp_path: Path) -> None:
        """Sets, bytes and arbitrary objects in a result are written as JSON-safe values."""
        out = tmp_path / "out.jsonl"
        post = JsonlPostProcessor(path=str(out))
        post.post_process({"tags": {"a"}, "raw": b"hi", "obj": 1j}, FileData("https://h/x"))
        post.close()
        (record,) = read_jsonl(out)
        assert record["result"] == {"tags": ["a"], "raw": "hi", "obj": "1j"}


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
class TestJsonlCrash:
    """What a killed run leaves in the jsonl report."""

    def test_sigkill_keeps_every_finished_file(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """After SIGKILL, every file that finished 1.5 s before is a line in the report."""
        # The hanging file is first, so it holds a worker while the quick ones finish.
        hanging = {"id": "hang", "url": file_server.add("/hang", b"h", delay=60)}
        quick = [{"id": f"q{i}", "url": file_server.add(f"/q{i}", b"q" * i)} for i in range(12)]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps([hanging, *quick]), encoding="utf-8")
        report = tmp_path / "report.jsonl"
        # dummy, after jsonl, logs "processed ID" once jsonl has had the file:
        # the moment the file finished, seen from outside the process.
        args = ["--files", str(listing), "--processor", "checksum"]
        args += ["--post-processor", "jsonl", "--post-processor", "dummy"]
        args += ["--post-processor-option", f"jsonl.path={report}"]
        args += ["--download-cache", str(tmp_path / "cache"), "--download-workers", "4"]
        log = tmp_path / "stderr.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [str(cli_path), *args],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
            )
        try:
            _wait_for(lambda: log.read_text().count("INFO processed q") == len(quick), 30)
            time.sleep(1.5)
            assert proc.poll() is None  # still waiting for the hanging file
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert {r["id"] for r in read_jsonl(report)} == {entry["id"] for entry in quick}
