"""The installed command line with ``jsonl`` and ``sqlite`` side by side."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from download_pipeline_processor.testing import FileServer

Query = Callable[..., list[sqlite3.Row]]

CLI = Path(sys.executable).with_name("download-pipeline-processor")


class TestCli:
    def test_jsonl_and_sqlite_together(
        self, tmp_path: Path, db: Path, query: Query, entries: list[dict[str, Any]], secret: str
    ) -> None:
        """A shared ``db=`` and a targeted ``jsonl.path=`` feed both reports the same outcomes."""
        files = tmp_path / "files.json"
        files.write_text(json.dumps(entries), encoding="utf-8")
        out = tmp_path / "out.jsonl"
        # Load only this plugin, so other installed plugins cannot change the run.
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "sqlite"}
        completed = subprocess.run(
            [
                str(CLI),
                "--files",
                str(files),
                "--processor",
                "checksum",
                "--post-processor",
                "jsonl",
                "--post-processor",
                "sqlite",
                "--post-processor-option",
                f"db={db}",
                "--post-processor-option",
                f"jsonl.path={out}",
                "--retry-backoff",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert completed.returncode == 1, completed.stderr
        lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        from_jsonl = {line["id"]: line["status"] for line in lines}
        assert from_jsonl == {
            "alpha": "succeeded",
            "bravo": "succeeded",
            "secret": "succeeded",
            "missing": "failed",
        }
        rows = query("SELECT id, status, error_stage, url FROM files")
        assert {row["id"]: row["status"] for row in rows} == from_jsonl
        assert {row["id"]: row["error_stage"] for row in rows}["missing"] == "download"
        assert {row["id"]: row["url"] for row in rows} == {
            line["id"]: line["url"] for line in lines
        }
        (run,) = query("SELECT total, succeeded, failed, interrupted FROM files_runs")
        assert tuple(run) == (4, 3, 1, 0)
        assert secret not in out.read_text(encoding="utf-8")
        assert secret not in completed.stderr + completed.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_sigkill_keeps_every_finished_file(
        self, tmp_path: Path, db: Path, query: Query, server: FileServer
    ) -> None:
        """After SIGKILL, every file that finished 1.5 s before is a row and a jsonl line.

        The default batch of 500 rows is never filled: only the time bound writes them.
        """
        # The hanging file is first, so it holds a worker while the quick ones finish.
        hanging = {"id": "hang", "url": server.add("/hang", b"h", delay=60)}
        quick = [{"id": f"q{i}", "url": server.add(f"/q{i}", b"q" * i)} for i in range(12)]
        files = tmp_path / "files.json"
        files.write_text(json.dumps([hanging, *quick]), encoding="utf-8")
        out = tmp_path / "out.jsonl"
        # dummy, last, logs "processed ID" once jsonl and sqlite have had the
        # file: the moment the file finished, seen from outside the process.
        args = ["--files", str(files), "--processor", "checksum"]
        args += ["--post-processor", "jsonl", "--post-processor", "sqlite"]
        args += ["--post-processor", "dummy"]
        args += ["--post-processor-option", f"sqlite.db={db}"]
        args += ["--post-processor-option", f"jsonl.path={out}"]
        args += ["--download-cache", str(tmp_path / "cache"), "--download-workers", "4"]
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "sqlite"}
        log = tmp_path / "stderr.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [str(CLI), *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        try:
            deadline = time.monotonic() + 30
            while log.read_text().count("INFO processed q") < len(quick):
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.05)
            time.sleep(1.5)
            assert proc.poll() is None  # still waiting for the hanging file
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        finished = {entry["id"] for entry in quick}
        assert {row["id"] for row in query("SELECT id FROM files")} == finished
        lines = out.read_text(encoding="utf-8").splitlines()
        assert {json.loads(line)["id"] for line in lines} == finished
