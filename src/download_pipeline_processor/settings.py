"""Every setting of a run, with its default, in one place."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import UsageError

#: The default cache root's name in the temp dir, before ``-<uid>``.
DEFAULT_CACHE_FOLDER = "download-pipeline-processor"
PROCESSING_MODES = ("thread", "process")


def default_cache_root() -> Path:
    """The cache's parent folder when ``--download-cache`` is not given.

    One per user (``<temp dir>/download-pipeline-processor-<uid>``, as tmux
    names its socket folder): a single shared name in the world-writable temp
    dir would be the folder of whoever made it first.  The cache checks it is
    the user's own (see ``cache.open_cache_root``).
    """
    return Path(tempfile.gettempdir()) / f"{DEFAULT_CACHE_FOLDER}-{os.geteuid()}"


@dataclass(frozen=True)
class PipelineSettings:
    """How a run behaves.  Frozen: a run's settings never change under it."""

    #: Concurrent downloads.  Against a server 50 ms away throughput grows with
    #: workers (benchmarks/: 16 -> 291 files/s, 64 -> 763); 8 doubles the old 4
    #: and stays polite to a single host.
    download_workers: int = 8
    #: Downloaded files waiting for a processor; a full queue makes downloads wait.
    download_queue_size: int = 10
    #: Processing worker threads, each with its own processor instance.
    processing_limit: int = 3
    #: Retries after the first attempt (so at most max_retries + 1 attempts).
    max_retries: int = 3
    #: Base seconds of the exponential backoff between attempts; 0 retries at once.
    retry_backoff: float = 1.0
    #: The longest single wait between attempts, Retry-After included.
    retry_backoff_max: float = 60.0
    #: Seconds allowed for connecting and for each read, not for a whole file.
    timeout: float = 30.0
    #: Where the run's private cache folder is made: a folder of the user's own,
    #: writable by nobody else.  None: a per-user folder in the system temp dir.
    download_cache: str | os.PathLike[str] | None = None
    #: Use the simulated downloader: no network, placeholder files.
    simulate_downloads: bool = False
    #: Seconds (low, high) a simulated download waits; (0, 0) for none.
    simulate_delay: tuple[float, float] = (1.0, 3.0)
    #: Name of the registered download backend; None picks from simulate_downloads.
    downloader: str | None = None
    #: Bytes read from the network and written to disk at a time.  Memory for
    #: bodies stays under download_workers x chunk_size; 1 MiB measured ~12 %
    #: faster than 256 KiB on 1 MiB files and no slower on small ones.
    chunk_size: int = 1024 * 1024
    #: Redirect hops followed before the file fails.
    max_redirects: int = 10
    #: URL schemes accepted in the input list.
    allowed_schemes: tuple[str, ...] = ("http", "https")
    #: Seconds in-flight work gets to finish after a stop before it is abandoned.
    stop_grace: float = 2.0
    #: Where processors run: "thread" (default) or "process" (one worker process
    #: per processing slot, for CPU-bound processors).
    processing_mode: str = "thread"
    #: Run the pipeline's threads on one CPU core.  Python runs one thread at a
    #: time (the GIL); spread over cores, every hand-off between threads is a
    #: cross-core wake-up.  When that is the limit (many small files on fast
    #: storage, simulated runs) one core is ~2-3x faster; when copying bytes is
    #: (large files, a slow disk) it is slower, as the kernel's copies then
    #: share the core too.  Off by default for that reason, and because native
    #: code in a thread-mode processor (numpy, torch) would inherit the single
    #: core.  Process-mode workers are never pinned.  Linux only.
    pin_threads: bool = False
    #: The most bytes the run's cache holds at once (``--cache-size``); None: no
    #: bound.  A download takes room before it starts and gives it back when
    #: its file is discarded after processing; one that does not fit waits,
    #: first come first served, and one larger than the bound waits for an
    #: empty cache and then runs alone.  The room is the entry's ``size`` when
    #: it has one, else the largest of the last 16 downloads (the whole bound
    #: before the first), replaced by the real size once the file is whole:
    #: the cache keeps within the bound when sizes are announced or similar,
    #: and a file of unknown size larger than those before it can pass it
    #: until it is processed, while nothing new starts.  A full disk (ENOSPC,
    #: EDQUOT) is retried whatever the bound, after the files downloaded
    #: before it are processed (at most retry_backoff_max seconds of waiting).
    cache_size: int | None = None
    #: Extra request headers for every download (never logged).
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks: list[tuple[str, Any, bool]] = [
            ("download_workers", self.download_workers, self.download_workers >= 1),
            ("download_queue_size", self.download_queue_size, self.download_queue_size >= 1),
            ("processing_limit", self.processing_limit, self.processing_limit >= 1),
            ("max_retries", self.max_retries, self.max_retries >= 0),
            ("retry_backoff", self.retry_backoff, self.retry_backoff >= 0),
            ("retry_backoff_max", self.retry_backoff_max, self.retry_backoff_max >= 0),
            ("timeout", self.timeout, self.timeout > 0),
            ("chunk_size", self.chunk_size, self.chunk_size >= 1),
            ("max_redirects", self.max_redirects, self.max_redirects >= 0),
            ("stop_grace", self.stop_grace, self.stop_grace >= 0),
            ("cache_size", self.cache_size, self.cache_size is None or self.cache_size >= 1),
        ]
        for name, value, ok in checks:
            if not ok:
                raise UsageError(f"invalid setting {name}={value!r}")
        if self.processing_mode not in PROCESSING_MODES:
            raise UsageError(
                f"invalid setting processing_mode={self.processing_mode!r}; "
                f"choose one of {', '.join(PROCESSING_MODES)}"
            )
        low, high = self.simulate_delay
        if not 0 <= low <= high:
            raise UsageError(f"invalid setting simulate_delay={self.simulate_delay!r}")

    @property
    def downloader_name(self) -> str:
        """The download backend to use."""
        if self.downloader:
            return self.downloader
        return "simulated" if self.simulate_downloads else "requests"

    @property
    def cache_root(self) -> Path:
        """The folder in which the run's private cache folder is made."""
        if self.download_cache is None:
            return default_cache_root()
        return Path(self.download_cache)

    def evolve(self, **changes: Any) -> PipelineSettings:
        """A copy with some settings changed."""
        return replace(self, **changes)
