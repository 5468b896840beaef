"""The parquet format read through the framework: fields, nulls, values, bad rows, row groups."""

from __future__ import annotations

import datetime
import decimal
import gzip
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dpp_parquet.plugin
from download_pipeline_processor._inputs import load_file_list
from download_pipeline_processor._registry import PluginRegistry
from download_pipeline_processor.errors import InputError, InvalidEntriesError
from download_pipeline_processor.testing import make_plugin_manager
from dpp_parquet import read_parquet


def load(path: Path, **options: Any) -> Any:
    """The checked entries of ``path``, read with the parquet format registered."""
    formats = PluginRegistry(make_plugin_manager(dpp_parquet.plugin)).input_formats
    return load_file_list(path, formats=formats, **options)


def write(path: Path, columns: dict[str, Any], **options: Any) -> Path:
    pq.write_table(pa.table(columns), path, **options)
    return path


class TestFields:
    """Columns become fields; nulls are absent; values are plain JSON-able Python."""

    def test_columns_become_fields(self, tmp_path: Path) -> None:
        """Every column but url is a field of the entry; a null is an absent field."""
        path = write(
            tmp_path / "files.parquet",
            {
                "url": ["https://h/a.jpg", "https://h/b.jpg"],
                "caption": ["a cat", None],
                "size": [10, None],
            },
        )
        first, second = load(path)
        assert (first.url, first.caption, first.size) == ("https://h/a.jpg", "a cat", 10)
        assert second.additional_fields == {}

    def test_values_are_plain(self, tmp_path: Path) -> None:
        """Lists, structs, maps, timestamps and decimals become JSON-able values."""
        path = write(
            tmp_path / "files.parquet",
            {
                "url": ["https://h/a"],
                "tags": [["x", "y"]],
                "box": [{"w": 3, "h": 4.5}],
                "meta": pa.array([[("k", "v")]], pa.map_(pa.string(), pa.string())),
                "taken": [datetime.datetime(2024, 5, 6, 7, 8, 9)],
                "day": [datetime.date(2024, 5, 6)],
                "price": pa.array([decimal.Decimal("1.50")], pa.decimal128(5, 2)),
            },
        )
        (entry,) = load(path)
        assert entry.additional_fields == {
            "tags": ["x", "y"],
            "box": {"w": 3, "h": 4.5},
            "meta": {"k": "v"},
            "taken": "2024-05-06T07:08:09",
            "day": "2024-05-06",
            "price": "1.50",
        }


class TestBadRows:
    """Every bad row is named by its 1-based row number, as other formats name lines."""

    def test_every_bad_row_named(self, tmp_path: Path) -> None:
        """Rows with no url, a bad url, a NaN or binary inside are each named."""
        path = write(
            tmp_path / "files.parquet",
            {
                "url": ["https://h/a", None, "example.org/c", "https://h/d", "https://h/e"],
                "score": [1.0, 2.0, 3.0, float("nan"), 5.0],
                "parts": pa.array(
                    [[b"x"] if i == 4 else [] for i in range(5)], pa.list_(pa.binary())
                ),
            },
        )
        with pytest.raises(InvalidEntriesError) as info:
            load(path)
        assert info.value.reasons == [
            f"{path}: row 2: missing required field 'url'",
            f"{path}: row 3: field 'url' has no scheme ('example.org/c'); give http:// or https://",
            f"{path}: row 4: field 'score' holds nan: only finite numbers are accepted",
            f"{path}: row 5: field 'parts' holds binary data: a field must be JSON (cast it to "
            "a string)",
        ]

    def test_skip_invalid_runs_the_rest(self, tmp_path: Path) -> None:
        """With skip_invalid the good rows are yielded and the bad ones counted."""
        path = write(tmp_path / "files.parquet", {"url": ["https://h/a", "nope", "https://h/c"]})
        entries = load(path, skip_invalid=True)
        assert [entry.url for entry in entries] == ["https://h/a", "https://h/c"]
        assert entries.invalid.count == 1

    @pytest.mark.parametrize(
        ("columns", "message"),
        [
            ({"link": ["https://h/a"]}, "the table has no 'url' column (it has 'link')"),
            (
                {"url": ["https://h/a"], "thumb": [b"\x89PNG"]},
                "column 'thumb' is binary (binary): a field must be JSON; cast it to a string "
                "column",
            ),
        ],
    )
    def test_table_errors_are_one_line(
        self, tmp_path: Path, columns: dict[str, Any], message: str
    ) -> None:
        """A table that cannot be a list of files is one error naming the file."""
        path = write(tmp_path / "files.parquet", columns)
        with pytest.raises(InputError) as info:
            load(path)
        assert str(info.value) == f"{path}: {message}"

    def test_not_parquet(self, tmp_path: Path) -> None:
        """A file that is not Parquet says so, with no traceback."""
        path = tmp_path / "files.parquet"
        path.write_text("https://h/a\n")
        with pytest.raises(InputError, match=r"files\.parquet: not a Parquet file"):
            load(path)


class TestRowGroups:
    """A table of several row groups is read a batch at a time, numbered across groups."""

    def test_rows_numbered_across_groups(self, tmp_path: Path) -> None:
        """Ten row groups of ten rows: every row in order, a bad one named by its row."""
        urls = [f"https://h/{n}" for n in range(100)]
        urls[57] = "ftp://h/57"
        path = write(tmp_path / "files.parquet", {"url": urls}, row_group_size=10)
        assert pq.ParquetFile(path).num_row_groups == 10
        with pytest.raises(InvalidEntriesError) as info:
            load(path)
        assert info.value.reasons == [
            f"{path}: row 58: field 'url' has unsupported scheme 'ftp' (allowed: http, https)"
        ]
        urls[57] = "https://h/57"
        write(path, {"url": urls}, row_group_size=10)
        assert [entry.url for entry in load(path)] == urls

    def test_one_batch_at_a_time(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first row arrives before later row groups are decoded (memory flat in rows)."""
        path = write(
            tmp_path / "files.parquet",
            {"url": [f"https://h/{n}" for n in range(50)]},
            row_group_size=10,
        )
        decoded: list[int] = []
        original = pq.ParquetFile.iter_batches

        # Observing pyarrow's own calls: there is no other way to see what it decoded.
        def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            for batch in original(self, *args, **kwargs):
                decoded.append(batch.num_rows)
                yield batch

        monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
        with path.open("rb") as stream:
            rows = read_parquet(stream)
            next(rows)
            assert decoded == [10]
            assert sum(1 for _ in rows) == 49
        assert decoded == [10] * 5


class TestStreams:
    """A stream that cannot seek (standard input, gzip) is read too."""

    def test_forward_only_stream(self, tmp_path: Path) -> None:
        """A gzip-compressed table (.parquet.gz) reads the same rows."""
        source = write(tmp_path / "plain.parquet", {"url": ["https://h/a", "https://h/b"]})
        path = tmp_path / "files.parquet.gz"
        path.write_bytes(gzip.compress(source.read_bytes()))
        assert [entry.url for entry in load(path)] == ["https://h/a", "https://h/b"]

    def test_unseekable_bytes(self, tmp_path: Path) -> None:
        """read_parquet copies a forward-only stream aside before reading it."""
        source = write(tmp_path / "plain.parquet", {"url": ["https://h/a"]})

        class ForwardOnly(io.BytesIO):
            def seekable(self) -> bool:
                return False

        rows = list(read_parquet(ForwardOnly(source.read_bytes())))
        assert [(row.number, row.fields) for row in rows] == [(1, {"url": "https://h/a"})]
