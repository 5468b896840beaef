"""The installed package: found through its entry point, selected on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from download_pipeline_processor.testing import FileServer, leftover_files


def cli() -> str:
    """The console script of this interpreter's environment."""
    return str(Path(sys.executable).with_name("download-pipeline-processor"))


class TestEntryPoint:
    """``pip install ./plugins/dpp-curl`` is all it takes to get ``--downloader curl``."""

    def test_listed(self) -> None:
        """``plugins --json`` lists the downloader curl from dpp-curl."""
        listing = subprocess.run(
            [cli(), "plugins", "--json"], capture_output=True, text=True, check=True
        )
        plugins = json.loads(listing.stdout)["plugins"]
        (entry,) = [p for p in plugins if p["name"] == "curl"]
        assert entry["kind"] == "downloader"
        assert entry["distribution"] == "dpp-curl"

    def test_cli_run(self, file_server: FileServer, tmp_path: Path) -> None:
        """A run with --downloader curl downloads every file, exits 0 and leaves no cache."""
        files = tmp_path / "files.json"
        entries = [{"url": file_server.add(f"/c{i}.bin", b"c" * (i * 1000))} for i in range(20)]
        files.write_text(json.dumps(entries))
        report = tmp_path / "report.jsonl"
        run = subprocess.run(
            [
                cli(),
                "--files",
                str(files),
                "--downloader",
                "curl",
                "--download-cache",
                str(tmp_path / "cache"),
                "--post-processor",
                "jsonl",
                "--post-processor-option",
                f"path={report}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        assert [line["status"] for line in lines] == ["succeeded"] * 20
        assert leftover_files(tmp_path / "cache") == []
