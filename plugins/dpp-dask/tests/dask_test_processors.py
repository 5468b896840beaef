"""Processors the dask tests run on the workers, by ``dask_test_processors:ClassName``.

A plain module, not a test module: Dask worker processes import a processor
class by its module path, and they find this folder on ``sys.path`` (the
conftest puts it there before a local cluster is spawned) or on
``PYTHONPATH`` (a command-line run in a subprocess).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

from download_pipeline_processor import DOWNLOAD, BaseProcessor, FileData, Option


def _ids(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


class Sha256(BaseProcessor):
    """sha256 and size of the downloaded file, after ``delay`` seconds (a slow processor).

    Raises :class:`ChosenFailure` for the ids in ``fail_ids`` (comma list),
    ends its whole worker process (``os._exit``) for the ids in ``exit_ids``,
    and logs an error on Dask's worker logger for the ids in ``noise_ids`` (as
    Dask's internals do, say when a heartbeat finds the scheduler closed).
    """

    options = (
        Option("delay", type=float, default=0.0, help="Seconds each file takes."),
        Option("fail_ids", default="", help="Ids that raise ChosenFailure (comma list)."),
        Option("exit_ids", default="", help="Ids that end the worker process (comma list)."),
        Option("noise_ids", default="", help="Ids that log on Dask's worker logger."),
    )

    def __init__(
        self, delay: float = 0.0, fail_ids: str = "", exit_ids: str = "", noise_ids: str = ""
    ) -> None:
        self.delay = delay
        self.fail_ids = _ids(fail_ids)
        self.exit_ids = _ids(exit_ids)
        self.noise_ids = _ids(noise_ids)

    def process(self, file_data: FileData) -> dict[str, Any]:
        if self.delay:
            time.sleep(self.delay)
        if str(file_data.id) in self.exit_ids:
            # What a segfaulting native library does to its process: no cleanup, no reply.
            os._exit(1)
        if str(file_data.id) in self.noise_ids:
            logging.getLogger("distributed.worker").error("dask-internal-noise %s", os.getpid())
        if str(file_data.id) in self.fail_ids:
            raise ChosenFailure("this file was chosen to fail")
        assert file_data.local_path is not None
        body = file_data.local_path.read_bytes()
        return {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "pid": os.getpid()}


class ChosenFailure(Exception):
    """What :class:`Sha256` raises for a file chosen to fail."""


class SettlesEveryFourth(Sha256):
    """:class:`Sha256`, but every fourth file (index 3, 7, ...) is settled without a download."""

    def result_without_download(self, file_data: FileData) -> Any:
        if int(str(file_data.id)[1:]) % 4 == 3:
            return {"settled": True}
        return DOWNLOAD


class BatchSha256(Sha256):
    """:class:`Sha256` through ``process_batch``: each result also holds its batch's size.

    ``fail_ids`` come back as exception instances (that file fails alone);
    ``raise_ids`` make the whole call raise (its batch fails).
    """

    options = (
        *Sha256.options,
        Option("raise_ids", default="", help="Ids whose batch raises (comma list)."),
    )

    def __init__(self, raise_ids: str = "", **options: Any) -> None:
        super().__init__(**options)
        self.raise_ids = _ids(raise_ids)

    def process(self, file_data: FileData) -> dict[str, Any]:
        raise AssertionError("a processor with process_batch is never called per file")

    def process_batch(self, files: list[FileData]) -> list[Any]:
        if self.raise_ids.intersection(str(file_data.id) for file_data in files):
            raise ChosenFailure("this batch was chosen to fail")
        results: list[Any] = []
        for file_data in files:
            try:
                result = Sha256.process(self, file_data)
            except ChosenFailure as exc:
                results.append(exc)
                continue
            results.append({**result, "batch": len(files)})
        return results
