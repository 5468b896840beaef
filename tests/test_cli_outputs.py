"""What a run writes: output paths checked before the first request, and standard output.

Through the installed console script, as users run it: a real process, real
pipes, a real loopback server that counts requests.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from cli_helpers import write_list
from download_pipeline_processor.testing import (
    Answer,
    FileServer,
    Wait,
    leftover_files,
    raw_ok,
    run_command_bounded,
)

#: No installed plugin loads: the built-ins are all these runs need, and start-up is faster.
ENV = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""}

#: A folder that exists yet cannot be written, even by root: sysfs takes no new files.
UNWRITABLE = Path("/sys")

needs_sysfs = pytest.mark.skipif(
    not UNWRITABLE.is_dir(), reason="needs /sys, a folder no one can add a file to"
)


def _run(cli_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command_bounded([str(cli_path), *args], ENV, timeout=60)


def _one_error_line(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 2, one line on stderr holding every one of ``parts``, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def _output_args(flag: str, path: Path) -> list[str]:
    """The arguments that make a run write ``path`` through ``flag``."""
    if flag == "jsonl":
        return ["--post-processor", "jsonl", "--post-processor-option", f"path={path}"]
    return [flag, str(path)]


class TestOutputPathsCheckedFirst:
    """Every file the run will write is checked before the first request."""

    @pytest.mark.parametrize("flag", ["--log-file", "--summary-json", "jsonl"])
    def test_missing_folder(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, flag: str
    ) -> None:
        """A path in a folder that does not exist: exit 2 naming the flag and path, no request."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        target = tmp_path / "no-such-folder" / "out.txt"
        cache = tmp_path / "cache"
        proc = _run(
            cli_path,
            "--files",
            str(listing),
            "--download-cache",
            str(cache),
            *_output_args(flag, target),
        )
        _one_error_line(proc, flag, str(target), "no such folder")
        assert file_server.request_count() == 0
        assert not cache.exists()
        assert not target.parent.exists()

    @needs_sysfs
    @pytest.mark.parametrize("flag", ["--log-file", "--summary-json", "jsonl"])
    def test_folder_not_writable(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, flag: str
    ) -> None:
        """A path in a folder that cannot be written (/sys, even for root): exit 2, no request."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        target = UNWRITABLE / "dpp-out.txt"
        proc = _run(cli_path, "--files", str(listing), *_output_args(flag, target))
        _one_error_line(proc, flag, str(target), "cannot be written")
        assert file_server.request_count() == 0

    def test_dry_run_checks_the_log_file(self, tmp_path: Path, cli_path: Path) -> None:
        """--dry-run refuses a --log-file in a missing folder too, and makes nothing."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        target = tmp_path / "missing" / "run.log"
        proc = _run(cli_path, "--files", str(listing), "--dry-run", "--log-file", str(target))
        _one_error_line(proc, "--log-file", str(target), "no such folder")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json"]


class TestSummaryOnStandardOutput:
    """``--summary-json -`` writes the summary to standard output."""

    def test_dash_is_standard_output(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """The summary JSON is the whole of standard output, and no file named '-' is made."""
        entries = [{"id": str(i), "url": file_server.add(f"/f{i}", b"x" * i)} for i in range(3)]
        listing = write_list(tmp_path / "l.json", entries)
        # subprocess.run kills the process if it outlives the timeout.
        proc = subprocess.run(
            [str(cli_path), "--files", str(listing), "--summary-json", "-"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert (summary["total"], summary["succeeded"], summary["failed"]) == (3, 3, 0)
        assert not (tmp_path / "-").exists()
        assert "3 files: 3 succeeded, 0 failed" in proc.stderr

    def test_dash_beside_a_post_processor_on_standard_output(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """The summary and jsonl lines would mix on standard output: exit 2, no request."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        proc = _run(
            cli_path, "--files", str(listing), "--post-processor", "jsonl", "--summary-json", "-"
        )
        _one_error_line(proc, "--summary-json -", "post-processor 'jsonl'", "standard output")
        assert file_server.request_count() == 0


class TestReaderClosesStandardOutput:
    """A reader that closes standard output early (``| head``) ends the run quietly."""

    def _head_two_lines(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, *extra: str
    ) -> tuple[int, str]:
        """Run over 302 files, read two lines, close the pipe; the exit code and stderr.

        Two files answer at once; the other few hundred wait until the pipe
        is closed, so their lines meet a reader that is gone.
        """
        entries = [{"id": f"now{i}", "url": file_server.add(f"/now{i}", b"n")} for i in range(2)]
        held = Answer(Wait(), raw_ok(b"later"))
        entries += [
            {"id": f"later{i}", "url": file_server.script(f"/later{i}", held)} for i in range(300)
        ]
        listing = write_list(tmp_path / "l.json", entries)
        cache = tmp_path / "cache"
        args = ["--files", str(listing), "--processor", "checksum", "--post-processor", "jsonl"]
        args += ["--download-cache", str(cache), "--retry-backoff", "0", *extra]
        proc = subprocess.Popen(
            [str(cli_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            assert proc.stdout is not None
            first = [proc.stdout.readline() for _ in range(2)]
            assert sorted(json.loads(line)["id"] for line in first) == ["now0", "now1"]
            proc.stdout.close()
            file_server.release.set()
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert leftover_files(cache) == []
        return proc.returncode, err

    def test_head_two_lines(self, tmp_path: Path, file_server: FileServer, cli_path: Path) -> None:
        """After two lines are read and the pipe closed: exit 141, no traceback, nothing failed."""
        code, err = self._head_two_lines(tmp_path, file_server, cli_path)
        assert code == 141, err
        assert "Traceback" not in err
        assert "failed" not in err.lower()
        assert "Broken pipe" not in err

    def test_a_line_that_never_arrived_is_not_journaled(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Under --journal, only the files whose lines reached the reader are recorded succeeded.

        The file whose line met the closed pipe is interrupted, so a rerun does it again.
        """
        journal = tmp_path / "job.db"
        code, err = self._head_two_lines(tmp_path, file_server, cli_path, "--journal", str(journal))
        assert code == 141, err
        with sqlite3.connect(journal) as db:
            succeeded = {row[0] for row in db.execute(
                "SELECT id FROM entries WHERE status = 'succeeded'"
            )}
        assert succeeded == {"now0", "now1"}

    def test_summary_to_a_reader_gone(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """--summary-json - with standard output closed from the start: exit 141, stderr quiet."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        args = ["--files", str(listing), "--summary-json", "-"]
        args += ["--download-cache", str(tmp_path / "cache")]
        proc = subprocess.Popen(
            [str(cli_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            assert proc.stdout is not None
            proc.stdout.close()  # the only reader: gone before the run writes anything
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 141, err
        assert "Traceback" not in err
        assert "Broken pipe" not in err
        assert "1 file: 1 succeeded" not in err  # no summary either: the run ended quietly
        assert "processed " in err  # the log still went to stderr
        assert file_server.request_count() == 1
