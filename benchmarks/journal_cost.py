"""What ``--journal`` costs per file: files/s with and without it, in the same session.

Run from the repository root, with the project installed in ``.venv``::

    .venv/bin/python -m benchmarks.journal_cost              # 5000 files, 5 reps each way
    .venv/bin/python -m benchmarks.journal_cost --files 500 --reps 3

Two corpora, each run alternately without and with a journal (a fresh
journal every time, so every file is recorded), medians of the repetitions:

- ``loopback``: N distinct 16 KiB files from ``benchmarks.slow_server`` on
  127.0.0.1 with no delay (its own process, so its CPU is not the client's
  GIL), the ``requests`` downloader and the ``checksum`` processor: the
  small-corpus case of the main benchmark;
- ``simulated``: ``--simulate-downloads`` with no sleep, where a file costs
  the least, so the journal's share of it is the largest.

``--recorder`` times the journal's recorder alone (the post-processor the
pipeline adds), per file, commits included: the steadiest figure on a
machine shared with other work.

It also times a rerun on a full journal, which requests nothing and skips
every entry (``skip`` row).  It prints one row per corpus and mode, and the
ratio of the files/s with the journal to those without.

``--loss`` measures instead what a ``kill -9`` loses: a run is killed at
random moments, and for every file the post-processor saw (its time
stamped, unbuffered) but the journal does not hold, how long before the
kill its post-processing ended.  The largest such age is the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from download_pipeline_processor import BasePostProcessor, FileData, ProcessingPipeline

ROOT = Path(__file__).resolve().parent.parent
BODY = 16 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.slow_server", "--port", str(port), "--delay", "0"],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the loopback server did not start")


class Discard(BasePostProcessor):
    """Takes every result and keeps nothing: the run's own cost only."""

    def post_process(self, result: Any, file_data: FileData) -> None:
        pass


def one_run(
    entries: list[dict[str, str]], work: Path, journal: Path | None, **settings: Any
) -> tuple[float, float]:
    """Files per second of one in-process run, and this process's CPU microseconds per file."""
    pipeline = ProcessingPipeline(
        "checksum", Discard(), journal=journal, download_cache=work / "cache", **settings
    )
    started, cpu = time.perf_counter(), time.process_time()
    code = pipeline.run(entries)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"a run failed (exit {code}): {pipeline.summary}")
    return len(entries) / elapsed, cpu / len(entries) * 1e6


def cost(args: argparse.Namespace) -> None:
    port = free_port()
    server = start_server(port)
    try:
        corpora = {
            "loopback": (
                [
                    {"id": f"f{i:06d}", "url": f"http://127.0.0.1:{port}/j/f{i:06d}.bin"}
                    for i in range(args.files)
                ],
                {},
            ),
            "simulated": (
                [
                    {"id": f"s{i:06d}", "url": f"http://sim.invalid/s{i:06d}"}
                    for i in range(args.files)
                ],
                {"simulate_downloads": True, "simulate_delay": (0.0, 0.0)},
            ),
        }
        print(f"{args.files} files per run, {args.reps} runs each way, medians")
        print(f"{'corpus':<10} {'mode':<8} {'files/s':>8} {'CPU us/file':>12}   runs (files/s)")
        for name, (entries, settings) in corpora.items():
            rates: dict[str, list[tuple[float, float]]] = {"without": [], "with": [], "skip": []}
            with tempfile.TemporaryDirectory(prefix="journal-cost-", dir=args.work) as folder:
                work = Path(folder)
                one_run(entries, work, None, **settings)  # warm-up: imports, connections
                for rep in range(args.reps):
                    journal = work / f"j{rep}.db"
                    order = ("without", "with") if rep % 2 == 0 else ("with", "without")
                    for mode in order:
                        rates[mode].append(
                            one_run(entries, work, journal if mode == "with" else None, **settings)
                        )
                    rates["skip"].append(one_run(entries, work, journal, **settings))
            for mode, values in rates.items():
                speeds = [speed for speed, _ in values]
                cpu = statistics.median(used for _, used in values)
                runs = ", ".join(f"{speed:,.0f}" for speed in speeds)
                median = statistics.median(speeds)
                print(f"{name:<10} {mode:<8} {median:>8,.0f} {cpu:>12,.0f}   {runs}")
            # Each repetition's pair ran back to back: their ratio cancels slow drifts of load.
            paired = statistics.median(
                w[0] / wo[0] for w, wo in zip(rates["with"], rates["without"])
            )
            cpu_with = statistics.median(used for _, used in rates["with"])
            cpu_without = statistics.median(used for _, used in rates["without"])
            print(
                f"{name:<10} with/without files/s: median of pairs {paired:.3f} "
                f"({(1 - paired) * 100:+.1f} % slower); CPU per file "
                f"{cpu_with - cpu_without:+,.0f} us ({(cpu_with / cpu_without - 1) * 100:+.1f} %)"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


class Stamp(BasePostProcessor):
    """Writes ``id time`` per file with one unbuffered write: what a kill cannot take back."""

    def __init__(self, path: str) -> None:
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def post_process(self, result: Any, file_data: FileData) -> None:
        os.write(self._descriptor, f"{file_data.id} {time.time():.6f}\n".encode())

    def close(self) -> None:
        os.close(self._descriptor)


def loss(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    cli = Path(sys.executable).with_name("download-pipeline-processor")
    worst: list[float] = []
    with tempfile.TemporaryDirectory(prefix="journal-loss-") as folder:
        work = Path(folder)
        listing = work / "l.json"
        entries = [
            {"id": f"s{i:06d}", "url": f"http://sim.invalid/s{i:06d}"} for i in range(args.files)
        ]
        listing.write_text(json.dumps(entries))
        for trial in range(args.reps):
            journal, stamps = work / f"j{trial}.db", work / f"stamps{trial}.txt"
            proc = subprocess.Popen(
                [
                    str(cli),
                    *("--files", str(listing), "--journal", str(journal), "--quiet"),
                    *("--simulate-downloads", "--no-sleep", "--processor", "checksum"),
                    *("--post-processor", "benchmarks.journal_cost:Stamp"),
                    *("--post-processor-option", f"path={stamps}"),
                    *("--download-cache", str(work / "cache")),
                ],
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
                },
            )
            # Wait for the first files, then kill at a random moment of the run.
            while not stamps.exists() or stamps.stat().st_size == 0:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.05, 1.0))
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            proc.wait()
            seen = dict(line.split() for line in stamps.read_text().splitlines() if " " in line)
            connection = sqlite3.connect(journal)
            held = {row[0] for row in connection.execute("SELECT id FROM entries")}
            connection.close()
            lost = {
                ident: killed_at - float(when) for ident, when in seen.items() if ident not in held
            }
            oldest = max(lost.values(), default=0.0)
            worst.append(oldest)
            print(
                f"trial {trial}: {len(seen)} post-processed, {len(held)} in the journal, "
                f"{len(lost)} lost, the oldest finished {oldest * 1000:.0f} ms before the kill"
            )
    print(f"largest loss over {args.reps} kills: {max(worst) * 1000:.0f} ms of finished files")


def recorder_cost(args: argparse.Namespace) -> None:
    """The journal's own time per file, without a pipeline around it: steadier on a busy machine."""
    from download_pipeline_processor._journal import Journal

    files = [FileData(f"http://h.invalid/r{i:06d}.bin", f"r{i:06d}") for i in range(args.files)]
    timings = []
    with tempfile.TemporaryDirectory(prefix="journal-recorder-", dir=args.work) as folder:
        for rep in range(args.reps):
            recorder = Journal(Path(folder) / f"j{rep}.db").recorder()
            started = time.perf_counter()
            for file_data in files:
                recorder.post_process(None, file_data)
            recorder.close()  # the last commit counts too
            timings.append((time.perf_counter() - started) / len(files) * 1e6)
    runs = ", ".join(f"{timing:.1f}" for timing in timings)
    print(
        f"recorder: {statistics.median(timings):.1f} us per file (median of {args.reps} runs "
        f"of {args.files} files, commits included: {runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000, help="files per run")
    parser.add_argument("--reps", type=int, default=5, help="runs each way (or kills, --loss)")
    parser.add_argument("--loss", action="store_true", help="measure what a kill -9 loses")
    parser.add_argument(
        "--recorder", action="store_true", help="time the journal's recorder alone, per file"
    )
    parser.add_argument("--seed", type=int, default=1, help="random kill moments (--loss)")
    parser.add_argument(
        "--work", default=None, help="folder for caches and journals (default: the temp dir)"
    )
    args = parser.parse_args()
    if args.loss:
        loss(args)
    elif args.recorder:
        recorder_cost(args)
    else:
        cost(args)


if __name__ == "__main__":
    main()
