"""The ``shards`` post-processor: WebDataset tar shards and parquet metadata, as img2dataset writes.

Every file given to it gets a row (and a key) in the current shard;
successful images also go into the shard's tar as ``KEY.jpg``, ``KEY.json``
and, when the entry has a ``caption``, ``KEY.txt``.  A shard is finished
after ``samples_per_shard`` rows, and at the end of the run.  Its three
files are then published, by a background thread so an upload does not stall
the run: ``NNNNN.tar``, ``NNNNN_stats.json`` and last ``NNNNN.parquet``, whose
presence says the shard is complete.

With ``--journal``, a file counts as done only once its shard is published:
the class sets ``holds_results`` and hands the files of each published shard
back through :meth:`ShardsPostProcessor.take_published`, so a run killed
mid-shard does those files again in the next run instead of losing them.

One run per output: a run claims its output with a marker naming it (host,
pid, a random run id, start time) and refuses to start beside a live one.
A shard whose write fails (a full disk, a quota) is dropped whole; the
following files go into a new one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from download_pipeline_processor import BasePostProcessor, FileData, Option
from download_pipeline_processor.redact import redact_url

from .errors import OutputInUseError, ShardWriteError
from .model import SUCCESS, ResizedImage
from .storage import RUN_MARKER, SHARD_FILE, ShardStore

if TYPE_CHECKING:
    from .shard_writer import FinishedShard, ShardWriter

__all__ = ["RECENT_SHARDS_READ", "ShardsPostProcessor", "parse_storage_options"]

logger = logging.getLogger(__name__)

#: After a killed run, how many of its newest published shards are read at
#: start (their ids and URLs): a file published in the instant between a
#: shard's publication and the journal's record of it is not written twice.
RECENT_SHARDS_READ = 8
#: Finished shards waiting for the publishing thread; each is on disk, not in memory.
PUBLISH_QUEUE = 2
#: The run ids of the post-processors open in this process: a marker with
#: this process's pid and another id is a run of this process that ended
#: without closing.
_OPEN_RUNS: set[str] = set()
_OPEN_RUNS_LOCK = threading.Lock()


def parse_storage_options(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``storage_options`` option: JSON text of an object (or a mapping, from Python)."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"storage_options is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("storage_options must be a JSON object, such as '{\"anon\": true}'")
    return value


class _Publisher(threading.Thread):
    """Publishes finished shards in order, one at a time, off the post-process thread."""

    def __init__(self, store: ShardStore) -> None:
        super().__init__(name="shards-publish", daemon=True)
        self.store = store
        self.queue: queue.Queue[FinishedShard | None] = queue.Queue(PUBLISH_QUEUE)
        self.published: list[FileData] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            shard = self.queue.get()
            if shard is None:
                return
            if self.error is not None:
                _remove(shard.parts)
                continue
            try:
                for index, (temporary, name) in enumerate(shard.parts):
                    try:
                        self.store.publish(temporary, name)
                    except BaseException:
                        _remove(shard.parts[index + 1 :])
                        raise
            except Exception as exc:  # noqa: BLE001 - reported by the post-process thread
                self.error = exc
                logger.error("publishing shard %05d failed: %s", shard.number, exc)
                continue
            with self.lock:
                self.published.extend(shard.files)

    def take(self) -> list[FileData]:
        with self.lock:
            taken, self.published = self.published, []
        return taken

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"a shard could not be published: {self.error}") from self.error


def _next_number(names: list[str]) -> int:
    numbers = [int(match.group(1)) for match in map(SHARD_FILE.match, names) if match]
    return max(numbers) + 1 if numbers else 0


def _by_number(names: list[str]) -> dict[int, list[str]]:
    shards: dict[int, list[str]] = {}
    for name in names:
        match = SHARD_FILE.match(name)
        if match:
            shards.setdefault(int(match.group(1)), []).append(name)
    return dict(sorted(shards.items()))


def _remove(parts: list[tuple[str, str]]) -> None:
    for temporary, _ in parts:
        Path(temporary).unlink(missing_ok=True)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, as the kernel says (Linux); None where unknown.

    Boot id and start time in clock ticks: a pid reused after the recorded
    process died, or after a reboot, gives another value.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        # Field 22, counted after the command name in brackets (which may hold spaces).
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


def _new_owner() -> dict[str, Any]:
    """What the marker says of the run writing the output."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run_id": uuid.uuid4().hex,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "process_start": _process_start(os.getpid()),
    }


def _parse_marker(content: bytes) -> dict[str, Any]:
    """The marker's fields; empty when it is not a JSON object (an older or torn marker)."""
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(owner: Mapping[str, Any]) -> str:
    return (
        f"pid {owner.get('pid')} on host {owner.get('host')!r}, run {owner.get('run_id')},"
        f" started {owner.get('started')}"
    )


def _alive_here(owner: Mapping[str, Any]) -> bool:
    """True when the marker's run, on this host, is still running."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if pid == os.getpid():
        with _OPEN_RUNS_LOCK:
            return owner.get("run_id") in _OPEN_RUNS
    try:
        os.kill(pid, 0)  # signal 0: is there such a process?
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    recorded = owner.get("process_start")
    if recorded:
        now = _process_start(pid)
        if now is not None and now != recorded:
            return False  # the pid was reused by another process
    return True


class ShardsPostProcessor(BasePostProcessor):
    """Writes the ``resize`` processor's images as WebDataset shards with parquet metadata."""

    #: The journal records a file once its shard is published, not when
    #: :meth:`post_process` returns (see :meth:`take_published`).
    holds_results = True

    options = (
        Option(
            "output",
            required=True,
            help="folder or fsspec URL (s3://bucket/prefix, memory://x) for the shards",
        ),
        Option(
            "samples_per_shard",
            type=int,
            default=10_000,
            help="rows per shard (samples and failures, as img2dataset counts them)",
        ),
        Option(
            "storage_options",
            default="",
            help="JSON object of fsspec storage options, e.g. '{\"anon\": false}'",
            # It may hold an access key and its secret.
            secret=True,
        ),
        Option(
            "resume_killed",
            type=bool,
            default=False,
            help="another host's run marker in the output is a killed run's: clean up, go on",
        ),
    )

    def __init__(
        self,
        output: str,
        samples_per_shard: int = 10_000,
        storage_options: str | Mapping[str, Any] | None = "",
        resume_killed: bool = False,
    ) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
        self.samples_per_shard = samples_per_shard
        self.store = ShardStore(os.fspath(output), parse_storage_options(storage_options))
        self.resume_killed = resume_killed
        self._owner = _new_owner()
        # A rerun numbers its shards after every existing one: none is overwritten.
        self._next_number = _next_number(self.store.shard_names())
        with _OPEN_RUNS_LOCK:
            _OPEN_RUNS.add(self._owner["run_id"])
        try:
            self._recent = self._after_a_kill()
        except BaseException:
            with _OPEN_RUNS_LOCK:
                _OPEN_RUNS.discard(self._owner["run_id"])
            raise
        self._released: list[FileData] = []
        self._shard: ShardWriter | None = None
        self._publisher = _Publisher(self.store)
        self._publisher.start()
        self._closed = False

    def _after_a_kill(self) -> set[tuple[str, str]]:
        """The (id, url) pairs of the samples in the newest shards of killed runs, if any.

        A run leaves a marker in the output while it writes and removes it
        when it closes.  The marker names its run (host, pid, run id, start
        time) and the first shard of the killed run (of the first one, after
        several kills in a row).  A marker found here whose run is alive (or,
        from another host, not said to be over by ``resume_killed``) raises
        :class:`OutputInUseError`: one run per output.  Otherwise this run's
        marker replaces it.
        """
        import pyarrow.parquet as pq

        marker = self.store.read_marker()
        first = self._next_number
        if marker is not None:
            previous = _parse_marker(marker)
            self._refuse_a_live_run(previous)
            try:
                first = min(first, int(previous["first_shard"]))
            except (ValueError, KeyError, TypeError):
                first = 0
            logger.warning(
                "%s: cleaning up after a killed run (%s)", self.store.output, _describe(previous)
            )
            self.store.remove_marker()
        content = json.dumps({**self._owner, "first_shard": first}).encode("utf-8")
        try:
            self.store.write_marker(content)
        except FileExistsError:
            raise OutputInUseError(
                f"{self.store.output}: another run started writing shards there just now;"
                " one run per output"
            ) from None
        if marker is None:
            return set()
        self.store.remove_leftover_temporaries()
        parquets = []
        for number, parts in _by_number(self.store.shard_names()).items():
            if number < first:
                continue
            if f"{number:05d}.parquet" in parts:
                parquets.append(f"{number:05d}.parquet")
            else:
                # Killed between its tar's publication and its parquet's: none
                # of its files was handed back, the rerun does them again.
                for name in parts:
                    logger.warning("removing %s, an incomplete shard of a killed run", name)
                    self.store.remove(name)
        # The incomplete shard's number is free again: no gap in the numbering.
        self._next_number = _next_number(self.store.shard_names())
        parquets = parquets[-RECENT_SHARDS_READ:]
        seen: set[tuple[str, str]] = set()
        for name in parquets:
            with self.store.open_read(name) as stream:
                rows = pq.read_table(stream, columns=["id", "url", "status"]).to_pylist()
            # A failure is tried again: only a sample in a tar is done for good.
            seen.update((row["id"], row["url"]) for row in rows if row["status"] == SUCCESS)
        return seen

    def _refuse_a_live_run(self, owner: Mapping[str, Any]) -> None:
        """Raise :class:`OutputInUseError` unless the marker's run is known to be over."""
        if "pid" not in owner or "host" not in owner:
            return  # an older version's marker, or a torn one: that run was killed
        if owner["host"] == socket.gethostname():
            if _alive_here(owner):
                raise OutputInUseError(
                    f"{self.store.output}: another run writes shards there ({_describe(owner)});"
                    " one run per output: wait for it or stop it (if there is no such run,"
                    f" remove {RUN_MARKER} from the output)"
                )
        elif not self.resume_killed:
            raise OutputInUseError(
                f"{self.store.output}: another host's run writes shards there or was killed"
                f" ({_describe(owner)}); one run per output: once that run is over, start"
                " again with --post-processor-option resume_killed=true"
            )

    def post_process(self, result: Any, file_data: FileData) -> None:
        """Add the file's row (and its image, when it succeeded) to the current shard."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        self._publisher.check()
        if self._recent and (str(file_data.id), redact_url(file_data.url)) in self._recent:
            # Already in a published shard: a killed run published it but its
            # journal had not recorded it yet.
            self._released.append(file_data)
            return
        if file_data.error is None and not isinstance(result, ResizedImage):
            raise TypeError(
                f"shards writes the resize processor's images, not a {type(result).__name__}"
                " result: run it with --processor resize"
            )
        shard = self._shard or self._open_shard()
        try:
            shard.add(result, file_data)
        except OSError as exc:
            self._drop(shard, [], exc)
        if shard.full:
            self._finish_shard()

    def take_published(self) -> list[FileData]:
        """The files whose shard was published since the last call (failures included)."""
        released, self._released = self._released, []
        return released + self._publisher.take()

    def _open_shard(self) -> ShardWriter:
        from .shard_writer import ShardWriter

        number = self._next_number
        self._next_number += 1
        self._shard = ShardWriter(number, self.samples_per_shard, self.store.temporary(".tar"))
        return self._shard

    def _finish_shard(self) -> None:
        shard = self._shard
        if shard is None:
            return
        temporaries: list[str] = []
        try:
            temporaries.append(self.store.temporary(".parquet"))
            temporaries.append(self.store.temporary(".json"))
            parquet, stats = temporaries
            shard.finish(parquet, stats)
        except OSError as exc:
            self._drop(shard, temporaries, exc)
        except BaseException:
            self._shard = None
            shard.abandon()
            _remove([(path, "") for path in (shard.tar_path, *temporaries)])
            raise
        self._shard = None
        name = f"{shard.number:05d}"
        parts = [(shard.tar_path, f"{name}.tar"), (stats, f"{name}_stats.json")]
        parts.append((parquet, f"{name}.parquet"))
        from .shard_writer import FinishedShard

        self._publisher.queue.put(FinishedShard(shard.number, parts, shard.files))

    def _drop(self, shard: ShardWriter, temporaries: list[str], exc: OSError) -> NoReturn:
        """Abandon ``shard`` after a failed write: remove its files, hand none of its files back.

        A member cut short leaves the tar's offsets wrong, so nothing more may
        go into it.  The shard's files are not published: with a journal the
        next run does them again.  Its number was not published either: the
        next shard takes it.
        """
        self._shard = None
        shard.abandon()
        _remove([(path, "") for path in (shard.tar_path, *temporaries)])
        self._next_number = shard.number
        earlier = len(shard.files)
        logger.error(
            "shard %05d could not be written (%s): dropped with the %d file(s) already in it",
            shard.number,
            exc.strerror or exc,
            earlier,
        )
        raise ShardWriteError(
            f"shard {shard.number:05d} could not be written: {exc.strerror or exc};"
            f" the shard was dropped with the {earlier} file(s) already in it"
            " (not published: a rerun with --journal does them again)"
        ) from exc

    def close(self) -> None:
        """Finish the last shard, wait until every shard is published."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._finish_shard()
            finally:
                self._publisher.queue.put(None)
                self._publisher.join()
            self._publisher.check()
            # Every shard is published: the next run need not look for this one's files.
            marker = self.store.read_marker()
            if marker is not None and _parse_marker(marker).get("run_id") == self._owner["run_id"]:
                self.store.remove_marker()
        finally:
            with _OPEN_RUNS_LOCK:
                _OPEN_RUNS.discard(self._owner["run_id"])
