"""The installed command line reading Parquet lists through the plugin's real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from download_pipeline_processor.testing import FileServer

CLI = Path(sys.executable).with_name("download-pipeline-processor")
# Load only this plugin, so other installed plugins cannot change the run.
ENV = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "parquet"}


def run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The command as a real process, bounded in time; its output as text."""
    done = subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, env=ENV, timeout=120, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A loopback HTTP server."""
    with FileServer() as file_server:
        yield file_server


def job_args(files: str, report: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--files",
        files,
        *extra,
        "--processor",
        "checksum",
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={report}",
        "--download-cache",
        str(cache),
    ]


def report_rows(report: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]


class TestRun:
    """A Parquet list runs like any other list."""

    def test_every_caption_arrives(self, tmp_path: Path, server: FileServer) -> None:
        """100 rows in 4 row groups: every file fetched, every row's caption a field."""
        urls = [server.add(f"/img{n:03d}.jpg", f"image {n}".encode()) for n in range(100)]
        path = tmp_path / "files.parquet"
        pq.write_table(
            pa.table({"url": urls, "caption": [f"caption {n}" for n in range(100)]}),
            path,
            row_group_size=25,
        )
        report = tmp_path / "r.jsonl"
        done = run(job_args(str(path), report, tmp_path / "c"))
        assert done.returncode == 0, done.stderr
        assert "100 files: 100 succeeded, 0 failed" in done.stderr
        captions = {row["id"]: row["fields"]["caption"] for row in report_rows(report)}
        assert captions == {f"img{n:03d}": f"caption {n}" for n in range(100)}
        assert server.request_count() == 100

    def test_bad_rows_named_before_any_request(self, tmp_path: Path, server: FileServer) -> None:
        """Every bad row is named by its row number; exit 2 and no request."""
        urls: list[Any] = [server.add(f"/f{n}.bin", b"x") for n in range(10)]
        urls[2] = None
        urls[6] = "example.org/f6"
        path = tmp_path / "files.parquet"
        pq.write_table(pa.table({"url": urls}), path, row_group_size=4)
        done = run(job_args(str(path), tmp_path / "r.jsonl", tmp_path / "c"))
        assert done.returncode == 2, done.stderr
        assert f"  {path}: row 3: missing required field 'url'\n" in done.stderr
        assert f"  {path}: row 7: field 'url' has no scheme ('example.org/f6')" in done.stderr
        assert "Traceback" not in done.stderr
        assert server.request_count() == 0

    def test_standard_input(self, tmp_path: Path, server: FileServer) -> None:
        """`--files - --input-format parquet` reads a table piped in."""
        urls = [server.add(f"/s{n}.bin", b"s") for n in range(3)]
        source = tmp_path / "files.parquet"
        pq.write_table(pa.table({"url": urls, "caption": ["a", None, "c"]}), source)
        report = tmp_path / "r.jsonl"
        done = run(
            job_args("-", report, tmp_path / "c", "--input-format", "parquet"),
            stdin=source.read_bytes(),
        )
        assert done.returncode == 0, done.stderr
        fields = {row["id"]: row["fields"] for row in report_rows(report)}
        assert fields == {"s0": {"caption": "a"}, "s1": {}, "s2": {"caption": "c"}}


class TestListing:
    """The plugin is found through its installed entry point."""

    def test_plugins_lists_parquet(self) -> None:
        """`plugins --json` lists the parquet input format with its suffix and package."""
        done = run(["plugins", "--json"])
        assert done.returncode == 0, done.stderr
        (entry,) = [row for row in json.loads(done.stdout)["plugins"] if row["name"] == "parquet"]
        assert (entry["kind"], entry["distribution"], entry["suffixes"]) == (
            "input format",
            "dpp-parquet",
            [".parquet"],
        )
        text = run(["plugins"]).stdout
        assert "parquet (dpp-parquet" in text
