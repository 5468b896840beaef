"""What ``--dry-run`` shows: the run a plan would make, worked out without running it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._batches import takes_batches
from ._cache import cache_root_in, check_cache_root
from ._journal import APPLICATION_ID, FAILED, SUCCEEDED, url_key
from ._plan import PluginChoice, RunPlan
from .errors import JournalError
from .file_data import FileData
from .options import declared_options
from .redact import REDACTED, scrub_urls
from .summary import human_seconds

#: Hosts named one by one; the rest are counted.
SHOWN_HOSTS = 5


def _host_of(url: str) -> str:
    """``scheme://host[:port]``: what ``--max-per-host`` counts, without userinfo."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _plugin(choice: PluginChoice) -> dict[str, Any]:
    # A plugin option may hold a URL with a token in it: never shown whole;
    # one declared secret (credentials) is not shown at all.
    secret = {option.name for option in declared_options(choice.cls) or () if option.secret}
    options = {
        key: REDACTED
        if key in secret
        else scrub_urls(os.fspath(value) if isinstance(value, Path) else str(value))
        for key, value in choice.options.items()
    }
    return {"label": choice.label, "options": options}


def describe_dry_run(plan: RunPlan, files: str) -> dict[str, Any]:
    """The run ``plan`` would make: entries, hosts, plugins, workers and cache folder.

    Reads the plan's checked input once more (streamed) to count hosts, and
    looks at the cache root without making it: nothing is requested or written.
    """
    hosts: Counter[str] = Counter()
    settings = plan.settings
    journal = None if settings.journal is None else Path(settings.journal)
    skipped: int | None = None
    with _journal_lookup(journal, settings.skip_failed) as holds_done:
        entries = plan.checked_entries(None)
        for file_data in entries:
            hosts[_host_of(file_data.url)] += 1
            if holds_done is not None and holds_done(file_data):
                skipped = (skipped or 0) + 1
        if holds_done is not None and skipped is None:
            skipped = 0
    cache_root = cache_root_in(settings.cache_root)
    return {
        "files": files,
        # Standard input has no count before it is read; it is read whole by now.
        "entries": entries.taken if entries.count is None else entries.count,
        "hosts": dict(hosts.most_common()),
        "processor": _plugin(plan.processor),
        "post_processors": [_plugin(choice) for choice in plan.post_processors],
        "downloader": settings.downloader_name,
        "executor": _plugin(plan.executor),
        "download_workers": settings.download_workers,
        "processing_limit": settings.processing_limit,
        "processing_mode": settings.processing_mode,
        # None: the processor has no process_batch and is called per file.
        "processing_batch": (
            {"size": settings.processing_batch_size, "wait": settings.processing_batch_wait}
            if takes_batches(plan.processor.cls)
            else None
        ),
        "max_retries": settings.max_retries,
        "cache_root": str(cache_root),
        "cache_root_exists": check_cache_root(cache_root),
        "journal": None if journal is None else os.fspath(journal),
        # None: no journal, or a journal not made yet (nothing to skip).
        "journal_skips": skipped,
        "limits": {
            "cache_size": settings.cache_size,
            "max_file_size": settings.max_file_size,
            "limit_rate": settings.limit_rate,
            "file_timeout": settings.file_timeout,
            "timeout": settings.timeout,
            "max_per_host": settings.max_per_host,
            "max_retries": settings.max_retries,
        },
    }


@contextlib.contextmanager
def _journal_lookup(journal: Path | None, skip_failed: bool) -> Iterator[Any]:
    """A test of whether the journal holds an entry as done (as the run would skip it).

    Yields None without a journal, or when the journal does not exist yet.
    Opened read-only, so that nothing is written, not even SQLite's side
    files: ``immutable`` when no write-ahead log is left beside it.
    """
    if journal is None or not journal.is_file():
        yield None
        return
    wal = journal.with_name(journal.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    try:
        connection = sqlite3.connect(f"{journal.resolve().as_uri()}?{mode}", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {journal}: cannot open: {exc}") from None
    try:
        try:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {journal}: not a journal database ({exc})") from None
        if application_id != APPLICATION_ID:
            raise JournalError(f"journal {journal}: not a journal of download-pipeline-processor")
        done = (SUCCEEDED, FAILED) if skip_failed else (SUCCEEDED,)

        def holds_done(file_data: FileData) -> bool:
            row = connection.execute(
                "SELECT status FROM entries WHERE id = ? AND url_key = ?",
                (file_data.id, url_key(file_data.url)),
            ).fetchone()
            return row is not None and row[0] in done

        yield holds_done
    finally:
        connection.close()


def _limits_text(limits: Mapping[str, Any]) -> str:
    """``limits: --cache-size 1.07 GB, --max-file-size unlimited, ...``: each flag's value."""

    def size(value: int | None, unit: str = "") -> str:
        if value is None:
            return "unlimited"
        # As the flag takes it: powers of 1024 (2M is 2097152 bytes).
        for suffix, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
            if value >= 1024**power and value % 1024**power == 0:
                return f"{value // 1024**power}{suffix}{unit}"
        return f"{value} B{unit}"

    def seconds(value: float | None) -> str:
        return "none" if value is None else human_seconds(value)

    max_per_host = limits["max_per_host"]
    parts = [
        f"--cache-size {size(limits['cache_size'])}",
        f"--max-file-size {size(limits['max_file_size'])}",
        f"--limit-rate {size(limits['limit_rate'], '/s')}",
        f"--timeout {seconds(limits['timeout'])}",
        f"--file-timeout {seconds(limits['file_timeout'])}",
        f"--max-per-host {'none' if max_per_host is None else max_per_host}",
        f"--max-retries {limits['max_retries']}",
    ]
    return "  limits: " + ", ".join(parts[:3]) + "\n          " + ", ".join(parts[3:])


def _plugin_text(plugin: Mapping[str, Any]) -> str:
    options = ", ".join(f"{key}={value}" for key, value in plugin["options"].items())
    label: str = plugin["label"]
    return label + (f" ({options})" if options else "")


def _batch_text(batch: Mapping[str, Any] | None) -> str:
    """How a processor with process_batch is called, for the processor's line."""
    if batch is None:
        return ""
    return f", batches of up to {batch['size']} (waiting {batch['wait']:g} s to fill)"


def format_dry_run(description: Mapping[str, Any]) -> str:
    """The description as lines for people."""
    hosts: dict[str, int] = description["hosts"]
    shown = [f"{host} ({count})" for host, count in list(hosts.items())[:SHOWN_HOSTS]]
    if len(hosts) > SHOWN_HOSTS:
        shown.append(f"and {len(hosts) - SHOWN_HOSTS} more")
    entries = description["entries"]
    workers = "threads" if description["processing_mode"] == "thread" else "worker processes"
    cache_state = "exists" if description["cache_root_exists"] else "would be made"
    lines = [
        f"Dry run: {description['files']} checked; nothing was requested or written.",
        f"  entries: {entries} file{'' if entries == 1 else 's'}",
        f"  hosts: {len(hosts)}" + (f": {', '.join(shown)}" if shown else ""),
        f"  {_plugin_text(description['processor'])}, {description['processing_limit']} {workers}"
        + _batch_text(description.get("processing_batch")),
        *(f"  {_plugin_text(plugin)}" for plugin in description["post_processors"]),
        f"  downloader {description['downloader']!r}, {description['download_workers']} workers,"
        f" {description['max_retries']} retries",
        f"  {_plugin_text(description['executor'])}",
        f"  cache folder: a private folder in {description['cache_root']} ({cache_state})",
        _limits_text(description["limits"]),
    ]
    if description["journal"] is not None:
        skips = description["journal_skips"]
        held = (
            "new: nothing to skip"
            if skips is None
            else f"would skip {skips} of {entries} entr{'y' if entries == 1 else 'ies'}"
        )
        lines.append(f"  journal: {description['journal']} ({held})")
    return "\n".join(lines)
