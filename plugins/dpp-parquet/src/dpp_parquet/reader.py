"""Reading a Parquet table as a list of files: one entry a row.

The ``url`` column is required; every other column becomes a field of the
same name, and a null is an absent field.  Rows are numbered from 1 (a
Parquet file has no header line) across the whole file, so an error names
``files.parquet: row 7``.  The table is read row group by row group, a batch
of at most :data:`BATCH_ROWS` rows at a time (``ParquetFile.iter_batches``),
so memory does not grow with the number of rows.

Values become plain JSON-able Python: integers, finite floats, booleans and
strings as they are; lists as lists; structs as dicts; maps as dicts (string
keys) or lists of ``[key, value]`` pairs; timestamps, dates and times as ISO
8601 strings; decimals as strings (exact).  A binary column is refused (a
field must be JSON-able, and guessing an encoding would change the data):
cast it to a string column first.  A binary value or a non-finite float
inside a row fails that row, named, as a malformed line does in JSON Lines.
"""

from __future__ import annotations

import datetime
import decimal
import math
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from download_pipeline_processor.errors import InputError
from download_pipeline_processor.input_format import InputEntry

__all__ = ["BATCH_ROWS", "read_parquet"]

#: The most rows decoded at a time (a batch never spans two row groups).
BATCH_ROWS = 4096


class _Unsupported(ValueError):
    """A value a field cannot hold; the message says what it is."""


def read_parquet(stream: IO[bytes]) -> Iterator[InputEntry]:
    """The rows of the Parquet table on ``stream`` as entries, each with its 1-based row number.

    Parquet keeps its schema at the end of the file: a stream that cannot
    seek (standard input, a ``.parquet.gz``) is first copied to a private
    temporary file, in chunks.
    """
    spool = None
    if not stream.seekable():
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
    try:
        yield from _rows(spool if spool is not None else stream)
    finally:
        if spool is not None:
            spool.close()


def _rows(source: IO[bytes]) -> Iterator[InputEntry]:
    try:
        table = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a Parquet file ({exc})") from None
    schema = table.schema_arrow
    if "url" not in schema.names:
        shown = ", ".join(repr(name) for name in schema.names[:10])
        raise InputError(f"the table has no 'url' column (it has {shown})")
    for field in schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type) or (
            pa.types.is_fixed_size_binary(field.type)
        ):
            raise InputError(
                f"column {field.name!r} is binary ({field.type}): a field must be JSON; "
                "cast it to a string column"
            )
    number = 0
    try:
        for group in range(table.num_row_groups):
            for batch in table.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                for row in batch.to_pylist():
                    number += 1
                    yield _entry(number, row)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"row {number + 1}: cannot read the table ({exc})") from None


def _entry(number: int, row: dict[str, Any]) -> InputEntry:
    fields = {}
    for name, value in row.items():
        if value is None:
            continue  # null: an absent field
        try:
            fields[name] = _plain(value)
        except _Unsupported as exc:
            return InputEntry(number, problem=f"field {name!r} {exc}")
    return InputEntry(number, fields)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON-able Python, or :class:`_Unsupported` saying why not."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsupported(f"holds {value}: only finite numbers are accepted")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return _plain_list(value)
    return _plain_scalar(value)


def _plain_list(value: list[Any] | tuple[Any, ...]) -> Any:
    if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        # A map column: a list of (key, value) pairs.
        if all(isinstance(key, str) for key, _ in value):
            return {key: _plain(item) for key, item in value}
        return [[_plain(key), _plain(item)] for key, item in value]
    return [_plain(item) for item in value]


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        raise _Unsupported("holds binary data: a field must be JSON (cast it to a string)")
    raise _Unsupported(f"holds a {type(value).__name__}, which JSON cannot carry")
