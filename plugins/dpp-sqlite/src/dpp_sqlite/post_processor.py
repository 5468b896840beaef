"""The ``sqlite`` post-processor: one row per file, one row per run."""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from download_pipeline_processor import (
    BasePostProcessor,
    FileData,
    Option,
    RunSummary,
    hookimpl,
)
from download_pipeline_processor.flush_timer import FlushTimer
from download_pipeline_processor.report import input_fields, outcome_record, to_json

from . import schema

__all__ = ["FLUSH_INTERVAL", "SqlitePostProcessor", "utc_now"]


#: Default for the ``flush_interval`` option, in seconds.
FLUSH_INTERVAL = 0.5


def utc_now() -> str:
    """The current time in UTC, ISO-8601 with microseconds and ``+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class SqlitePostProcessor(BasePostProcessor):
    """Records every file's outcome in a SQLite table, one transaction per batch of rows.

    A batch is committed when it holds ``batch_size`` rows or when its oldest
    row is ``flush_interval`` seconds old, whichever comes first; the latter
    from a timer thread, so no later file is needed.  A run killed with
    SIGKILL therefore loses at most the rows of files that finished in its
    last ``flush_interval`` seconds (a power loss may lose a little more:
    ``synchronous=NORMAL`` in WAL mode does not sync every commit).

    Each instance is one run with its own ``run_id``; a later run into the same
    database appends.  The run's row in ``<table>_runs`` is opened at
    construction, given the counts this instance saw in :meth:`close`, and
    filled from the pipeline's summary in :meth:`pipeline_finished`, which the
    pipeline calls once after every post-processor was closed.
    """

    options = (
        Option(
            "db",
            type=Path,
            required=True,
            help="SQLite database file, created if missing",
            output=True,
        ),
        Option(
            "table",
            default="files",
            help="table for the files, a plain identifier; runs go to <table>_runs",
        ),
        Option("batch_size", type=int, default=500, help="most rows written per transaction"),
        Option(
            "flush_interval",
            type=float,
            default=FLUSH_INTERVAL,
            help="most seconds a row waits before its batch is written",
        ),
    )

    def __init__(
        self,
        db: Path | str,
        table: str = "files",
        batch_size: int = 500,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.table = schema.validate_table_name(table)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be more than 0 seconds, got {flush_interval}")
        self.db = Path(db)
        self.batch_size = batch_size
        self.run_id = uuid.uuid4().hex
        self.started_at = utc_now()
        self._insert_sql = schema.insert_files_sql(self.table)
        self._pending: list[tuple[Any, ...]] = []
        self._statuses: Counter[str] = Counter()
        self._summary_recorded = False
        connection = schema.connect(self.db)
        try:
            schema.create_tables(connection, self.table)
            with schema.transaction(connection):
                connection.execute(
                    schema.insert_run_sql(self.table), (self.run_id, self.started_at)
                )
        except BaseException:
            connection.close()
            raise
        self._connection: sqlite3.Connection | None = connection
        # The pipeline's post-process thread may wait long for the next file,
        # so a partial batch is committed from the timer's thread; the
        # connection allows that (check_same_thread=False) and the timer's lock
        # keeps the two threads off it at the same time.
        self._timer = FlushTimer(self.flush, flush_interval, name="sqlite")

    def post_process(self, result: Any, file_data: FileData) -> None:
        """Buffer the file's row; write the buffer once it holds ``batch_size`` rows.

        A smaller buffer is written by the timer ``flush_interval`` seconds
        after its first row.
        """
        if self._connection is None:
            raise RuntimeError(f"{type(self).__name__} is closed")
        record = outcome_record(result, file_data)
        error = record["error"]
        row = (
            self.run_id,
            str(record["id"]),
            str(record["name"]),
            record["url"],
            record["status"],
            error["stage"] if error else None,
            error["message"] if error else None,
            None if result is None else to_json(result),
            # An entry's request header values are secrets: only their names are kept.
            to_json(input_fields(file_data)),
            utc_now(),
        )
        self._statuses[record["status"]] += 1
        with self._timer.lock:
            self._pending.append(row)
            if len(self._pending) >= self.batch_size:
                self.flush()
            else:
                self._timer.pending()

    def flush(self) -> None:
        """Write the buffered rows in one transaction."""
        with self._timer.lock:
            if not self._pending or self._connection is None:
                return
            with schema.transaction(self._connection) as connection:
                connection.executemany(self._insert_sql, self._pending)
            # Cleared only once committed: a failed write is retried by the next flush.
            self._pending.clear()
            self._timer.flushed()

    def close(self) -> None:
        """Write what is buffered, close the run's row with the counts seen here, disconnect."""
        self._timer.close()
        connection = self._connection
        if connection is None:
            return
        try:
            self.flush()
            if not self._summary_recorded:
                with schema.transaction(connection):
                    connection.execute(
                        schema.finish_run_sql(self.table),
                        (
                            utc_now(),
                            sum(self._statuses.values()),
                            self._statuses["succeeded"],
                            self._statuses["failed"],
                            self.run_id,
                        ),
                    )
        finally:
            self._connection = None
            connection.close()

    @hookimpl
    def pipeline_finished(self, summary: RunSummary) -> None:
        """Fill the run's row from the pipeline's summary, reconnecting if already closed."""
        data = summary.as_dict()
        values = (
            utc_now(),
            data["total"],
            data["succeeded"],
            data["failed"],
            data["not_started"],
            data["bytes_downloaded"],
            data["elapsed"],
            int(bool(data["stopped"])),
            to_json(data),
            self.run_id,
        )
        with self._timer.lock:
            connection = self._connection or schema.connect(self.db)
            try:
                with schema.transaction(connection):
                    connection.execute(schema.summarise_run_sql(self.table), values)
            finally:
                if connection is not self._connection:
                    connection.close()
        self._summary_recorded = True
