"""The live progress view, seen as a user sees it: the CLI in a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor._progress_view import (
    PLAIN_INTERVAL,
    PLAIN_INTERVAL_ENV,
    plain_interval,
)
from download_pipeline_processor.testing import FileServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"
# Control sequences rich writes: CSI (cursor moves, erase, colours) and the few others.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
COLUMNS = 140
# A log line: a timestamp first (the terminal, not the view, wraps those).
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:")

# The live view of a run far bigger than a test can make, drawn in the terminal
# by the view's own class: a stand-in replaces the run's RunProgress, since
# hundreds of GB and millions of files cannot be downloaded in a test.
HUGE_RUN_VIEW = """
import time
from rich.console import Console
from download_pipeline_processor._progress_view import _RunProgressDisplay

class HugeRun:
    total = 9_876_543
    failed = 123_456
    in_flight = 0

    def __init__(self):
        self.start = time.monotonic()

    @property
    def done(self):
        return 1_234_567 + int((time.monotonic() - self.start) * 20)

    @property
    def bytes_downloaded(self):
        return 987_654_321_000 + int((time.monotonic() - self.start) * 3e9)

    def oldest_in_flight(self, limit):
        return []

display = _RunProgressDisplay(Console(stderr=True), HugeRun())
display.start()
time.sleep(1.5)
display.refresh()
display.stop()
"""


def cli_env() -> dict[str, str]:
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PYTHONPATH": os.pathsep.join(
            [str(PLUGIN_MODULES), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
    }
    # Variables that would make rich draw differently from a plain terminal.
    for name in (
        "NO_COLOR",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
        "COLUMNS",
        "LINES",
    ):
        env.pop(name, None)
    return env


def run_in_terminal(
    cli_path: Path | str,
    args: list[str],
    timeout: float = 60,
    interrupt_when: str | None = None,
    columns: int = COLUMNS,
) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; exit code, the terminal's bytes, stdout.

    With ``interrupt_when``, SIGINT is sent once that text has appeared on the terminal.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [str(cli_path), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=cli_env(),
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
                if interrupt_when is not None and interrupt_when.encode() in screen:
                    proc.send_signal(signal.SIGINT)
                    interrupt_when = None
            elif proc.poll() is not None:
                break
        else:
            pytest.fail(f"the CLI did not end within {timeout} s")
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, screen.decode("utf-8", errors="replace"), out


def frames(screen: str) -> list[str]:
    """Every line the terminal showed, escape codes removed, redraws (``\\r``) split apart."""
    plain = ESCAPES.sub("", screen)
    return [part for line in plain.split("\n") for part in line.split("\r") if part.strip()]


def planted_job(
    server: FileServer, count: int = 200, delay: float = 0.03, size: int = 1000
) -> list[dict[str, Any]]:
    """``count`` slow files of ``size`` bytes with planted failures: 4 missing, 2 wrong sha256,
    2 unparsable."""
    entries: list[dict[str, Any]] = []
    for index in range(count):
        ident = f"bad-{index}" if index in (5, 50) else f"f{index}"
        entry: dict[str, Any] = {
            "id": ident,
            "url": server.add(f"/f{index}", b"x" * size, delay=delay),
        }
        if index in (7, 70):
            entry["sha256"] = "0" * 64
        if index in (3, 30, 130, 160):
            entry["url"] = server.url(f"/missing{index}")
        entries.append(entry)
    return entries


def job_args(listing: Path, cache: Path) -> list[str]:
    return [
        "--files",
        str(listing),
        "--processor",
        "progress_plugins:RejectingProcessor",
        "--max-retries",
        "0",
        "--download-cache",
        str(cache),
    ]


class TestInATerminal:
    """On a terminal the view is drawn live; the summary follows it."""

    def test_view_reaches_total_and_summary_groups_failures(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """200 slow files: the last frame shows 200/200, the summary groups the planted failures."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server)))
        code, screen, _ = run_in_terminal(cli_path, job_args(listing, tmp_path / "c"))
        assert code == 1, screen[-3000:]
        assert "\x1b[" in screen  # drawn live, not printed once
        lines = frames(screen)
        summary_at = lines.index("200 files: 192 succeeded, 8 failed")
        views = [line for line in lines[:summary_at] if re.search(r"\d+/200\b", line)]
        assert len(views) >= 2, lines[:summary_at]  # redrawn while the run went on
        assert "200/200" in views[-1]
        assert "8 failed" in views[-1]
        assert lines[summary_at + 2 :] == [
            "failures by reason:",
            "  4  HTTP 404 (download)  e.g. f3, f30, f130, ...",
            "  2  sha256 mismatch (download)  e.g. f7, f70",
            "  2  UnreadableDocumentError (process)  e.g. bad-5, bad-50",
        ]

    def test_log_lines_print_above_and_per_file_lines_stop(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Failure warnings print whole above the view; the dummy's per-file INFO lines do not."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=40, delay=0.02)))
        code, screen, _ = run_in_terminal(cli_path, job_args(listing, tmp_path / "c"))
        assert code == 1
        lines = frames(screen)
        warnings = [line for line in lines if " WARNING failed " in line]
        # Each warning a whole line of its own, starting with its timestamp.
        assert len(warnings) == 4, lines
        assert all(re.match(r"\d{4}-\d\d-\d\d ", line) for line in warnings)
        assert not [line for line in lines if " INFO processed " in line]

    def test_waiting_on_a_slow_file_names_it(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """With few files in flight, the view names the one the run waits on, URL redacted."""
        entries = [{"id": f"quick{i}", "url": file_server.add(f"/q{i}", b"q")} for i in range(3)]
        slow = file_server.add("/hanging.bin", b"s", delay=2.5)
        entries.append({"id": "the-slow-one", "url": slow + "?token=SECRET123"})
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        code, screen, _ = run_in_terminal(cli_path, job_args(listing, tmp_path / "c"))
        assert code == 0
        waiting = [line for line in frames(screen) if "the-slow-one" in line]
        assert waiting, frames(screen)
        assert "/hanging.bin" in waiting[-1]
        assert "download" in waiting[-1]
        assert "SECRET123" not in screen

    def test_interrupted_view_and_summary_count_the_input(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Ctrl-C mid-run: the summary's counts add up to the input's 300 entries."""
        entries = [
            {"id": f"f{i}", "url": file_server.add(f"/f{i}", b"z" * 100, delay=0.1)}
            for i in range(300)
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        summary_path = tmp_path / "summary.json"
        args = [*job_args(listing, tmp_path / "c"), "--download-workers", "2"]
        code, screen, _ = run_in_terminal(
            cli_path, [*args, "--summary-json", str(summary_path)], interrupt_when="/300"
        )
        assert code == 130, screen[-2000:]
        summary = json.loads(summary_path.read_text())
        assert summary["total"] == 300
        assert summary["not_started"] > 0
        assert summary["succeeded"] + summary["interrupted"] + summary["not_started"] == 300
        head = next(line for line in frames(screen) if line.startswith("300 files: "))
        assert head.endswith(
            f"{summary['interrupted']} interrupted, {summary['not_started']} not started"
        )
        assert "Traceback" not in screen

    def test_view_fits_80_columns(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """In an 80-column terminal each frame of the view is one whole line of at most 80."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=120, delay=0.02, size=50_000)))
        code, screen, _ = run_in_terminal(cli_path, job_args(listing, tmp_path / "c"), columns=80)
        assert code == 1, screen[-3000:]
        lines = frames(screen)
        views = [line for line in lines if re.search(r"\d+/120\b", line)]
        assert views, lines
        for line in views:
            assert len(line.rstrip()) <= 80, line
        # Not wrapped: count, failures, bytes, byte rate, file rate and ETA on one line.
        assert re.search(
            r"120/120 +6 failed +[\d.]+ [kM]B +[\d.]+ [kM]?B/s +[\d.]+ files/s +ETA \d:\d\d:\d\d",
            views[-1],
        ), lines
        # Whatever is not a log line (those the terminal may wrap) fits too.
        assert all(len(line.rstrip()) <= 80 for line in lines if not LOG_LINE.match(line))

    def test_big_numbers_fit_80_columns(self) -> None:
        """Millions of files, hundreds of GB at GB/s and a 100-hour ETA still fit 80 columns."""
        code, screen, _ = run_in_terminal(
            sys.executable, ["-c", HUGE_RUN_VIEW], columns=80, timeout=30
        )
        assert code == 0, screen[-3000:]
        views = [line for line in frames(screen) if "/9876543" in line]
        assert views, frames(screen)
        for line in views:
            assert len(line.rstrip()) <= 80, line
            assert re.search(r"\d{7}/9876543 +123456 failed +\d+ GB", line), line
        # Once rates are known (the second frame on): the byte rate and the ETA too.
        assert re.search(r"failed +\d+ GB +[\d.]+ GB/s .*ETA \d{3}:\d\d:\d\d", views[-1]), views

    @pytest.mark.parametrize("flag", ["--no-progress", "--quiet"])
    def test_turned_off(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, flag: str
    ) -> None:
        """--no-progress and --quiet draw no view on a terminal: no escape code at all."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=20, delay=0.0)))
        code, screen, _ = run_in_terminal(cli_path, [*job_args(listing, tmp_path / "c"), flag])
        assert code == 1
        assert "\x1b" not in screen
        assert "failures by reason:" in screen


class TestNotATerminal:
    """Piped or redirected, stderr never gets an escape code."""

    def test_piped_run_has_no_escape_codes(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """The same planted run with stderr on a pipe, even with --progress, is plain text."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=40, delay=0.0)))
        proc = subprocess.run(
            [str(cli_path), *job_args(listing, tmp_path / "c"), "--progress"],
            capture_output=True,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        assert b"\x1b" not in proc.stderr
        assert b"\x1b" not in proc.stdout
        assert b"40 files: 36 succeeded, 4 failed" in proc.stderr

    def test_plain_line_every_interval(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """--progress into a pipe: a plain line each interval (files done/total, failed, bytes,
        rate), never an escape code; the interval shortened here through its variable."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=60, delay=0.05)))
        proc = subprocess.run(
            [
                str(cli_path),
                *job_args(listing, tmp_path / "c"),
                "--download-workers",
                "2",
                "--progress",
            ],
            capture_output=True,
            env={**cli_env(), PLAIN_INTERVAL_ENV: "0.3"},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert b"\x1b" not in proc.stderr
        text = proc.stderr.decode()
        plain = re.findall(
            r"^progress: (\d+)/60 files done, (\d+) failed, [\d.]+ k?B, [\d.]+ k?B/s$",
            text,
            flags=re.MULTILINE,
        )
        assert len(plain) >= 2, text
        done = [int(files) for files, _ in plain]
        assert done == sorted(done)
        assert "60 files: 55 succeeded, 5 failed" in text

    def test_default_interval_is_ten_seconds(self) -> None:
        """Every 10 s unless the variable gives other (positive) seconds."""
        assert PLAIN_INTERVAL == 10.0
        assert plain_interval({}) == 10.0
        assert plain_interval({PLAIN_INTERVAL_ENV: "0.5"}) == 0.5
        assert plain_interval({PLAIN_INTERVAL_ENV: "soon"}) == 10.0
        assert plain_interval({PLAIN_INTERVAL_ENV: "0"}) == 10.0

    def test_no_plain_lines_without_progress_flag(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Piped without --progress: no progress line, however short the interval."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(planted_job(file_server, count=20, delay=0.05)))
        proc = subprocess.run(
            [str(cli_path), *job_args(listing, tmp_path / "c"), "--download-workers", "2"],
            capture_output=True,
            env={**cli_env(), PLAIN_INTERVAL_ENV: "0.1"},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        assert b"progress: " not in proc.stderr
