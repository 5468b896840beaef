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
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from download_pipeline_processor import BasePostProcessor, FileData, Option
from download_pipeline_processor.redact import redact_url

from .model import SUCCESS, ResizedImage
from .storage import SHARD_FILE, ShardStore

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
    )

    def __init__(
        self,
        output: str,
        samples_per_shard: int = 10_000,
        storage_options: str | Mapping[str, Any] | None = "",
    ) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
        self.samples_per_shard = samples_per_shard
        self.store = ShardStore(os.fspath(output), parse_storage_options(storage_options))
        # A rerun numbers its shards after every existing one: none is overwritten.
        self._next_number = _next_number(self.store.shard_names())
        self._recent = self._after_a_kill()
        self._released: list[FileData] = []
        self._shard: ShardWriter | None = None
        self._publisher = _Publisher(self.store)
        self._publisher.start()
        self._closed = False

    def _after_a_kill(self) -> set[tuple[str, str]]:
        """The (id, url) pairs of the samples in the newest shards of killed runs, if any.

        A run leaves a marker in the output while it writes and removes it
        when it closes; a marker found here names the first shard of the
        killed run (of the first one, after several kills in a row).
        """
        import pyarrow.parquet as pq

        marker = self.store.read_marker()
        first = self._next_number
        if marker is not None:
            try:
                first = min(first, int(json.loads(marker)["first_shard"]))
            except (ValueError, KeyError, TypeError):
                first = 0
        self.store.write_marker(json.dumps({"first_shard": first}).encode("utf-8"))
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
        shard.add(result, file_data)
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
        shard, self._shard = self._shard, None
        if shard is None:
            return
        parquet = self.store.temporary(".parquet")
        stats = self.store.temporary(".json")
        try:
            shard.finish(parquet, stats)
        except BaseException:
            _remove([(shard.tar_path, ""), (parquet, ""), (stats, "")])
            raise
        name = f"{shard.number:05d}"
        parts = [(shard.tar_path, f"{name}.tar"), (stats, f"{name}_stats.json")]
        parts.append((parquet, f"{name}.parquet"))
        from .shard_writer import FinishedShard

        self._publisher.queue.put(FinishedShard(shard.number, parts, shard.files))

    def close(self) -> None:
        """Finish the last shard, wait until every shard is published."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_shard()
        finally:
            self._publisher.queue.put(None)
            self._publisher.join()
        self._publisher.check()
        # Every shard is published: the next run need not look for this one's files.
        self.store.remove_marker()
