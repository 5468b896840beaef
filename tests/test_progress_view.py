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

from download_pipeline_processor.testing import FileServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"
# Control sequences rich writes: CSI (cursor moves, erase, colours) and the few others.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
COLUMNS = 140


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
    cli_path: Path,
    args: list[str],
    timeout: float = 60,
    interrupt_when: str | None = None,
) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; exit code, the terminal's bytes, stdout.

    With ``interrupt_when``, SIGINT is sent once that text has appeared on the terminal.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
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


def planted_job(server: FileServer, count: int = 200, delay: float = 0.03) -> list[dict[str, Any]]:
    """``count`` slow files with planted failures: 4 missing, 2 wrong sha256, 2 unparsable."""
    entries: list[dict[str, Any]] = []
    for index in range(count):
        ident = f"bad-{index}" if index in (5, 50) else f"f{index}"
        entry: dict[str, Any] = {
            "id": ident,
            "url": server.add(f"/f{index}", b"x" * 1000, delay=delay),
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
        assert summary["succeeded"] + summary["failed"] + summary["not_started"] == 300
        head = next(line for line in frames(screen) if line.startswith("300 files: "))
        assert head.endswith("not started (interrupted)")
        assert "Traceback" not in screen

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
