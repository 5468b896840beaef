"""What ``--dry-run`` shows: the limits, and how many entries the journal would skip, read-only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from download_pipeline_processor.testing import FileServer


def _cli_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = ""
    return env


def _run(cli_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cli_path), *args],
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=60,
        check=False,
    )


def _folder(path: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``path``: its digest and modification time, to tell any write."""
    return {
        item.name: (hashlib.sha256(item.read_bytes()).hexdigest(), item.stat().st_mtime_ns)
        for item in sorted(path.iterdir())
    }


class TestDryRun:
    """The limits a run would keep and what its journal would let it skip, nothing written."""

    def test_limits_and_journal_skips_without_writing(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """After a run of 2 good files and a 404, a dry run counts 2 skips (3 with
        --skip-failed), names every limit, and leaves the journal's folder byte for byte."""
        work = tmp_path / "work"
        work.mkdir()
        files = [
            {"id": "a", "url": file_server.add("/a", b"a")},
            {"id": "b", "url": file_server.add("/b", b"b")},
            {"id": "gone", "url": file_server.url("/gone")},
            {"id": "new", "url": file_server.add("/new", b"n")},
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(files[:3]), encoding="utf-8")
        journal = work / "job.db"
        first = _run(
            cli_path,
            "--files",
            str(listing),
            "--journal",
            str(journal),
            "--max-retries",
            "0",
            "--download-cache",
            str(tmp_path / "cache"),
        )
        assert first.returncode == 1, first.stderr
        listing.write_text(json.dumps(files), encoding="utf-8")
        before = _folder(work)
        requests = len(file_server.requests)
        limits = [
            "--cache-size",
            "2G",
            "--max-file-size",
            "100M",
            "--limit-rate",
            "512K",
            "--file-timeout",
            "90",
            "--max-per-host",
            "4",
            "--max-retries",
            "5",
        ]
        dry = _run(
            cli_path, "--files", str(listing), "--journal", str(journal), "--dry-run", *limits
        )
        assert dry.returncode == 0, dry.stderr
        assert "  limits: --cache-size 2G, --max-file-size 100M, --limit-rate 512K/s" in dry.stdout
        assert (
            "--timeout 30.0 s, --file-timeout 1 min 30 s, --max-per-host 4, --max-retries 5"
            in dry.stdout
        )
        assert f"  journal: {journal} (would skip 2 of 4 entries)" in dry.stdout
        again = _run(
            cli_path,
            "--files",
            str(listing),
            "--journal",
            str(journal),
            "--skip-failed",
            "--dry-run",
        )
        assert again.returncode == 0, again.stderr
        assert "(would skip 3 of 4 entries)" in again.stdout
        assert "--cache-size unlimited, --max-file-size unlimited, --limit-rate unlimited" in (
            again.stdout
        )
        assert _folder(work) == before
        assert len(file_server.requests) == requests

    def test_journal_not_made_yet(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A journal that does not exist yet: nothing to skip, and it is not made."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps([file_server.url("/a")]), encoding="utf-8")
        journal = tmp_path / "job.db"
        dry = _run(cli_path, "--files", str(listing), "--journal", str(journal), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"  journal: {journal} (new: nothing to skip)" in dry.stdout
        assert sorted(path.name for path in tmp_path.iterdir()) == ["files.json"]

    def test_not_a_journal_is_exit_2(self, tmp_path: Path, cli_path: Path) -> None:
        """A file that is not a journal: one line naming it, exit 2, as the run would say."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(["http://127.0.0.1:9/a"]), encoding="utf-8")
        journal = tmp_path / "job.db"
        journal.write_bytes(b"not sqlite at all " * 100)
        dry = _run(cli_path, "--files", str(listing), "--journal", str(journal), "--dry-run")
        assert dry.returncode == 2
        assert "Traceback" not in dry.stderr
        assert str(journal) in dry.stderr
