"""The journal (``--journal PATH``): every file's outcome in SQLite, so a rerun finishes the job.

A :class:`Journal` is one run's hold on the database.  It takes an exclusive
lock first (a second run on the same journal is a usage error), then serves
two sides of the run:

- :meth:`Journal.already_done` is the input's filter: an entry the journal
  holds as succeeded in an earlier run (matched by ``id`` and URL) is skipped
  before anything is requested; with ``skip_failed``, failed ones too.
- :meth:`Journal.recorder` is a post-processor the pipeline runs after the
  user's own, so it sees each file once every post-processor is done with
  it.  A file a post-processor holds for later (``holds_results``: a shard,
  a batched upload) waits, as its small prepared row only, until every such
  holder has published it (:meth:`JournalRecorder.published`); what is
  never published is never recorded, so a rerun does it again.  Rows are
  committed in batches, from a :class:`~.flush_timer.FlushTimer`
  when no batch fills up: a file whose post-processing ended more than
  :data:`FLUSH_INTERVAL` seconds (plus one commit) before a ``kill -9`` is
  in the journal.

The schema is documented for users in ``docs/journal.md``; a change to it
raises :data:`SCHEMA_VERSION` (``PRAGMA user_version``) and adds its step to
:data:`_UPGRADES`, which bring an older journal up to date when it is opened.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .base_post_processor import BasePostProcessor
from .errors import JournalBusyError, JournalError, PipelineInterrupted
from .file_data import FileData
from .flush_timer import FlushTimer
from .redact import redact_url
from .report import outcome_record, to_json
from .summary import RunSummary

logger = logging.getLogger(__name__)

#: ``PRAGMA user_version`` of the schema below; raised on every change to it.
SCHEMA_VERSION = 2
#: ``PRAGMA application_id``: tells a journal from any other SQLite file ("DPPJ").
APPLICATION_ID = 0x4450504A
#: Most seconds a finished file's row waits before it is committed.
FLUSH_INTERVAL = 0.1
#: Most rows per transaction; a fuller batch is committed at once.
BATCH_SIZE = 1000
#: Seconds a connection waits for another's write lock (the ``journal`` command reading).
BUSY_TIMEOUT = 10.0

SUCCEEDED = "succeeded"
FAILED = "failed"
#: Abandoned by a stop (Ctrl-C, SIGTERM): never tried to the end, so always tried again.
INTERRUPTED = "interrupted"
STATUSES = (SUCCEEDED, FAILED, INTERRUPTED)

_SCHEMA = (
    """
    CREATE TABLE runs (
        run INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        succeeded INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        interrupted INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0
    )
    """,
    f"""
    CREATE TABLE entries (
        id TEXT NOT NULL,
        url_key TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN {STATUSES!r}),
        stage TEXT,
        reason TEXT,
        http_status INTEGER,
        attempts INTEGER,
        bytes INTEGER,
        sha256 TEXT,
        download_seconds REAL,
        first_recorded_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        tries INTEGER NOT NULL DEFAULT 1,
        run INTEGER NOT NULL REFERENCES runs (run),
        result TEXT,
        input_index INTEGER,
        PRIMARY KEY (id, url_key)
    ) WITHOUT ROWID
    """,
)

#: The statements that bring a journal of schema version N (the key) to N + 1.
_UPGRADES: dict[int, tuple[str, ...]] = {
    # 2: each entry's outcome record (the jsonl line) and its position in the input.
    1: (
        "ALTER TABLE entries ADD COLUMN result TEXT",
        "ALTER TABLE entries ADD COLUMN input_index INTEGER",
    ),
}

_UPSERT = """
    INSERT INTO entries (
        id, url_key, url, status, stage, reason, http_status, attempts, bytes, sha256,
        download_seconds, result, input_index, first_recorded_at, recorded_at, run
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id, url_key) DO UPDATE SET
        url = excluded.url, status = excluded.status, stage = excluded.stage,
        reason = excluded.reason, http_status = excluded.http_status,
        attempts = excluded.attempts, bytes = excluded.bytes, sha256 = excluded.sha256,
        download_seconds = excluded.download_seconds, result = excluded.result,
        input_index = excluded.input_index, recorded_at = excluded.recorded_at,
        tries = tries + 1, run = excluded.run
"""


def utc_now() -> str:
    """The current time in UTC, ISO 8601 to the millisecond (``2024-05-01T12:00:00.123+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def url_key(url: str) -> str:
    """What an entry's URL is matched by: its SHA-256, so the journal keeps no query secrets."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def _storable(text: str) -> str:
    """``text`` as SQLite can store it: a lone surrogate (JSON allows ``"\\ud800"``) escaped."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def lock_path(path: Path) -> Path:
    """The side file whose lock says a run holds the journal at ``path``."""
    return path.with_name(path.name + ".lock")


class _Lock:
    """An exclusive ``flock`` on the journal's side file, held for the run.

    The kernel drops it when the process ends however it ends, so a run
    killed with ``kill -9`` leaves no stale lock.  The side file stays:
    removing it could let two runs lock two different files of one name.
    """

    def __init__(self, journal: Path) -> None:
        import fcntl

        self.path = lock_path(journal)
        try:
            self._descriptor: int | None = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise JournalError(
                f"journal {journal}: cannot open {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._descriptor)
            self._descriptor = None
            raise JournalBusyError(
                f"journal {journal} is in use by another run (locked through {self.path})"
            ) from None

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the lock
            self._descriptor = None


def check_not_busy(path: str | os.PathLike[str]) -> None:
    """Raise :class:`JournalBusyError` now if another run holds the journal at ``path``.

    For an early answer, before a long input is checked: the run itself takes
    the lock for good when it opens the journal.
    """
    journal = Path(path)
    if journal.parent.is_dir():
        _Lock(journal).release()


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the journal at ``path``, its schema checked (and made, with ``create``).

    Raises :class:`JournalError` for a missing file (without ``create``), a
    file that is not a journal, or a journal of a newer schema.
    """
    if path.is_dir():
        raise JournalError(f"journal {path}: is a folder, not a file")
    if not create and not path.exists():
        raise JournalError(f"journal {path}: no such file")
    try:
        if create:
            connection = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        else:
            # mode=rw: never create an empty journal where a user mistyped a name.
            connection = sqlite3.connect(
                path.resolve().as_uri() + "?mode=rw",
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot open: {exc}") from None
    try:
        _check_schema(connection, path, create)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_schema(connection: sqlite3.Connection, path: Path, create: bool) -> None:
    try:
        # WAL: readers (the journal command, the run's own look-ups) never wait for
        # the run's commits.  synchronous=FULL syncs each commit: with batched
        # commits that is a few syncs a second, and a power loss then loses no
        # more than a kill -9 does.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if application_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path}: schema version {version} is newer than this version "
                    f"understands ({SCHEMA_VERSION}); upgrade download-pipeline-processor"
                )
            if version < SCHEMA_VERSION and create:
                # Only a run upgrades (it opens with ``create``): a reader (the
                # ``journal`` command, an export) leaves an older journal as it is,
                # still readable by the release that wrote it.
                _upgrade(connection)
            return
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id != 0 or tables or not create:
            raise JournalError(f"journal {path}: not a journal of download-pipeline-processor")
        with _transaction(connection):
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"journal {path}: not a journal database ({exc})") from None


def _upgrade(connection: sqlite3.Connection) -> None:
    """Bring an older journal's schema up to :data:`SCHEMA_VERSION`, in one transaction."""
    with _transaction(connection):
        # Read again under the write lock: another process may have upgraded it meanwhile.
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in _UPGRADES[step]:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front: a reader's brief lock makes this
    # wait (busy timeout) instead of failing halfway through a batch.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def entry_status(file_data: FileData) -> str:
    """What the journal records for a file the post-processors are done with."""
    error = file_data.error
    if error is None:
        return SUCCEEDED
    return INTERRUPTED if isinstance(error.error, PipelineInterrupted) else FAILED


class Journal:
    """One run's hold on the journal at ``path``: its lock, its look-ups and its records."""

    def __init__(self, path: str | os.PathLike[str], *, skip_failed: bool = False) -> None:
        self.path = Path(path)
        self.skip_failed = skip_failed
        self._closed = True  # until the run's row exists
        self._lock = _Lock(self.path)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            self._writer = connect(self.path, create=True)
            with _transaction(self._writer):
                cursor = self._writer.execute(
                    "INSERT INTO runs (started_at) VALUES (?)", (utc_now(),)
                )
            assert cursor.lastrowid is not None
            #: This run's number in the ``runs`` table.
            self.run = cursor.lastrowid
            # A first run has nothing to look up: it pays no query per entry.
            earlier = self._writer.execute("SELECT 1 FROM entries LIMIT 1").fetchone()
            if earlier is not None:
                # Its own connection: look-ups run on the download threads while
                # the recorder commits from others.
                self._reader = connect(self.path, create=False)
        except BaseException:
            self.close()
            raise
        self._closed = False
        #: Counts of this run, written to its ``runs`` row with every batch.
        self.counts = dict.fromkeys((*STATUSES, "skipped"), 0)
        #: The run's summary, counting skipped entries as they are skipped.
        self.summary: RunSummary | None = None

    # -- the input side ------------------------------------------------------------

    def already_done(self, file_data: FileData) -> bool:
        """True when an earlier run recorded this entry as succeeded (or failed, with
        ``skip_failed``): the run leaves it out."""
        if self._reader is None:
            return False
        row = self._reader.execute(
            "SELECT status, run FROM entries WHERE id = ? AND url_key = ?",
            (_storable(file_data.id), url_key(file_data.url)),
        ).fetchone()
        # Rows of this run do not count: an input listing one file twice runs it
        # twice, as it would without a journal, whatever the timing.
        if row is None or row[1] == self.run:
            return False
        status = row[0]
        done = status == SUCCEEDED or (self.skip_failed and status == FAILED)
        if done:
            self.counts["skipped"] += 1
            if self.summary is not None:
                self.summary.skipped += 1
        return done

    # -- the output side -------------------------------------------------------------

    def recorder(self, holders: Sequence[BasePostProcessor] = ()) -> JournalRecorder:
        """The post-processor that records each file; the pipeline runs it after the user's.

        ``holders`` are the run's post-processors that hold files to publish
        later: a file is recorded once each of them has published it.
        """
        return JournalRecorder(self, holders)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Commit ``rows`` and this run's counts in one transaction."""
        if self._writer is None:
            raise JournalError(f"journal {self.path} is closed")
        counts = self.counts
        with _transaction(self._writer) as connection:
            connection.executemany(_UPSERT, rows)
            connection.execute(
                "UPDATE runs SET succeeded = ?, failed = ?, interrupted = ?, skipped = ?"
                " WHERE run = ?",
                (*(counts[key] for key in (*STATUSES, "skipped")), self.run),
            )

    def close(self) -> None:
        """Mark the run finished, disconnect and release the lock; safe to call twice."""
        try:
            if self._writer is not None and not self._closed:
                self._closed = True
                self.write([])
                with _transaction(self._writer) as connection:
                    connection.execute(
                        "UPDATE runs SET finished_at = ? WHERE run = ?", (utc_now(), self.run)
                    )
        finally:
            for open_connection in (self._reader, self._writer):
                if open_connection is not None:
                    open_connection.close()
            self._reader = self._writer = None
            self._lock.release()


class _Held:
    """A file's prepared row, waiting for the holders that have not published it yet."""

    __slots__ = ("ident", "row", "url", "waiting")

    def __init__(self, ident: str, url: str, row: tuple[Any, ...], waiting: set[int]) -> None:
        self.ident = ident
        self.url = url
        self.row = row
        self.waiting = waiting


class JournalRecorder(BasePostProcessor):
    """Records each file's outcome once every post-processor before it is done with it.

    With ``holders`` (post-processors that publish files later), a file's row
    (its outcome record as JSON text, not the result object) is kept until
    :meth:`published` has heard from each holder that it published the file.
    """

    options = ()

    def __init__(self, journal: Journal, holders: Sequence[BasePostProcessor] = ()) -> None:
        self.journal = journal
        self._pending: list[tuple[Any, ...]] = []
        self._holders = {id(holder): n for n, holder in enumerate(holders)}
        # Keyed by id(file_data): a holder returns the very objects it was given,
        # alive as long as it holds them.
        self._held: dict[int, _Held] = {}
        # The post-process thread may wait long for the next file; the timer
        # commits a partial batch meanwhile, so a kill loses a bounded time.
        self._timer = FlushTimer(self.flush, FLUSH_INTERVAL, name="journal")

    def post_process(self, result: Any, file_data: FileData) -> None:
        error = file_data.error
        record = file_data.download
        # Without its times: those are the moment it is recorded.
        row = (
            _storable(file_data.id),
            url_key(file_data.url),
            _storable(redact_url(file_data.url)),
            entry_status(file_data),
            None if error is None else error.stage,
            None if error is None else _storable(error.message),
            record.http_status,
            record.attempts,
            record.size,
            record.sha256,
            record.elapsed,
            # What the jsonl post-processor writes for the file: ``journal --export``.
            _storable(to_json(outcome_record(result, file_data))),
            file_data.input_index,
        )
        with self._timer.lock:
            if self._holders:
                waiting = set(self._holders.values())
                self._held[id(file_data)] = _Held(file_data.id, file_data.url, row, waiting)
            else:
                self._record(row)

    def published(self, holder: BasePostProcessor, files: Sequence[FileData]) -> None:
        """``holder`` made ``files`` durable: record those no other holder still holds."""
        number = self._holders.get(id(holder))
        if number is None:
            return
        with self._timer.lock:
            for file_data in files:
                held = self._held.get(id(file_data))
                if held is None or held.ident != file_data.id or held.url != file_data.url:
                    continue  # not one of this run's files, or returned twice
                held.waiting.discard(number)
                if not held.waiting:
                    del self._held[id(file_data)]
                    self._record(held.row)

    def _record(self, row: tuple[Any, ...]) -> None:
        """Queue ``row`` for the next commit (the timer's lock held)."""
        now = utc_now()
        self.journal.counts[row[3]] += 1
        self._pending.append((*row, now, now, self.journal.run))
        if len(self._pending) >= BATCH_SIZE:
            self.flush()
        else:
            self._timer.pending()

    def flush(self) -> None:
        """Commit the buffered rows."""
        with self._timer.lock:
            if not self._pending:
                return
            self.journal.write(self._pending)
            # Cleared once committed: a failed commit is tried again by the next flush.
            self._pending.clear()
            self._timer.flushed()

    def close(self) -> None:
        """Commit what is left, mark the run finished and release the journal."""
        self._timer.close()
        if self._held:
            logger.warning(
                "%d file(s) were never published by a post-processor that holds files;"
                " the journal leaves them out, so a rerun does them again",
                len(self._held),
            )
            self._held.clear()
        try:
            self.flush()
        finally:
            self.journal.close()
