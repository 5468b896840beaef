"""The first-party plugin packages in plugins/, pip-installed, working together through the CLI."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import tarfile
import zipfile
from pathlib import Path

import importlib_metadata
import pytest

from download_pipeline_processor.testing import FileServer, leftover_files


@pytest.fixture(autouse=True)
def _packages_installed() -> None:
    for dist in ("dpp-sqlite", "dpp-archive"):
        try:
            importlib_metadata.distribution(dist)
        except importlib_metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed: pip install ./plugins/{dist}")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class TestExtractIntoSqlite:
    """--processor extract with --post-processor sqlite, both selected by name."""

    def test_archives_extracted_and_recorded(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Good archives are unpacked and recorded ok; a zip-slip one fails in 'process'."""
        entries = [
            {
                "id": "z",
                "name": "photos",
                "url": file_server.add(
                    "/photos.zip", _zip({"a.txt": b"alpha", "dir/b.txt": b"beta"})
                ),
            },
            {
                "id": "t",
                "name": "docs",
                "url": file_server.add("/docs.tar.gz", _tar_gz({"readme.md": b"# docs"})),
            },
            {
                "id": "evil",
                "name": "evil",
                "url": file_server.add("/evil.zip", _zip({"../escaped.txt": b"gotcha"})),
            },
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        dest, db, cache = tmp_path / "out", tmp_path / "runs.db", tmp_path / "cache"
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "extract",
                "--processor-option",
                f"dest={dest}",
                "--post-processor",
                "sqlite",
                "--post-processor-option",
                f"db={db}",
                "--download-cache",
                str(cache),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "archive,sqlite"},
        )
        assert proc.returncode == 1, proc.stderr
        assert (dest / "photos" / "dir" / "b.txt").read_bytes() == b"beta"
        assert (dest / "docs" / "readme.md").read_bytes() == b"# docs"
        assert not (tmp_path / "escaped.txt").exists()
        assert not (dest / "escaped.txt").exists()
        with sqlite3.connect(db) as connection:
            rows = dict(connection.execute("SELECT id, status FROM files").fetchall())
            stage = connection.execute(
                "SELECT error_stage FROM files WHERE id = 'evil'"
            ).fetchone()[0]
            totals = connection.execute(
                "SELECT total, succeeded, failed FROM files_runs"
            ).fetchone()
        assert rows == {"z": "succeeded", "t": "succeeded", "evil": "failed"}
        assert stage == "process"
        assert totals == (3, 2, 1)
        assert leftover_files(cache) == []


class TestListing:
    """The plugin listing shows both first-party packages with versions and options."""

    def test_listing(self, cli_path: Path) -> None:
        """plugins --json names extract and sqlite with their distributions and options."""
        proc = subprocess.run(
            [str(cli_path), "plugins", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
        extract, sqlite = plugins["extract"], plugins["sqlite"]
        assert extract["distribution"] == "dpp-archive"
        assert sqlite["distribution"] == "dpp-sqlite"
        for entry in (extract, sqlite):
            assert entry["version"] == importlib_metadata.version(entry["distribution"])
        assert {"dest", "max_bytes", "max_members"} <= {o["name"] for o in extract["options"]}
        assert {"db", "table"} <= {o["name"] for o in sqlite["options"]}
        assert all(option["help"] for option in extract["options"] + sqlite["options"])
