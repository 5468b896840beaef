"""Run one command and measure it: wall time, CPU seconds and peak RSS of the child.

With ``tree=True`` also the peak memory of the tool's whole process tree
(the tool and every process it forked, summed), read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: GNU time (Debian package ``time``), which reports its child's own peak RSS.
GNU_TIME = Path("/usr/bin/time")
#: Seconds between two readings of the tool's thread count.
THREAD_SAMPLE_INTERVAL = 0.05


@dataclass(frozen=True)
class Measurement:
    """What one run of a command cost."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    returncode: int
    timed_out: bool
    #: The most threads the tool's process had at one of the samples; None if never read.
    peak_threads: int | None = None
    #: With ``tree``: the largest sum of VmRSS over the tool's process tree at one sample (KiB).
    tree_rss_kib: int | None = None
    #: With ``tree``: the same for the proportional set size (shared pages split), KiB.
    tree_pss_kib: int | None = None
    #: With ``tree``: the most processes the tree had at one sample.
    tree_processes: int | None = None

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.sys_s


def _children(pid: int) -> list[int]:
    """``pid``'s child processes (Linux ``/proc``), oldest first."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def _all_children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (a thread that forks is their parent)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(part) for part in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    tree = [pid]
    index = 0
    while index < len(tree):
        tree += [child for child in _all_children(tree[index]) if child not in tree]
        index += 1
    return tree


def _status_value(pid: int, field: str) -> int | None:
    """The number on ``/proc/PID/status``'s ``field:`` line; None once the process is gone."""
    try:
        with Path(f"/proc/{pid}/status").open(encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _thread_count(pid: int) -> int | None:
    """The ``Threads:`` line of ``/proc/PID/status``; None once the process is gone."""
    return _status_value(pid, "Threads")


def _pss_kib(pid: int) -> int:
    """``Pss:`` of ``/proc/PID/smaps_rollup`` in KiB; 0 once the process is gone."""
    try:
        with Path(f"/proc/{pid}/smaps_rollup").open(encoding="ascii", errors="replace") as roll:
            for line in roll:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def _peak(current: int | None, value: int | None) -> int | None:
    if value is None:
        return current
    return value if current is None else max(current, value)


class ThreadSampler:
    """Reads the tool's thread count every 50 ms while it runs; keeps the largest.

    The tool is the child's child when GNU time wraps it (``wrapped``), else
    the child itself.  Only that one process is counted: worker processes it
    forks (a processing pool in process mode) are not summed.  A thread that
    lives less than the interval between two readings can be missed.

    With ``tree``, each reading also sums VmRSS and PSS (``smaps_rollup``)
    over the tool and every descendant alive then (found through every
    thread's ``/proc/PID/task/TID/children``) and keeps the largest sums and
    process count: the peak memory of a tool that forks workers.  The sum of
    RSS counts pages a fork shares with its parent twice, the PSS splits
    them; a peak shorter than 50 ms can be missed.
    """

    def __init__(self, pid: int, wrapped: bool, tree: bool = False) -> None:
        self.pid = pid
        self.wrapped = wrapped
        self.tree = tree
        self.peak: int | None = None
        self.peak_rss: int | None = None
        self.peak_pss: int | None = None
        self.peak_processes: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-sampler", daemon=True)

    def _tool_pid(self) -> int | None:
        if not self.wrapped:
            return self.pid
        children = _children(self.pid)
        return children[0] if children else None

    def _sample_tree(self, tool: int) -> None:
        pids = _tree(tool)
        rss = [_status_value(pid, "VmRSS") for pid in pids]
        self.peak_rss = _peak(self.peak_rss, sum(value or 0 for value in rss))
        self.peak_pss = _peak(self.peak_pss, sum(_pss_kib(pid) for pid in pids))
        self.peak_processes = _peak(self.peak_processes, sum(v is not None for v in rss))

    def _run(self) -> None:
        while True:
            tool = self._tool_pid()
            if tool is not None:
                self.peak = _peak(self.peak, _thread_count(tool))
                if self.tree:
                    self._sample_tree(tool)
            if self._stop.wait(THREAD_SAMPLE_INTERVAL):
                return

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> int | None:
        """Stop sampling and return the peak."""
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(
    argv: list[str],
    *,
    timeout: float,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tree: bool = False,
) -> Measurement:
    """Run ``argv`` to completion (or ``timeout``), output to ``log_path``.

    CPU seconds come from ``os.wait4`` on the child: on Linux its rusage
    covers the child and every descendant it waited for.  Peak RSS does not:
    exec keeps the high-water mark of the process image it replaces, and the
    child starts as a (v)fork of this harness, so every tool would report at
    least the harness's own peak.  GNU time, itself tiny, forks the tool and
    reports that grandchild's ``ru_maxrss``; with it the figure is the tool's.
    The child gets its own process group so a timeout can kill it and
    anything it forked, and nothing else.  The tool's peak thread count is
    sampled from ``/proc`` meanwhile (:class:`ThreadSampler`), with ``tree``
    the peak memory of its whole process tree as well.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rss_path = log_path.with_suffix(".rss")
    rss_path.unlink(missing_ok=True)
    if GNU_TIME.is_file():
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *argv]
    else:
        wrapped = argv
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        expired = threading.Event()

        def kill_group() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill_group)
        timer.daemon = True
        timer.start()
        sampler = ThreadSampler(process.pid, wrapped=wrapped is not argv, tree=tree)
        sampler.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        except BaseException:
            # Interrupted (Ctrl-C): leave no tool running behind the harness.
            kill_group()
            process.wait()
            raise
        finally:
            timer.cancel()
            peak_threads = sampler.stop()
    # Popen must not try to reap the child a second time.
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_kib=_reported_rss(rss_path, usage.ru_maxrss),
        returncode=process.returncode,
        timed_out=expired.is_set(),
        peak_threads=peak_threads,
        tree_rss_kib=sampler.peak_rss,
        tree_pss_kib=sampler.peak_pss,
        tree_processes=sampler.peak_processes,
    )


def _reported_rss(rss_path: Path, fallback: int) -> int:
    """GNU time's ``%M`` (KiB), on the output file's last line; ``fallback`` without it."""
    try:
        lines = rss_path.read_text().split()
    except OSError:
        return fallback
    return int(lines[-1]) if lines and lines[-1].isdigit() else fallback
