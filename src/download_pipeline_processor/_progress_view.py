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
    TimeElapsedColumn,
)
from rich.text import Text

from .hookspecs import hookimpl
from .plugins import PipelinePluginManager
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
        super().__init__(
            TextColumn("files"),
            BarColumn(),
            MofNCompleteColumn(),
            _FailedColumn(),
            _BytesColumn(),
            TextColumn("{task.fields[file_rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=console,
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
            file_rate="" if file_rate is None else f"{file_rate:.1f} files/s",
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


@contextmanager
def progress_view(
    manager: PipelinePluginManager, stderr_handler: logging.Handler | None
) -> Iterator[ProgressView | None]:
    """Show the live view on stderr during the run held inside, if stderr is a terminal.

    On anything else (a pipe, a file) nothing is drawn, ever: no escape code
    may reach a log.
    """
    console = Console(stderr=True)
    if not console.is_terminal or console.is_dumb_terminal:
        yield None
        return
    view = ProgressView(console, stderr_handler)
    name = f"cli-progress-view-{id(view)}"
    manager.register(view, name=name)
    try:
        yield view
    finally:
        view.close()
        manager.unregister(name=name)

