"""End to end: archives served on 127.0.0.1, run through the pipeline and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from importlib_metadata import entry_points

import dpp_archive.plugin
from download_pipeline_processor.errors import PluginOptionError
from download_pipeline_processor.testing import FileServer, make_plugin_manager, run_pipeline
from dpp_archive import ExtractProcessor


@pytest.fixture
def server() -> Any:
    """A loopback file server for the test."""
    with FileServer() as file_server:
        yield file_server


def run(files: list[dict[str, Any]], dest: Path, **options: Any) -> Any:
    """The pipeline with the extract processor into ``dest``."""
    return run_pipeline(
        files,
        processor="extract",
        processor_options={"dest": str(dest), **options},
        plugins=(dpp_archive.plugin,),
    )


class TestPlugin:
    """The plugin registers ``extract`` through the hook and the entry point."""

    def test_hook_registers_extract(self) -> None:
        """The plugin module's hook registers ExtractProcessor as ``extract``."""
        registered: dict[str, type] = {}
        make_plugin_manager(dpp_archive.plugin).hook.register_processors(
            register=registered.__setitem__
        )
        assert registered["extract"] is ExtractProcessor

    def test_entry_point_installed(self) -> None:
        """The installed distribution declares the ``archive`` entry point."""
        found = {
            point.name: point.value for point in entry_points(group="download_pipeline_processor")
        }
        assert found.get("archive") == "dpp_archive.plugin"


class TestPipeline:
    """Good archives are extracted, bad ones fail in the process stage, the run goes on."""

    def test_mixed_run(self, server: Any, archives: Any, tmp_path: Path) -> None:
        """Two good archives extract; a zip-slip, a bomb and a text file fail with reasons."""
        dest = tmp_path / "dest"
        files = [
            {
                "id": "z",
                "name": "good-zip",
                "url": server.add("/good.zip", archives.zip({"a.txt": b"A", "sub/b.txt": b"B"})),
            },
            {
                "id": "t",
                "name": "good-tar",
                "url": server.add("/good.tar.gz", archives.tar([("file", "c.txt", b"C")], "gz")),
            },
            {
                "id": "slip",
                "name": "slip",
                "url": server.add(
                    "/slip.zip", archives.zip({"ok.txt": b"ok", "../../evil.txt": b"x"})
                ),
            },
            {
                "id": "bomb",
                "name": "bomb",
                "url": server.add("/bomb.zip", archives.zip_of_zeros("zeros.bin", 20 << 20)),
            },
            {"id": "text", "name": "text", "url": server.add("/notes.txt", b"plain text")},
        ]
        outcome = run(files, dest, max_bytes=str(1 << 20))
        assert outcome.exit_code == 1
        results = {fd.id: result for result, fd in outcome.outcomes if not fd.has_error}
        assert results == {"z": ["a.txt", "sub/b.txt"], "t": ["c.txt"]}
        failures = {fd.id: (fd.error.stage, fd.error.message) for fd in outcome.failures}
        assert failures["slip"] == (
            "process",
            "UnsafeMemberError: refusing member '../../evil.txt':"
            " '..' in the path could escape the destination",
        )
        assert failures["bomb"][1].startswith("TooLargeError: member 'zeros.bin'")
        assert failures["text"] == (
            "process",
            "NotAnArchiveError: not a zip or tar archive (plain, gzip, bzip2 or xz)",
        )
        assert sorted(p.name for p in dest.iterdir()) == ["good-tar", "good-zip"]
        assert (dest / "good-zip" / "sub" / "b.txt").read_bytes() == b"B"
        assert not (tmp_path / "evil.txt").exists()

    def test_overwrite_option_from_strings(
        self, server: Any, archives: Any, tmp_path: Path
    ) -> None:
        """String options as the CLI passes them are converted; overwrite=yes replaces."""
        dest = tmp_path / "dest"
        first = [{"name": "pkg", "url": server.add("/v1.zip", archives.zip({"v1": b"1"}))}]
        second = [{"name": "pkg", "url": server.add("/v2.zip", archives.zip({"v2": b"2"}))}]
        assert run(first, dest).exit_code == 0
        assert run(second, dest).exit_code == 1
        assert run(second, dest, overwrite="yes").exit_code == 0
        assert [p.name for p in (dest / "pkg").iterdir()] == ["v2"]

    def test_missing_dest_is_a_usage_error(self, server: Any) -> None:
        """Without dest the run is refused before any download."""
        url = server.add("/a.zip", b"")
        with pytest.raises(PluginOptionError, match="dest"):
            run_pipeline([{"url": url}], processor="extract", plugins=(dpp_archive.plugin,))
        assert server.request_count() == 0


class TestCommandLine:
    """The installed console script finds the plugin through its entry point."""

    def test_cli_extracts(self, server: Any, archives: Any, tmp_path: Path) -> None:
        """A real process extracts a zip and a tar.xz and exits 0."""
        script = Path(sys.executable).with_name("download-pipeline-processor")
        assert script.exists(), f"pip install the project into {sys.prefix}"
        dest = tmp_path / "out"
        listing = tmp_path / "files.json"
        listing.write_text(
            json.dumps(
                [
                    {
                        "name": "docs",
                        "url": server.add(
                            "/docs.zip",
                            archives.zip({"index.html": b"<h1>hi</h1>", "img/logo.svg": b"<svg/>"}),
                        ),
                    },
                    {
                        "name": "src",
                        "url": server.add(
                            "/src.tar.xz",
                            archives.tar(
                                [("dir", "pkg"), ("file", "pkg/main.py", b"print(1)\n")], "xz"
                            ),
                        ),
                    },
                ]
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "archive"}
        proc = subprocess.run(
            [
                str(script),
                "--files",
                str(listing),
                "--processor",
                "extract",
                "--processor-option",
                f"dest={dest}",
                "--processor-option",
                "max_members=10",
                "--post-processor",
                "jsonl",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        results = {
            record["name"]: record["result"] for record in map(json.loads, proc.stdout.splitlines())
        }
        assert results == {"docs": ["img/logo.svg", "index.html"], "src": ["pkg", "pkg/main.py"]}
        assert (dest / "docs" / "img" / "logo.svg").read_bytes() == b"<svg/>"
        assert (dest / "src" / "pkg" / "main.py").read_bytes() == b"print(1)\n"
        assert sorted(p.name for p in dest.iterdir()) == ["docs", "src"]
