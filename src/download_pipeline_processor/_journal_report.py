"""What ``download-pipeline-processor journal PATH`` shows: counts and failures by reason,
or (``--export``) the whole job's outcome as JSON Lines."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ._journal import STATUSES, SUCCEEDED, connect
from .file_data import DownloadRecord, FileData, StageError
from .report import outcome_record, to_json
from .summary import reason_from_message

__all__ = [
    "describe_journal",
    "export_journal",
    "exported_lines",
    "format_journal",
    "write_export",
]

#: Example ids shown for each failure reason.
EXAMPLES = 3

# Each failure group with its size and its first few entries, in one pass.
_FAILURES_SQL = """
    SELECT stage, reason, total, id FROM (
        SELECT stage, reason, id,
            count(*) OVER (PARTITION BY stage, reason) AS total,
            row_number() OVER (PARTITION BY stage, reason ORDER BY recorded_at, id) AS nth
        FROM entries WHERE status != ?
    )
    WHERE nth <= ?
    ORDER BY total DESC, stage, reason, nth
"""


def describe_journal(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The journal's counts by status, its runs and its failures grouped by reason.

    Raises :class:`~.errors.JournalError` for a missing file or one that is
    not a journal.  Reads only; a run may be writing the journal meanwhile.
    """
    journal = Path(path)
    connection = connect(journal, create=False)
    try:
        by_status = dict.fromkeys(STATUSES, 0)
        for status, count in connection.execute(
            "SELECT status, count(*) FROM entries GROUP BY status"
        ):
            by_status[status] = count
        # The journal keeps each message whole; failures are grouped as the run's
        # summary groups them (HTTP 404, sha256 mismatch...), one rule for both.
        failures: dict[tuple[str, str], dict[str, Any]] = {}
        counted: set[tuple[str, str]] = set()
        for stage, message, total, ident in connection.execute(
            _FAILURES_SQL, (SUCCEEDED, EXAMPLES)
        ):
            reason = reason_from_message(message or "")
            group = failures.setdefault(
                (stage, reason), {"stage": stage, "reason": reason, "count": 0, "examples": []}
            )
            if (stage, message) not in counted:
                counted.add((stage, message))
                group["count"] += total
            if len(group["examples"]) < EXAMPLES:
                group["examples"].append(ident)
        runs = connection.execute(
            "SELECT count(*), max(run) FROM runs",
        ).fetchone()
        last = None
        if runs[1] is not None:
            started, finished = connection.execute(
                "SELECT started_at, finished_at FROM runs WHERE run = ?", (runs[1],)
            ).fetchone()
            last = {"run": runs[1], "started_at": started, "finished_at": finished}
    finally:
        connection.close()
    return {
        "journal": str(journal),
        "entries": sum(by_status.values()),
        "by_status": by_status,
        "runs": runs[0],
        "last_run": last,
        "failures": sorted(
            failures.values(), key=lambda g: (-g["count"], g["stage"], g["reason"])
        ),
    }


def format_journal(description: dict[str, Any]) -> str:
    """The text ``journal PATH`` prints for :func:`describe_journal`'s answer."""
    lines = [f"{description['journal']}: {description['entries']} entries"]
    last = description["last_run"]
    if last is not None:
        ended = f"finished {last['finished_at']}" if last["finished_at"] else "did not finish"
        lines[0] += (
            f", {description['runs']} run(s); the last started {last['started_at']}, {ended}"
        )
    width = max(len(str(count)) for count in description["by_status"].values())
    for status, count in description["by_status"].items():
        lines.append(f"  {status:<12} {count:>{width}}")
    if description["failures"]:
        lines.append("failures by reason:")
        for group in description["failures"]:
            examples = ", ".join(group["examples"])
            more = ", ..." if group["count"] > len(group["examples"]) else ""
            lines.append(
                f"  {group['count']:>{width}}  {group['stage']}: {group['reason']}"
                f"  (e.g. {examples}{more})"
            )
    return "\n".join(lines)


# -- export -----------------------------------------------------------------------------

# One line per entry, in input order; rows recorded before the journal kept
# input positions (schema 1) follow, in the order they were first recorded.
_EXPORT_SQL = """
    SELECT result, id, url, stage, reason, http_status, attempts, bytes, sha256, download_seconds
    FROM entries
    ORDER BY input_index IS NULL, input_index, first_recorded_at, id, url_key
"""
# A schema-1 journal, which readers do not upgrade: no results, no input positions.
_EXPORT_SQL_1 = """
    SELECT NULL, id, url, stage, reason, http_status, attempts, bytes, sha256, download_seconds
    FROM entries
    ORDER BY first_recorded_at, id, url_key
"""


class _RecordedError(StageError):
    """A failure known only by the message a journal row kept (schema 1 rows)."""

    @property
    def message(self) -> str:
        return str(self.error)


def _old_row_record(row: tuple[Any, ...]) -> str:
    """The export line of a row recorded before the journal kept results: what it holds."""
    _, ident, url, stage, reason, http_status, attempts, size, sha256, seconds = row
    file_data = FileData(url, ident)
    if stage is not None:
        file_data.error = _RecordedError(stage, Exception(reason or ""))
    file_data.download = DownloadRecord(attempts or 0, http_status, size, sha256, seconds)
    return to_json(outcome_record(None, file_data))


@contextmanager
def exported_lines(path: str | os.PathLike[str]) -> Iterator[Iterator[str]]:
    """The journal's entries as JSON lines (without newline): each its latest outcome,
    exactly as the ``jsonl`` post-processor wrote it, in input order.

    Raises :class:`~.errors.JournalError` at once for a missing file or one
    that is not a journal.  Reads one snapshot; a run may be writing meanwhile.
    """
    connection = connect(Path(path), create=False)
    try:
        # One read transaction: a consistent snapshot however long the export takes.
        connection.execute("BEGIN")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        rows = connection.execute(_EXPORT_SQL if version >= 2 else _EXPORT_SQL_1)
        yield (row[0] if row[0] is not None else _old_row_record(row) for row in rows)
    finally:
        connection.close()


def write_export(lines: Iterator[str], out: IO[bytes]) -> int:
    """Write ``lines`` to ``out`` as UTF-8 JSON Lines; returns how many."""
    count = 0
    for line in lines:
        out.write(line.encode("utf-8", "backslashreplace") + b"\n")
        count += 1
    return count


def export_journal(path: str | os.PathLike[str], target: str | os.PathLike[str]) -> int:
    """Write the journal's export (:func:`exported_lines`) to the file ``target``.

    Written under a temporary name beside it, synced, then renamed: ``target``
    is either the old file or the whole export, never half of it.  Returns the
    number of lines.  Raises :class:`~.errors.JournalError` for a bad journal
    and :class:`OSError` for a file that cannot be written.
    """
    destination = Path(target)
    with exported_lines(path) as lines:
        handle, partial_name = tempfile.mkstemp(
            prefix=f".{destination.name}.partial-", dir=destination.parent
        )
        partial = Path(partial_name)
        try:
            # mkstemp makes the file private; the export gets a new file's usual mode.
            umask = os.umask(0)
            os.umask(umask)
            partial.chmod(0o666 & ~umask)
            with os.fdopen(handle, "wb") as out:
                count = write_export(lines, out)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return count
