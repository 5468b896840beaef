"""One shard being written: a tar streamed to a temporary file, and its samples' metadata rows.

The image bytes go straight to the tar on disk; only the metadata rows (a
few hundred bytes each) stay in memory until the shard is finished, so
memory does not grow with the images.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from download_pipeline_processor import FileData
from download_pipeline_processor.redact import redact_url, scrub
from download_pipeline_processor.report import input_fields, to_json
from download_pipeline_processor.summary import failure_reason

from .model import SUCCESS, ResizedImage

__all__ = ["COLUMNS", "SUCCESS", "FinishedShard", "ShardWriter", "status_of"]

#: img2dataset's ``status`` of a failure, by the stage it failed at.
_FAILED_AT = {"download": "failed_to_download", "process": "failed_to_resize"}
#: The metadata columns, img2dataset's names first; the entry's other fields follow them.
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("key", pa.string()),
    ("url", pa.string()),
    ("caption", pa.string()),
    ("status", pa.string()),
    ("error_message", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("original_width", pa.int64()),
    ("original_height", pa.int64()),
    ("sha256", pa.string()),
    ("id", pa.string()),
    ("name", pa.string()),
)
_COLUMN_NAMES = frozenset(name for name, _ in COLUMNS)


def status_of(file_data: FileData) -> str:
    """``success``, or img2dataset's word for the stage the file failed at."""
    error = file_data.error
    if error is None:
        return SUCCESS
    return _FAILED_AT.get(error.stage, "failed_to_post_process")


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


@dataclass
class FinishedShard:
    """A shard's three files, written under temporary names, and the files it holds."""

    number: int
    #: (temporary path, final name) in publication order: the parquet last, as
    #: the mark that the shard is complete.
    parts: list[tuple[str, str]]
    files: list[FileData] = field(default_factory=list)


class ShardWriter:
    """Writes the samples of shard ``number`` into ``tar_path`` as they come."""

    def __init__(self, number: int, samples_per_shard: int, tar_path: str) -> None:
        self.number = number
        self.samples_per_shard = samples_per_shard
        self.key_digits = max(1, len(str(samples_per_shard - 1)))
        self.tar_path = tar_path
        # The file is ours, not tarfile's: a shard abandoned after a failed
        # write is closed without tarfile writing its end blocks after a
        # broken member.
        self._file: BinaryIO = Path(tar_path).open("wb")  # noqa: SIM115 - closed by finish()
        self._tar = tarfile.open(fileobj=self._file, mode="w")  # noqa: SIM115
        self.rows: list[dict[str, Any]] = []
        self.files: list[FileData] = []
        self.statuses: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.started = time.time()

    @property
    def full(self) -> bool:
        """True once the shard holds ``samples_per_shard`` rows (samples and failures)."""
        return len(self.rows) >= self.samples_per_shard

    def add(self, result: Any, file_data: FileData) -> None:
        """Record ``file_data`` under the next key; a successful image goes into the tar.

        An :class:`OSError` (a full disk, a quota) leaves the tar with a
        broken member: the caller abandons the shard, nothing more is added.
        """
        key = f"{self.number:05d}{len(self.rows):0{self.key_digits}d}"
        row = self._row(key, result, file_data)
        if row["status"] == SUCCESS:
            assert isinstance(result, ResizedImage)
            self._member(f"{key}.{result.format}", result.data)
            self._member(f"{key}.json", to_json(row).encode("utf-8"))
            if row["caption"] is not None:
                self._member(f"{key}.txt", row["caption"].encode("utf-8"))
        elif file_data.error is not None:
            self.reasons[failure_reason(file_data.error)] += 1
        self.rows.append(row)
        self.files.append(file_data)
        self.statuses[row["status"]] += 1

    def _row(self, key: str, result: Any, file_data: FileData) -> dict[str, Any]:
        fields = input_fields(file_data)
        # Request headers configure the download; they are not the sample's metadata.
        fields.pop("headers", None)
        caption = fields.pop("caption", None)
        error = file_data.error
        image = result if isinstance(result, ResizedImage) else None
        row: dict[str, Any] = {
            "key": key,
            "url": redact_url(file_data.url),
            "caption": None if caption is None else str(caption),
            "status": status_of(file_data),
            "error_message": None if error is None else scrub(error.message, file_data.url),
            "width": image and image.width,
            "height": image and image.height,
            "original_width": image and image.original_width,
            "original_height": image and image.original_height,
            "sha256": image.sha256 if image else file_data.download.sha256,
            "id": str(file_data.id),
            "name": str(file_data.name),
        }
        for name, value in fields.items():
            if name not in _COLUMN_NAMES:
                row[name] = value
        return row

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o444
        self._tar.addfile(info, io.BytesIO(data))

    def finish(self, parquet_path: str, stats_path: str) -> None:
        """Close the tar; write the parquet and the stats to their temporary paths."""
        self._tar.close()
        self._file.close()
        pq.write_table(metadata_table(self.rows), parquet_path)
        ended = time.time()
        stats = {
            "count": len(self.rows),
            "successes": self.statuses[SUCCESS],
            "failed_to_download": self.statuses["failed_to_download"],
            "failed_to_resize": self.statuses["failed_to_resize"],
            "failed_to_post_process": self.statuses["failed_to_post_process"],
            "status_dict": dict(self.statuses),
            "failure_reasons": dict(self.reasons),
            "start_time": _utc(self.started),
            "end_time": _utc(ended),
            "duration": round(ended - self.started, 3),
        }
        with Path(stats_path).open("w", encoding="utf-8") as out:
            json.dump(stats, out, indent=2, ensure_ascii=False)

    def abandon(self) -> None:
        """Close the tar's file as it is, without end blocks (the caller removes the files)."""
        with contextlib.suppress(OSError):  # flushing the buffer may fail as the write did
            self._file.close()


def metadata_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as a table: the fixed columns typed, each other field a column of its own.

    An extra field whose values do not share one type (a number here, text
    there) or are not scalars becomes a column of JSON text.
    """
    arrays = [pa.array([row.get(name) for row in rows], type=kind) for name, kind in COLUMNS]
    names = [name for name, _ in COLUMNS]
    extras: dict[str, None] = {}
    for row in rows:
        extras.update(dict.fromkeys(name for name in row if name not in _COLUMN_NAMES))
    for name in extras:
        values = [row.get(name) for row in rows]
        try:
            column = pa.array(values)
            if pa.types.is_nested(column.type) or pa.types.is_null(column.type):
                raise TypeError("not a scalar column")
        except (pa.ArrowException, TypeError, ValueError):
            column = pa.array(
                [None if value is None else _text(value) for value in values], type=pa.string()
            )
        arrays.append(column)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else to_json(value)
