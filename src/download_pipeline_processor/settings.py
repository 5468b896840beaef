"""Every setting of a run, with its default, in one place.

A setting the command line exposes carries its flag, help text and help
section in its field's metadata (:class:`CliOption`); ``cli.py`` makes the
click options from these fields, so a setting is spelled once.  Bounds and
choices live in the metadata too, read by both the CLI's checks and
:meth:`PipelineSettings.__post_init__`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ._version import __version__
from .errors import UsageError
from .options import merge_headers, parse_header, parse_size

__all__ = [
    "CLI_SECTIONS",
    "DEFAULT_CACHE_FOLDER",
    "DEFAULT_USER_AGENT",
    "INPUT_FORMATS",
    "MIN_LIMITED_READ",
    "PROCESSING_MODES",
    "CliOption",
    "PipelineSettings",
    "cli_fields",
    "default_cache_root",
    "user_cache_folder",
]


#: The default cache root's name in the temp dir, before ``-<uid>``.
DEFAULT_CACHE_FOLDER = "download-pipeline-processor"
PROCESSING_MODES = ("thread", "process")
#: The built-in formats ``--input-format`` names (plugins may register more).
INPUT_FORMATS = ("json", "jsonl", "csv", "urls")
#: The sections of ``--help``, in order; every CLI option belongs to one.
CLI_SECTIONS = ("input", "download", "processing", "output", "logging")


def default_cache_root() -> Path:
    """The cache's parent folder when ``--download-cache`` is not given.

    One per user (``<temp dir>/download-pipeline-processor-<uid>``, as tmux
    names its socket folder): a single shared name in the world-writable temp
    dir would be the folder of whoever made it first.  The cache checks it is
    the user's own (see ``cache.open_cache_root``).
    """
    return user_cache_folder(Path(tempfile.gettempdir()))


def user_cache_folder(shared: Path) -> Path:
    """The user's own cache root inside the shared folder ``shared``.

    The default root in the temp dir, and the root inside a sticky shared
    folder given as ``--download-cache`` (``/tmp``, ``/dev/shm``): one name,
    one set of checks (``_cache.open_cache_root``).
    """
    return shared / f"{DEFAULT_CACHE_FOLDER}-{os.geteuid()}"


@dataclass(frozen=True)
class CliOption:
    """How a setting is spelled on the command line; ``cli.py`` builds the click option."""

    flag: str
    #: One of :data:`CLI_SECTIONS`: where ``--help`` lists the option.
    section: str
    help: str
    metavar: str | None = None
    #: Reads the command line's text (``parse_size``), raising ValueError on bad
    #: text; None: read by the default's type (int, float, str; bool is a flag).
    parse: Callable[[str], Any] | None = None
    #: What the bound's minimum counts, for the error message ("byte(s)").
    unit: str = ""
    #: The value is a folder (a path naming an existing file is refused).
    directory: bool = False
    #: The value is a file's path (a path naming a folder is refused).
    file: bool = False
    #: Shown as the default when the real one is worked out at run time.
    shown_default: str | None = None
    #: A repeatable option: ``parse`` reads each, and this makes the setting of them all.
    collect: Callable[[Sequence[Any]], Any] | None = None

    def __post_init__(self) -> None:
        if self.section not in CLI_SECTIONS:
            raise ValueError(f"{self.flag}: unknown help section {self.section!r}")


def _setting(
    default: Any,
    *,
    minimum: float | None = None,
    above: bool = False,
    choices: Sequence[str] | None = None,
    cli: CliOption | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A settings field: its default, its bound (``>= minimum``, or ``> minimum``
    with ``above``), its choices and how the command line spells it."""
    metadata = {"minimum": minimum, "above": above, "choices": choices, "cli": cli}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _header_options(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The run's headers from every ``--header``: a later one wins, name by name."""
    return merge_headers(*({name: value} for name, value in pairs))


#: The smallest read under --limit-rate, however slow the rate: fewer, larger sleeps.
MIN_LIMITED_READ = 16 * 1024

#: The User-Agent of every request unless ``--user-agent`` or a header says otherwise.
DEFAULT_USER_AGENT = f"download-pipeline-processor/{__version__}"


def cli_fields(section: str | None = None) -> list[dataclasses.Field[Any]]:
    """The settings the command line exposes (of one help section), in declaration order."""
    return [
        setting
        for setting in dataclasses.fields(PipelineSettings)
        if (option := setting.metadata.get("cli")) is not None
        and (section is None or option.section == section)
    ]


@dataclass(frozen=True)
class PipelineSettings:
    """How a run behaves.  Frozen: a run's settings never change under it."""

    #: Concurrent downloads.  Against a far server throughput grows with workers
    #: (benchmarks/, the latency cases); 8 doubles the old 4 and stays polite
    #: to a single host.
    download_workers: int = _setting(
        8,
        minimum=1,
        cli=CliOption("--download-workers", "download", "Concurrent downloads.", metavar="N"),
    )
    #: Downloaded files waiting for a processor; a full queue makes downloads wait.
    download_queue_size: int = _setting(
        10,
        minimum=1,
        cli=CliOption(
            "--download-queue-size",
            "processing",
            "Downloaded files waiting for processing before downloads pause.",
            metavar="N",
        ),
    )
    #: Processing worker threads, each with its own processor instance.
    processing_limit: int = _setting(
        3,
        minimum=1,
        cli=CliOption(
            "--processing-limit",
            "processing",
            "Processing threads, each with its own processor instance.",
            metavar="N",
        ),
    )
    #: Retries after the first attempt (so at most max_retries + 1 attempts).
    max_retries: int = _setting(
        3,
        minimum=0,
        cli=CliOption(
            "--max-retries",
            "download",
            "Retries after the first attempt of a download.",
            metavar="N",
        ),
    )
    #: Base seconds of the exponential backoff between attempts; 0 retries at once.
    retry_backoff: float = _setting(
        1.0,
        minimum=0,
        cli=CliOption(
            "--retry-backoff",
            "download",
            "Base seconds of the exponential backoff between attempts.",
            metavar="SECONDS",
        ),
    )
    #: The longest single wait between attempts, Retry-After included.
    retry_backoff_max: float = _setting(60.0, minimum=0)
    #: Seconds allowed for connecting and for each read, not for a whole file.
    timeout: float = _setting(
        30.0,
        minimum=0,
        above=True,
        cli=CliOption(
            "--timeout",
            "download",
            "Seconds for connecting and for each read.",
            metavar="SECONDS",
        ),
    )
    #: A deadline for one whole attempt of one file, in seconds (``--timeout``
    #: still bounds each network operation inside it); None: no deadline.  An
    #: attempt past it fails and is retried like a timeout.
    file_timeout: float | None = _setting(
        None,
        minimum=0,
        above=True,
        cli=CliOption(
            "--file-timeout",
            "download",
            "Seconds one attempt at one file may take in all (--timeout still applies "
            "to each read); a slower attempt fails and is retried.",
            metavar="SECONDS",
            parse=float,
            unit="second(s)",
            shown_default="none",
        ),
    )
    #: The largest file accepted, in bytes; None: no limit.  A file announced
    #: larger (Content-Length, or the entry's ``size``) fails without its body
    #: being written, one that grows past it is cut off; neither is retried.
    max_file_size: int | None = _setting(
        None,
        minimum=0,
        cli=CliOption(
            "--max-file-size",
            "download",
            "Largest file accepted (K, M, G, T suffixes, powers of 1024); a larger one "
            "fails at once and is not retried.",
            metavar="SIZE",
            parse=parse_size,
            unit="byte(s)",
            shown_default="unlimited",
        ),
    )
    #: Where the run's private cache folder is made: a folder of the user's own,
    #: writable by nobody else.  None: a per-user folder in the system temp dir.
    download_cache: str | os.PathLike[str] | None = _setting(  # noqa: RUF009 - a field()
        None,
        cli=CliOption(
            "--download-cache",
            "download",
            "Folder for the temporary cache: the user's own and writable by no one else, "
            "or a sticky shared one such as /tmp (then the user's own folder in it); the "
            "run's private folder is made inside and removed.",
            metavar="DIR",
            directory=True,
            # Not default_cache_root(): finding the temp dir writes a test file, on every start.
            shown_default=f"<temp dir>/{DEFAULT_CACHE_FOLDER}-<uid>",
        ),
    )
    #: Use the simulated downloader: no network, placeholder files.
    simulate_downloads: bool = _setting(
        False,
        cli=CliOption(
            "--simulate-downloads",
            "download",
            "Run every stage without network, with placeholder files.",
        ),
    )
    #: Seconds (low, high) a simulated download waits; (0, 0) for none.
    simulate_delay: tuple[float, float] = (1.0, 3.0)
    #: Name of the registered download backend; None picks from simulate_downloads.
    downloader: str | None = _setting(
        None,
        cli=CliOption(
            "--downloader",
            "download",
            "Download backend registered by a plugin.",
            metavar="NAME",
            shown_default="requests, or simulated with --simulate-downloads",
        ),
    )
    #: Bytes read from the network and written to disk at a time.  Memory for
    #: bodies stays under download_workers x chunk_size; larger blocks mean
    #: fewer system calls per file (benchmarks/RESULTS.md has the figures).
    chunk_size: int = _setting(1024 * 1024, minimum=1)
    #: Redirect hops followed before the file fails.
    max_redirects: int = _setting(10, minimum=0)
    #: URL schemes accepted in the input list.
    allowed_schemes: tuple[str, ...] = ("http", "https")
    #: Seconds in-flight work gets to finish after a stop before it is abandoned.
    stop_grace: float = _setting(2.0, minimum=0)
    #: Where processors run: "thread" (default) or "process" (one worker process
    #: per processing slot, for CPU-bound processors).
    processing_mode: str = _setting(
        "thread",
        choices=PROCESSING_MODES,
        cli=CliOption(
            "--processing-mode",
            "processing",
            "Run processors in threads, or in worker processes for CPU-bound work "
            "(the class must be importable and its results picklable).",
        ),
    )
    #: Seconds one file's processing may take; None: no limit.  A file past it
    #: fails at stage ``process``.  In process mode its worker process is
    #: killed and a new one started; in thread mode a thread cannot be killed,
    #: so it is left running (its late result dropped) and a new thread with
    #: a new processor instance takes its place.
    processing_timeout: float | None = _setting(
        None,
        minimum=0,
        above=True,
        cli=CliOption(
            "--processing-timeout",
            "processing",
            "Seconds one file's processing may take; a slower file fails (process mode: "
            "its worker is killed and replaced; thread mode: the stuck thread is left "
            "behind and replaced).",
            metavar="SECONDS",
            parse=float,
            unit="second(s)",
            shown_default="none",
        ),
    )
    #: Run the pipeline's threads on one CPU core.  Python runs one thread at a
    #: time (the GIL); spread over cores, every hand-off between threads is a
    #: cross-core wake-up.  When that is the limit (many small files on fast
    #: storage, simulated runs) one core is faster; when copying bytes is
    #: (large files, a slow disk) it is slower, as the kernel's copies then
    #: share the core too.  Off by default for that reason, and because native
    #: code in a thread-mode processor (numpy, torch) would inherit the single
    #: core.  Process-mode workers are never pinned.  Linux only.
    pin_threads: bool = _setting(
        False,
        cli=CliOption(
            "--pin-threads",
            "processing",
            "Run the pipeline's threads on one CPU core (Linux): faster for many "
            "small files on fast storage or simulated runs, slower for large files or a "
            "slow disk, and not for thread-mode processors running multi-threaded native "
            "code.",
        ),
    )
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
    cache_size: int | None = _setting(
        None,
        minimum=1,
        cli=CliOption(
            "--cache-size",
            "download",
            "Most bytes the cache holds at once (K, M, G, T suffixes, powers of 1024); "
            "downloads wait for room, and a single larger file runs alone.",
            metavar="SIZE",
            parse=parse_size,
            unit="byte(s)",
            shown_default="unlimited",
        ),
    )
    #: The journal (``--journal``): a SQLite database recording every file's
    #: outcome; a later run with it skips the entries it holds as succeeded.
    #: None: no journal.
    journal: str | os.PathLike[str] | None = _setting(  # noqa: RUF009 - a field()
        None,
        cli=CliOption(
            "--journal",
            "input",
            "SQLite file recording every file's outcome (made if missing); a rerun with it "
            "skips the files it holds as succeeded and tries the failed ones again.",
            metavar="PATH",
            file=True,
            shown_default="none",
        ),
    )
    #: With a journal: also leave out the entries it holds as failed.
    skip_failed: bool = _setting(
        False,
        cli=CliOption(
            "--skip-failed",
            "input",
            "With --journal: also skip the files it holds as failed (interrupted ones still run).",
        ),
    )
    #: The input's format; None: by the file's extension (``.json``, ``.jsonl``,
    #: ``.ndjson``, ``.csv``, ``.txt``, ``.urls``, each also ``.gz``), or sniffed
    #: from the first character for standard input and other names.
    input_format: str | None = _setting(
        None,
        cli=CliOption(
            "--input-format",
            "input",
            "Format of --files: json (a list of objects or URLs), jsonl, csv (a header row "
            "with a url column), urls (one per line), or one a plugin registers (see "
            "'plugins').",
            metavar="NAME",
            shown_default="by extension; sniffed for -",
        ),
    )
    #: Run the valid entries of an input with invalid ones, counting those as failed.
    skip_invalid: bool = _setting(
        False,
        cli=CliOption(
            "--skip-invalid",
            "input",
            "Run the valid entries of an input that has invalid ones; the summary counts "
            "those as failed, with their reasons.",
        ),
    )
    #: Extra request headers for every download (never logged); an entry's
    #: ``headers`` override them name by name, for its requests.
    headers: dict[str, str] = _setting(  # noqa: RUF009 - a field()
        None,
        default_factory=dict,
        cli=CliOption(
            "--header",
            "download",
            "Request header sent with every request (repeatable); an entry's 'headers' "
            "override it.  Never logged; Authorization and Cookie are not sent on to another "
            "host after a redirect.",
            metavar="'NAME: VALUE'",
            parse=parse_header,
            collect=_header_options,
            shown_default="none",
        ),
    )
    #: The User-Agent header of every request (a ``--header`` of that name wins).
    user_agent: str = _setting(
        DEFAULT_USER_AGENT,
        cli=CliOption(
            "--user-agent",
            "download",
            "User-Agent header of every request.",
            metavar="TEXT",
        ),
    )
    #: At most this many downloads in flight to one host (scheme, host and port)
    #: across all workers; None: only download_workers limits.  A host that
    #: answers 429 gets fewer (halved, growing back by one per success), and one
    #: that sends Retry-After with a 429 or 503 is paused for everyone.
    max_per_host: int | None = _setting(
        None,
        minimum=1,
        cli=CliOption(
            "--max-per-host",
            "download",
            "Most downloads in flight to one host (scheme, host and port) across all "
            "workers.  Whatever the limit, a host answering 429 gets half as many until it "
            "recovers, and a Retry-After pauses the whole host.",
            metavar="N",
            parse=int,
            shown_default="none: only --download-workers limits",
        ),
    )
    #: Bytes per second the whole run downloads at most; None: no limit.
    limit_rate: int | None = _setting(
        None,
        minimum=1,
        cli=CliOption(
            "--limit-rate",
            "download",
            "Most bytes per second the whole run downloads (K, M, G suffixes, powers of "
            "1024), over all files and workers.",
            metavar="SIZE",
            parse=parse_size,
            unit="byte(s) per second",
            shown_default="unlimited",
        ),
    )

    def __post_init__(self) -> None:
        for setting in dataclasses.fields(self):
            value = getattr(self, setting.name)
            if value is None and setting.default is None:
                continue  # None means "not bounded" or "worked out at run time"
            minimum = setting.metadata.get("minimum")
            if minimum is not None and not (
                value > minimum if setting.metadata["above"] else value >= minimum
            ):
                raise UsageError(f"invalid setting {setting.name}={value!r}")
            choices = setting.metadata.get("choices")
            if choices is not None and value not in choices:
                raise UsageError(
                    f"invalid setting {setting.name}={value!r}; choose one of {', '.join(choices)}"
                )
        low, high = self.simulate_delay
        if not 0 <= low <= high:
            raise UsageError(f"invalid setting simulate_delay={self.simulate_delay!r}")
        if self.simulate_downloads and self.downloader:
            # A simulation makes no request: a real downloader chosen with it
            # would either be ignored or make the requests the user meant to avoid.
            raise UsageError(
                f"--simulate-downloads and --downloader {self.downloader} do not go together:"
                " a simulation makes no request; drop one of them"
            )

    @property
    def downloader_name(self) -> str:
        """The download backend to use."""
        if self.downloader:
            return self.downloader
        return "simulated" if self.simulate_downloads else "requests"

    @property
    def read_size(self) -> int:
        """Bytes a downloader reads and writes at a time: ``chunk_size``, less under
        ``--limit-rate`` so that one write is paid for in a fraction of a second (a
        loop sleeping a whole megabyte at a slow rate would miss its timeouts)."""
        if self.limit_rate is None:
            return self.chunk_size
        return max(min(self.chunk_size, self.limit_rate // 8), MIN_LIMITED_READ)

    @property
    def request_headers(self) -> dict[str, str]:
        """The headers of every request: the User-Agent, then ``headers`` over it."""
        return merge_headers({"User-Agent": self.user_agent}, self.headers)

    @property
    def cache_root(self) -> Path:
        """The folder in which the run's private cache folder is made."""
        if self.download_cache is None:
            return default_cache_root()
        return Path(self.download_cache)

    def evolve(self, **changes: Any) -> PipelineSettings:
        """A copy with some settings changed."""
        return replace(self, **changes)
