"""The database side: connections, tables and the SQL that fills them.

Table names are checked by :func:`validate_table_name` before they reach any
statement here; SQLite cannot bind identifiers as parameters, so they are
quoted into the SQL text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "BUSY_TIMEOUT",
    "FILE_COLUMNS",
    "RUN_COLUMNS",
    "connect",
    "create_tables",
    "finish_run_sql",
    "insert_files_sql",
    "insert_run_sql",
    "runs_table_name",
    "summarise_run_sql",
    "transaction",
    "validate_table_name",
]


#: Seconds a writer waits for another connection's lock before giving up.
BUSY_TIMEOUT = 30.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The columns of the files table, in insertion order.
FILE_COLUMNS = (
    "run_id",
    "id",
    "name",
    "url",
    "status",
    "error_stage",
    "error_message",
    "result",
    "extra",
    "finished_at",
)

#: The columns of the runs table.
RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "total",
    "succeeded",
    "failed",
    "not_started",
    "bytes_downloaded",
    "elapsed",
    "interrupted",
    "summary_json",
)


def validate_table_name(table: str) -> str:
    """Return ``table`` if it is a plain SQL identifier, else raise ValueError."""
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise ValueError(
            f"table name {table!r} is not a plain identifier: use letters, digits and"
            " underscores, not starting with a digit (pattern [A-Za-z_][A-Za-z0-9_]*)"
        )
    if table.lower().startswith("sqlite_"):
        raise ValueError(f"table name {table!r}: names starting with 'sqlite_' are reserved")
    return table


def runs_table_name(table: str) -> str:
    """The runs table that goes with the files table ``table``."""
    return f"{table}_runs"


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with ``synchronous=NORMAL``, transactions managed by hand.

    ``check_same_thread=False``: the connection is opened in the main thread but
    used from the pipeline's post-processing thread and the post-processor's
    flush timer, one caller at a time (the caller holds a lock).
    """
    connection = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed on success, rolled back on any error."""
    # IMMEDIATE takes the write lock up front, so a busy database waits the
    # timeout here instead of failing halfway through the batch.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def create_tables(connection: sqlite3.Connection, table: str) -> None:
    """Create the files table, its indexes and the runs table unless they exist."""
    runs = runs_table_name(table)
    with transaction(connection):
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{table}" ('
            " run_id TEXT NOT NULL,"
            " id TEXT,"
            " name TEXT,"
            " url TEXT,"
            " status TEXT NOT NULL,"
            " error_stage TEXT,"
            " error_message TEXT,"
            " result TEXT,"
            " extra TEXT,"
            " finished_at TEXT NOT NULL)"
        )
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{runs}" ('
            " run_id TEXT PRIMARY KEY,"
            " started_at TEXT NOT NULL,"
            " finished_at TEXT,"
            " total INTEGER,"
            " succeeded INTEGER,"
            " failed INTEGER,"
            " not_started INTEGER,"
            " bytes_downloaded INTEGER,"
            " elapsed REAL,"
            " interrupted INTEGER,"
            " summary_json TEXT)"
        )
        _check_columns(connection, table, FILE_COLUMNS)
        _check_columns(connection, runs, RUN_COLUMNS)
        connection.execute(f'CREATE INDEX IF NOT EXISTS "{table}_run_id_idx" ON "{table}" (run_id)')
        connection.execute(f'CREATE INDEX IF NOT EXISTS "{table}_status_idx" ON "{table}" (status)')


def _check_columns(connection: sqlite3.Connection, table: str, expected: tuple[str, ...]) -> None:
    # A table of that name made by something else: say so now, not at the first insert.
    found = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
    missing = [column for column in expected if column not in found]
    if missing:
        raise ValueError(
            f"table {table!r} already exists without the columns {', '.join(missing)};"
            " choose another table name with the 'table' option"
        )


def insert_files_sql(table: str) -> str:
    """The INSERT for one row of the files table."""
    placeholders = ", ".join("?" for _ in FILE_COLUMNS)
    return f'INSERT INTO "{table}" ({", ".join(FILE_COLUMNS)}) VALUES ({placeholders})'  # noqa: S608 - validated identifier


def insert_run_sql(table: str) -> str:
    """The INSERT that opens a run: ``(run_id, started_at)``."""
    return f'INSERT INTO "{runs_table_name(table)}" (run_id, started_at) VALUES (?, ?)'  # noqa: S608 - validated identifier


def finish_run_sql(table: str) -> str:
    """The UPDATE that closes a run from its own counts.

    Parameters: ``finished_at, total, succeeded, failed, run_id``.
    """
    return (
        f'UPDATE "{runs_table_name(table)}"'  # noqa: S608 - validated identifier
        " SET finished_at = ?, total = ?, succeeded = ?, failed = ? WHERE run_id = ?"
    )


def summarise_run_sql(table: str) -> str:
    """The UPDATE that fills a run from the pipeline's summary.

    Parameters: every column of :data:`RUN_COLUMNS` after ``started_at``, then ``run_id``.
    """
    assignments = ", ".join(f"{column} = ?" for column in RUN_COLUMNS[2:])
    return f'UPDATE "{runs_table_name(table)}" SET {assignments} WHERE run_id = ?'  # noqa: S608 - validated identifier
