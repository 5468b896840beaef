"""Discovery through real entry points of pip-installed packages.

Needs the fixture packages under ``tests/plugins/`` installed (``.ci/run`` and the
README's test command do it): ``dpp-example-plugin`` 1.2.3 and the
``dpp-broken-plugin`` 0.0.1 that fails on import.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import importlib_metadata
import pytest

from download_pipeline_processor._plugins import create_plugin_manager
from download_pipeline_processor._registry import POST_PROCESSOR, PROCESSOR, PluginRegistry
from download_pipeline_processor.testing import FileServer


@pytest.fixture(autouse=True)
def _fixture_packages_installed() -> None:
    for dist in ("dpp-example-plugin", "dpp-broken-plugin"):
        try:
            importlib_metadata.distribution(dist)
        except importlib_metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed: pip install ./tests/plugins/{dist}")


def run_cli(cli_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [str(cli_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


class TestDiscovery:
    """Installed plugins are found, attributed and isolated from each other's failures."""

    def test_manager_loads_installed_plugin(self) -> None:
        """create_plugin_manager() finds the example plugin and records the broken one."""
        manager = create_plugin_manager()
        registry = PluginRegistry(manager)
        upper = registry.registrations(PROCESSOR)["example-upper"][0]
        assert upper.source.distribution == "dpp-example-plugin"
        assert upper.source.version == "1.2.3"
        assert "example-count" in registry.names(POST_PROCESSOR)
        (failure,) = [f for f in manager.load_failures if f.name == "broken"]
        assert failure.distribution == "dpp-broken-plugin"
        assert isinstance(failure.error, ImportError)

    def test_load_plugins_env_limits_loading(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS=example loads only that entry point."""
        monkeypatch.setenv("DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS", "example")
        manager = create_plugin_manager()
        assert manager.load_failures == []
        assert "example-upper" in PluginRegistry(manager).names(PROCESSOR)
        monkeypatch.setenv("DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS", "")
        assert "example-upper" not in PluginRegistry(create_plugin_manager()).names(PROCESSOR)

    def test_listing_shows_versions_and_failure(self, cli_path: Path) -> None:
        """plugins --json shows the installed plugin with its version and the broken one."""
        proc = run_cli(cli_path, "plugins", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        upper = next(p for p in data["plugins"] if p["name"] == "example-upper")
        assert (upper["kind"], upper["distribution"], upper["version"]) == (
            "processor",
            "dpp-example-plugin",
            "1.2.3",
        )
        assert upper["options"][0]["name"] == "prefix"
        module = next(m for m in data["modules"] if m["name"] == "example")
        assert "file_finished" in module["hooks"]
        (broken,) = data["failed"]
        assert broken["distribution"] == "dpp-broken-plugin"
        text = run_cli(cli_path, "plugins").stdout
        assert "example-upper" in text
        assert "dpp-example-plugin" in text
        assert "1.2.3" in text


class TestRunsWithInstalledPlugins:
    """The CLI selects installed plugins by name while a broken one sits beside them."""

    def test_broken_plugin_does_not_stop_a_run(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A run using the example plugin succeeds and warns about the broken one in one line."""
        listing = tmp_path / "files.json"
        entries = [
            {"id": f"f{i}", "url": file_server.add(f"/f{i}.txt", b"hello")} for i in range(3)
        ]
        listing.write_text(json.dumps(entries))
        marker = tmp_path / "observed.txt"
        proc = run_cli(
            cli_path,
            "--files",
            str(listing),
            "--processor",
            "example-upper",
            "--processor-option",
            "prefix=>",
            "--post-processor",
            "jsonl",
            "--post-processor",
            "example-count",
            env={"DPP_EXAMPLE_MARKER": str(marker)},
        )
        assert proc.returncode == 0, proc.stderr
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert [r["result"] for r in results] == [">HELLO"] * 3
        assert "example-count: 3" in proc.stdout
        warnings = [line for line in proc.stderr.splitlines() if "broken" in line]
        assert len(warnings) == 1
        assert "dpp-broken-plugin" in warnings[0]
        assert "failed to load" in warnings[0]
        assert sorted(marker.read_text().split()) == ["f0", "f1", "f2"]

    def test_selecting_broken_plugin_is_usage_error(self, tmp_path: Path, cli_path: Path) -> None:
        """Selecting the broken plugin by its entry-point name is exit 2 saying why."""
        listing = tmp_path / "files.json"
        listing.write_text('[{"url": "http://127.0.0.1:9/x"}]')
        proc = run_cli(cli_path, "--files", str(listing), "--processor", "broken")
        assert proc.returncode == 2
        last = proc.stderr.strip().splitlines()[-1]
        assert "failed to load" in last
        assert "dpp_dependency_that_is_not_installed" in last
        assert "Traceback" not in proc.stderr

    def test_debug_shows_traceback_of_broken_plugin(self, tmp_path: Path, cli_path: Path) -> None:
        """--debug adds the broken plugin's traceback to its warning."""
        listing = tmp_path / "files.json"
        listing.write_text("[]")
        proc = run_cli(cli_path, "--files", str(listing), "--debug")
        assert proc.returncode == 0
        assert "Traceback" in proc.stderr
