"""What the live progress view costs: files/s with ``--progress`` and ``--no-progress``.

Run from the repository root, with the project installed in ``.venv``::

    .venv/bin/python -m benchmarks.progress_cost              # 5000 files, 5 reps each way
    .venv/bin/python -m benchmarks.progress_cost --files 1000 --reps 3

The small corpus's shape (N distinct 16 KiB files, as the main benchmark's
``small`` case) from ``benchmarks.slow_server`` on 127.0.0.1 with no delay,
in its own process; the ``requests`` downloader, the ``checksum`` processor
and a post-processor that discards (so neither mode pays for per-file log
lines).  The CLI runs as a real process with stderr on a pseudo-terminal
(which this script drains, as a terminal would), alternately with and
without the view; files/s is taken from the run's own ``--summary-json``
(files through the pipeline / elapsed), so interpreter start-up is out of
it.  It prints each mode's runs and median, and the median of the paired
ratios (each pair ran back to back, which cancels slow drifts of load).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

from benchmarks.journal_cost import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("download-pipeline-processor")


def run_in_terminal(args: list[str], columns: int = 120) -> tuple[int, int, float]:
    """Run the CLI with stderr on a pseudo-terminal; exit code, bytes drawn, CPU seconds used."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PYTHONPATH": str(ROOT),
        "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
    }
    proc = subprocess.Popen(
        [str(CLI), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    drawn = 0
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO once the process closed the terminal
                    break
                if not chunk:
                    break
                drawn += len(chunk)
            elif proc.poll() is not None:
                break
        # wait4: the child's own CPU time (user + system), start-up included.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, drawn, usage.ru_utime + usage.ru_stime
    finally:
        os.close(master)


def one_run(listing: Path, work: Path, progress: bool) -> tuple[float, int, float]:
    """One CLI run: files/s (from its summary), bytes drawn on the terminal, CPU ms per file."""
    summary = work / "summary.json"
    code, drawn, cpu = run_in_terminal(
        [
            *("--files", str(listing), "--processor", "checksum"),
            *("--post-processor", "benchmarks.journal_cost:Discard"),
            *("--download-cache", str(work / "cache"), "--summary-json", str(summary)),
            "--progress" if progress else "--no-progress",
        ]
    )
    if code != 0:
        raise SystemExit(f"a run failed (exit {code})")
    data = json.loads(summary.read_text())
    files = data["succeeded"] + data["failed"]
    return files / data["elapsed"], drawn, cpu / files * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    server = start_server(port)
    try:
        with tempfile.TemporaryDirectory(prefix="progress-cost-") as folder:
            work = Path(folder)
            listing = work / "files.json"
            listing.write_text(
                json.dumps(
                    [
                        {"id": f"f{i:06d}", "url": f"http://127.0.0.1:{port}/p/f{i:06d}.bin"}
                        for i in range(args.files)
                    ]
                )
            )
            one_run(listing, work, False)  # warm-up: page cache, server connections
            runs: dict[bool, list[tuple[float, int, float]]] = {True: [], False: []}
            for rep in range(args.reps):
                for progress in (True, False) if rep % 2 == 0 else (False, True):
                    runs[progress].append(one_run(listing, work, progress))
        print(f"{args.files} files per run, {args.reps} runs each way, stderr on a pseudo-terminal")
        print(f"{'mode':<14} {'files/s':>8} {'CPU ms/file':>12} {'drawn':>10}   runs (files/s)")
        for progress, label in ((False, "--no-progress"), (True, "--progress")):
            speeds = [run[0] for run in runs[progress]]
            drawn = statistics.median(run[1] for run in runs[progress])
            cpu = statistics.median(run[2] for run in runs[progress])
            listed = ", ".join(f"{speed:,.0f}" for speed in speeds)
            median = statistics.median(speeds)
            print(f"{label:<14} {median:>8,.0f} {cpu:>12.3f} {drawn:>10,.0f}   {listed}")
        # Each pair ran back to back: their ratio cancels slow drifts of load.
        paired = statistics.median(on[0] / off[0] for on, off in zip(runs[True], runs[False]))
        cpu_ratio = statistics.median(on[2] / off[2] for on, off in zip(runs[True], runs[False]))
        print(
            f"with/without: files/s median of pairs {paired:.3f} "
            f"({(1 - paired) * 100:+.1f} % slower with the view); "
            f"CPU per file {(cpu_ratio - 1) * 100:+.1f} %"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
