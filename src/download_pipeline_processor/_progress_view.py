"""The live progress view on stderr (``--progress``), drawn by rich; the CLI's side only.

The view is an observer of the run: ``pipeline_started`` hands it the run's
:class:`~.run_progress.RunProgress`, which rich's refresh thread reads a few
times a second; the pipeline itself calls nothing per file or per chunk for
it.  While the view is live, the CLI's log lines go through rich's console, so
they print above the view instead of tearing it.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Column
from rich.text import Text

from ._plugins import PipelinePluginManager
from .hookspecs import hookimpl
from .report import FILES_LOGGER
from .run_progress import RunProgress
from .summary import human_bytes

#: Redraws per second: enough to look alive, little enough to cost nothing measurable.
REFRESH_PER_SECOND = 4
#: Files in flight listed by name when no more than this many are.
FEW_IN_FLIGHT = 3
#: Seconds after which the oldest file in flight is listed however many are.
SLOW_FILE_SECONDS = 10.0
#: Seconds of history the byte rate is measured over.
RATE_WINDOW = 5.0
#: Seconds between two plain lines of ``--progress`` when stderr is not a terminal.
PLAIN_INTERVAL = 10.0
#: Sets those seconds instead (a test's shorter wait); documented in the README.
PLAIN_INTERVAL_ENV = "DOWNLOAD_PIPELINE_PROCESSOR_PROGRESS_INTERVAL"


def plain_interval(environ: dict[str, str] | None = None) -> float:
    """:data:`PLAIN_INTERVAL`, or the positive seconds :data:`PLAIN_INTERVAL_ENV` gives."""
    text = (os.environ if environ is None else environ).get(PLAIN_INTERVAL_ENV, "")
    try:
        seconds = float(text)
    except ValueError:
        return PLAIN_INTERVAL
    return seconds if seconds > 0 else PLAIN_INTERVAL


def _cell(**options: Any) -> Column:
    """A column of the view that never wraps: a value too wide is cut, not spread on two lines."""
    return Column(no_wrap=True, overflow="ellipsis", **options)


class _BytesColumn(ProgressColumn):
    """Bytes downloaded and the current byte rate."""

    def render(self, task: Task) -> Text:
        downloaded = human_bytes(task.fields.get("bytes", 0))
        rate = task.fields.get("byte_rate")
        shown = f"{downloaded}" if rate is None else f"{downloaded} {human_bytes(rate)}/s"
        return Text(shown, style="progress.download")


class _FailedColumn(ProgressColumn):
    """Failed files, red once there is one."""

    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed", style="red" if failed else "dim")


def _files_per_second(rate: float) -> str:
    """``12.5 files/s``; ``1234 files/s`` without the decimal once it is large."""
    return f"{rate:.1f} files/s" if rate < 100 else f"{rate:.0f} files/s"


def _eta(total: int | None, done: int, files_per_second: float | None) -> str:
    """Time left at the current rate, ``H:MM:SS``; ``-:--:--`` when it cannot be told."""
    if total is None or not files_per_second:
        return "-:--:--"
    seconds = int(max(total - done, 0) / files_per_second)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class _RunProgressDisplay(Progress):
    """A rich ``Progress`` that reads a :class:`RunProgress` each time it is drawn."""

    def __init__(self, console: Console, run: RunProgress) -> None:
        # Set first: rich draws a first frame while it sets itself up.
        self.state = run
        self.task_id: TaskID | None = None
        # (time, bytes, files done) of the last few frames, for the current rates.
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque()
        # Fits 80 columns with millions of files, GB and a day of ETA: the bar
        # takes what the numbers leave, and no cell ever wraps.
        super().__init__(
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
            MofNCompleteColumn(table_column=_cell()),
            _FailedColumn(table_column=_cell()),
            _BytesColumn(table_column=_cell()),
            TextColumn("{task.fields[file_rate]}", table_column=_cell()),
            TextColumn("ETA {task.fields[eta]}", table_column=_cell()),
            console=console,
            expand=True,
            refresh_per_second=REFRESH_PER_SECOND,
            # stdout may carry a post-processor's output (jsonl to '-'): never touched.
            redirect_stdout=False,
            redirect_stderr=True,
            transient=False,
        )
        self.task_id = self.add_task(
            "files",
            total=run.total,
            failed=0,
            bytes=0,
            byte_rate=None,
            file_rate="",
            eta="-:--:--",
        )

    def poll(self) -> None:
        """Bring the task up to date with the run, rates over the last :data:`RATE_WINDOW` s."""
        if self.task_id is None:
            return
        run = self.state
        now = time.monotonic()
        downloaded, done, total = run.bytes_downloaded, run.done, run.total
        samples = self._samples
        samples.append((now, downloaded, done))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()
        first_time, first_bytes, first_done = samples[0]
        span = now - first_time
        byte_rate = file_rate = None
        if span > 0:
            # Never below 0: a file's bytes move from "in flight" to "done" in two steps.
            byte_rate = max(downloaded - first_bytes, 0) / span
            file_rate = (done - first_done) / span
        self.update(
            self.task_id,
            completed=done,
            total=total,
            failed=run.failed,
            bytes=downloaded,
            byte_rate=byte_rate,
            file_rate="" if file_rate is None else _files_per_second(file_rate),
            eta=_eta(total, done, file_rate),
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        self.poll()
        yield from super().get_renderables()
        yield from self._in_flight_lines()

    def _in_flight_lines(self) -> Iterator[RenderableType]:
        """The files the run waits on, when few are in flight or one takes long."""
        run = self.state
        in_flight = run.in_flight
        if not in_flight:
            return
        oldest = run.oldest_in_flight(FEW_IN_FLIGHT)
        if in_flight > FEW_IN_FLIGHT:
            oldest = [entry for entry in oldest if entry.seconds >= SLOW_FILE_SECONDS]
        for entry in oldest:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"  {entry.stage:<8} {entry.seconds:5.0f}s ", style="dim")
            line.append(entry.id)
            line.append(f"  {entry.url}", style="dim")
            yield line


class _ConsoleLogHandler(logging.Handler):
    """Writes log records through rich's console, above the live view."""

    def __init__(self, console: Console, like: logging.Handler) -> None:
        super().__init__(like.level)
        self.console = console
        self.setFormatter(like.formatter)
        for kept in like.filters:
            self.addFilter(kept)
        # Per-file lines of the default post-processor would scroll the view away.
        self.addFilter(
            lambda record: record.name != FILES_LOGGER or record.levelno >= logging.WARNING
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never end a pipeline thread
            self.handleError(record)


class ProgressView:
    """The run's observer that shows the live view from ``pipeline_started`` to its end."""

    def __init__(self, console: Console, stderr_handler: logging.Handler | None) -> None:
        self.console = console
        self.stderr_handler = stderr_handler
        self.display: _RunProgressDisplay | None = None
        self._console_handler: _ConsoleLogHandler | None = None

    @hookimpl
    def pipeline_started(self, progress: RunProgress) -> None:
        self.display = _RunProgressDisplay(self.console, progress)
        root = logging.getLogger()
        if self.stderr_handler is not None:
            self._console_handler = _ConsoleLogHandler(self.console, self.stderr_handler)
            root.addHandler(self._console_handler)
            root.removeHandler(self.stderr_handler)
        self.display.start()

    @hookimpl
    def pipeline_finished(self, summary: Any) -> None:
        self.close()

    def close(self) -> None:
        """Draw the last frame, stop the view and give logging back to stderr; idempotent."""
        display, self.display = self.display, None
        if display is not None:
            try:
                display.refresh()
                display.stop()
            finally:
                self._restore_logging()

    def _restore_logging(self) -> None:
        root = logging.getLogger()
        if self._console_handler is not None:
            if self.stderr_handler is not None:
                root.addHandler(self.stderr_handler)
            root.removeHandler(self._console_handler)
            self._console_handler = None


class PlainProgress:
    """``--progress`` on a stderr that is not a terminal: a plain line every few seconds.

    ``progress: 120/500 files done, 3 failed, 12.3 MB, 1.20 MB/s`` every
    :func:`plain_interval` seconds (10), for CI logs and ``2> file``: no
    escape code, no redraw.  Its own thread reads the run's
    :class:`RunProgress`; the run calls nothing for it.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @hookimpl
    def pipeline_started(self, progress: RunProgress) -> None:
        self._thread = threading.Thread(
            target=self._write_lines, args=(progress,), name="progress-lines", daemon=True
        )
        self._thread.start()

    @hookimpl
    def pipeline_finished(self, summary: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the lines; idempotent."""
        self._done.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _write_lines(self, run: RunProgress) -> None:
        last_time, last_bytes = time.monotonic(), run.bytes_downloaded
        while not self._done.wait(self.interval):
            now, downloaded = time.monotonic(), run.bytes_downloaded
            rate = max(downloaded - last_bytes, 0) / (now - last_time) if now > last_time else 0
            last_time, last_bytes = now, downloaded
            try:
                sys.stderr.write(plain_line(run, downloaded, rate) + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing left to tell
                return


def plain_line(run: RunProgress, downloaded: int, rate: float) -> str:
    """One plain progress line: files done of the total, failed, bytes and byte rate."""
    total = run.total
    done = f"{run.done}/{total}" if total is not None else f"{run.done}"
    return (
        f"progress: {done} files done, {run.failed} failed, {human_bytes(downloaded)},"
        f" {human_bytes(rate)}/s"
    )


@contextmanager
def progress_view(
    manager: PipelinePluginManager, stderr_handler: logging.Handler | None
) -> Iterator[ProgressView | PlainProgress]:
    """Show progress on stderr during the run held inside.

    The live view on a terminal; on anything else (a pipe, a file) a plain
    line every :func:`plain_interval` seconds (:class:`PlainProgress`): no
    escape code may reach a log.
    """
    console = Console(stderr=True)
    view: ProgressView | PlainProgress
    if not console.is_terminal or console.is_dumb_terminal:
        view = PlainProgress(plain_interval())
    else:
        view = ProgressView(console, stderr_handler)
    name = f"cli-progress-view-{id(view)}"
    manager.register(view, name=name)
    try:
        yield view
    finally:
        view.close()
        manager.unregister(name=name)
