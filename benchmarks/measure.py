"""Run one command and measure it: wall time, CPU seconds and peak RSS of the child."""

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


@dataclass(frozen=True)
class Measurement:
    """What one run of a command cost."""

    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    returncode: int
    timed_out: bool

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.sys_s


def run_measured(
    argv: list[str],
    *,
    timeout: float,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Measurement:
    """Run ``argv`` to completion (or ``timeout``), output to ``log_path``.

    CPU seconds come from ``os.wait4`` on the child: on Linux its rusage
    covers the child and every descendant it waited for.  Peak RSS does not:
    exec keeps the high-water mark of the process image it replaces, and the
    child starts as a (v)fork of this harness, so every tool would report at
    least the harness's own peak.  GNU time, itself tiny, forks the tool and
    reports that grandchild's ``ru_maxrss``; with it the figure is the tool's.
    The child gets its own process group so a timeout can kill it and
    anything it forked, and nothing else.
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
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            # Interrupted (Ctrl-C): leave no tool running behind the harness.
            kill_group()
            process.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    # Popen must not try to reap the child a second time.
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_kib=_reported_rss(rss_path, usage.ru_maxrss),
        returncode=process.returncode,
        timed_out=expired.is_set(),
    )


def _reported_rss(rss_path: Path, fallback: int) -> int:
    """GNU time's ``%M`` (KiB), on the output file's last line; ``fallback`` without it."""
    try:
        lines = rss_path.read_text().split()
    except OSError:
        return fallback
    return int(lines[-1]) if lines and lines[-1].isdigit() else fallback
