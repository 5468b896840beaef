"""Runs tools on jobs in alternation, verifies every run, records every run."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .measure import run_measured
from .peers import REPO_ROOT, Job, Tool
from .verify import VerificationError


@dataclass(frozen=True)
class RunRecord:
    """One run of one tool on one job; only ``ok`` runs count in the results."""

    case: str
    fs: str
    tool: str
    rep: int
    files: int
    bytes: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    returncode: int
    ok: bool
    error: str | None = None
    skipped: bool = False
    #: The most threads the tool's process had (sampled every 50 ms).
    peak_threads: int | None = None
    #: Requests per protocol nginx logged during the run (jobs with a protocol log).
    protocols: dict[str, int] | None = None
    #: Jobs that sample the process tree: its peak summed RSS and PSS (KiB), most processes.
    tree_rss_kib: int | None = None
    tree_pss_kib: int | None = None
    tree_processes: int | None = None


#: Seconds to let nginx finish logging the last requests of a run (outside the timing).
PROTOCOL_LOG_SETTLE = 0.2


def _log_size(path: Path | None) -> int:
    if path is None:
        return 0
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _protocols_since(path: Path, offset: int) -> dict[str, int]:
    """Requests per protocol in the lines nginx appended to ``path`` after ``offset``."""
    time.sleep(PROTOCOL_LOG_SETTLE)
    try:
        with path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode("ascii", errors="replace").split()
    except FileNotFoundError:
        return {}
    return dict(Counter(lines))


def reset_dir(path: Path) -> None:
    """Make ``path`` an empty folder."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def _tail(path: Path, limit: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text[-limit:].split())


def _protocol_text(protocols: dict[str, int] | None) -> str:
    if protocols is None:
        return ""
    return ", " + (" + ".join(f"{n} {name}" for name, n in sorted(protocols.items())) or "no log")


class Runner:
    """Runs and records; appends every record to a JSON-lines file as it goes."""

    def __init__(self, logs_dir: Path, raw_path: Path) -> None:
        self.logs_dir = logs_dir
        self.raw_path = raw_path
        self.records: list[RunRecord] = []
        raw_path.parent.mkdir(parents=True, exist_ok=True)

    def _keep(self, record: RunRecord) -> RunRecord:
        self.records.append(record)
        with self.raw_path.open("a", encoding="utf-8") as raw:
            raw.write(json.dumps(asdict(record)) + "\n")
        return record

    def skip(self, job: Job, label: str, reason: str) -> None:
        """Record that ``label`` cannot run on this job (shown as n/a)."""
        self._keep(
            RunRecord(
                case=job.case,
                fs=job.fs,
                tool=label,
                rep=0,
                files=job.files,
                bytes=job.total_bytes,
                wall_s=0.0,
                user_s=0.0,
                sys_s=0.0,
                max_rss_kib=0,
                returncode=0,
                ok=False,
                error=reason,
                skipped=True,
            )
        )
        print(f"  [{job.case}/{job.fs}] {label}: n/a ({reason})", file=sys.stderr, flush=True)

    def run_job(self, job: Job, tools: Sequence[Tool], reps: int) -> None:
        """``reps`` rounds; each round runs every tool once, the order rotating per round."""
        for rep in range(reps):
            shift = rep % len(tools)
            for tool in [*tools[shift:], *tools[:shift]]:
                self.run_once(job, tool, rep)

    def run_once(self, job: Job, tool: Tool, rep: int) -> RunRecord:
        """Clean, run, verify, clean; the cleaning is outside the timing."""
        reset_dir(job.out_dir)
        reset_dir(job.cache_dir)
        job.results_path.unlink(missing_ok=True)
        job.results_path.parent.mkdir(parents=True, exist_ok=True)
        # Start from no dirty pages, so one run's writeback does not land in the next.
        os.sync()
        invocation = tool.build(job)
        log_offset = _log_size(job.protocol_log)
        slug = f"{job.case}-{job.fs}-{tool.label}-{rep}".replace(" ", "_").replace("/", "_")
        log_path = self.logs_dir / f"{slug}.log"
        measured = run_measured(
            invocation.argv,
            timeout=job.timeout,
            log_path=log_path,
            env=invocation.env,
            cwd=REPO_ROOT,
            tree=job.sample_tree,
        )
        protocols = None
        if job.protocol_log is not None:
            protocols = _protocols_since(job.protocol_log, log_offset)
        error: str | None = None
        if measured.timed_out:
            error = f"timed out after {job.timeout:.0f} s"
        elif measured.returncode != 0:
            error = f"exit {measured.returncode}: {_tail(log_path)}"
        elif invocation.verify is not None:
            try:
                invocation.verify()
            except (VerificationError, OSError, ValueError) as exc:
                error = f"verification failed: {exc}"
        record = self._keep(
            RunRecord(
                case=job.case,
                fs=job.fs,
                tool=tool.label,
                rep=rep,
                files=job.files,
                bytes=job.total_bytes,
                wall_s=measured.wall_s,
                user_s=measured.user_s,
                sys_s=measured.sys_s,
                max_rss_kib=measured.max_rss_kib,
                returncode=measured.returncode,
                ok=error is None,
                error=error,
                peak_threads=measured.peak_threads,
                protocols=protocols,
                tree_rss_kib=measured.tree_rss_kib,
                tree_pss_kib=measured.tree_pss_kib,
                tree_processes=measured.tree_processes,
            )
        )
        status = "ok" if error is None else f"FAILED: {error}"
        tree = ""
        if measured.tree_rss_kib is not None:
            tree = (
                f", tree rss {measured.tree_rss_kib / 1024:.0f} MiB"
                f" (pss {(measured.tree_pss_kib or 0) / 1024:.0f}) in"
                f" {measured.tree_processes} processes"
            )
        print(
            f"  [{job.case}/{job.fs} rep {rep + 1}] {tool.label}: {measured.wall_s:.2f} s, "
            f"cpu {measured.user_s + measured.sys_s:.2f} s, "
            f"rss {measured.max_rss_kib / 1024:.0f} MiB, "
            f"threads {measured.peak_threads if measured.peak_threads is not None else '?'}"
            f"{tree}{_protocol_text(protocols)}, {status}",
            file=sys.stderr,
            flush=True,
        )
        reset_dir(job.out_dir)
        job.results_path.unlink(missing_ok=True)
        return record
