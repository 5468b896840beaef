"""The plugin author's guide stays true: its hooks match hookspecs and its example works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from download_pipeline_processor import hookspecs
from download_pipeline_processor._plugins import create_plugin_manager
from download_pipeline_processor.testing import FileServer

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
HOOK_HEADING = re.compile(r"^### (\w+)\(([^)]*)\)$", re.MULTILINE)
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)


def documented_hooks() -> dict[str, list[str]]:
    hooks_section = GUIDE.read_text(encoding="utf-8").split("## Hooks", 1)[1].split("\n## ", 1)[0]
    return {
        name: [arg.strip() for arg in args.split(",") if arg.strip()]
        for name, args in HOOK_HEADING.findall(hooks_section)
    }


class TestHookDocs:
    """Every hook is documented under a heading naming its arguments."""

    def test_headings_match_hookspecs(self) -> None:
        """The guide's `### name(args)` headings list exactly the specs and their arguments."""
        manager = create_plugin_manager(load_entrypoints=False)
        specs = {
            name: list(getattr(manager.hook, name).spec.argnames)
            for name in dir(hookspecs)
            if getattr(getattr(hookspecs, name), "download_pipeline_processor_spec", None)
            is not None
        }
        assert specs, "no hookspecs found"
        assert documented_hooks() == specs


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The guide's example package written out and pip-installed into a private folder."""
    root = tmp_path_factory.mktemp("guide")
    blocks = FILE_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    for relative, content in blocks:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    site = root / "site"
    # --target keeps the example out of the test environment; --no-build-isolation
    # builds with this environment's setuptools instead of fetching one.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(root / "dpp-wordcount"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return root, site


def _env(site: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "wordcount",
    }


class TestGuideExample:
    """The guide's example package, installed as a user would, works as written."""

    def test_listed_with_version_and_options(
        self, installed_example: tuple[Path, Path], cli_path: Path
    ) -> None:
        """`plugins --json` shows wordcount from dpp-wordcount 0.1.0 with its options."""
        _, site = installed_example
        proc = subprocess.run(
            [str(cli_path), "plugins", "--json"],
            capture_output=True,
            text=True,
            env=_env(site),
            timeout=60,
            check=True,
        )
        entry = next(p for p in json.loads(proc.stdout)["plugins"] if p["name"] == "wordcount")
        assert (entry["distribution"], entry["version"]) == ("dpp-wordcount", "0.1.0")
        assert [option["name"] for option in entry["options"]] == ["min_length", "encoding"]

    def test_runs_through_cli(
        self,
        installed_example: tuple[Path, Path],
        cli_path: Path,
        tmp_path: Path,
        file_server: FileServer,
    ) -> None:
        """The documented command counts words of files served from 127.0.0.1."""
        _, site = installed_example
        listing = tmp_path / "files.json"
        listing.write_text(
            json.dumps(
                [
                    {"id": "a", "url": file_server.add("/a.txt", b"the quick brown fox jumps")},
                    {"id": "b", "url": file_server.add("/b.txt", b"a b c")},
                ]
            )
        )
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "wordcount",
                "--processor-option",
                "min_length=4",
                "--post-processor",
                "jsonl",
            ],
            capture_output=True,
            text=True,
            env=_env(site),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        records = map(json.loads, proc.stdout.splitlines())
        counts = {r["id"]: r["result"]["words"] for r in records}
        assert counts == {"a": 3, "b": 0}
        bad = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--processor",
                "wordcount",
                "--processor-option",
                "min_length=many",
            ],
            capture_output=True,
            text=True,
            env=_env(site),
            timeout=60,
            check=False,
        )
        assert bad.returncode == 2
        assert "min_length" in bad.stderr

    def test_guide_tests_pass(self, installed_example: tuple[Path, Path]) -> None:
        """The test file shown in the guide passes against the installed example."""
        root, site = installed_example
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(root / "dpp-wordcount" / "tests"),
            ],
            capture_output=True,
            text=True,
            env=_env(site),
            timeout=120,
            check=False,
            cwd=root,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 passed" in proc.stdout

    def test_guide_tests_pass_uninstalled_with_plain_pytest(
        self, installed_example: tuple[Path, Path]
    ) -> None:
        """Plain `pytest` in the example's folder passes with the package not installed."""
        root, _ = installed_example
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTEST_ADDOPTS")
        }
        # The `pytest` script, not `python -m pytest`: -m puts the folder on
        # sys.path by itself and would hide a missing pythonpath setting.
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("pytest")), "-q", "-p", "no:cacheprovider"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
            cwd=root / "dpp-wordcount",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 passed" in proc.stdout


@pytest.fixture
def downloader_example(tmp_path: Path) -> Path:
    """The guide's minimal downloader and its test, written out into a folder of their own."""
    blocks = dict(EXAMPLE_BLOCK.findall(GUIDE.read_text(encoding="utf-8")))
    assert set(blocks) >= {"minimal_downloader.py", "test_minimal_downloader.py"}
    folder = tmp_path / "example"
    folder.mkdir()
    for name, content in blocks.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


def _example_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return {**env, "PYTHONPATH": str(folder), "PYTHONWARNINGS": "error::DeprecationWarning"}


class TestDownloaderExample:
    """The guide's minimal downloader works as written, on the request seam."""

    def test_guide_test_passes(self, downloader_example: Path) -> None:
        """The test the guide shows for its downloader passes against the guide's downloader."""
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
            capture_output=True,
            text=True,
            env=_example_env(downloader_example),
            timeout=120,
            check=False,
            cwd=downloader_example,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout

    def test_runs_through_cli(
        self, downloader_example: Path, cli_path: Path, file_server: FileServer
    ) -> None:
        """`--downloader module:Class` runs the guide's downloader through the CLI on 127.0.0.1."""
        body = b"served to the guide's downloader"
        listing = downloader_example / "files.jsonl"
        entries = [
            {"id": "a", "url": file_server.add("/a.bin", body), "size": len(body)},
            {"id": "b", "url": file_server.add("/b.bin", body), "size": len(body) + 1},
        ]
        listing.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--downloader",
                "minimal_downloader:MinimalDownloader",
                "--processor",
                "checksum",
                "--post-processor",
                "jsonl",
                "--max-retries",
                "0",
            ],
            capture_output=True,
            text=True,
            env=_example_env(downloader_example),
            timeout=60,
            check=False,
            cwd=downloader_example,
        )
        assert proc.returncode == 1, proc.stderr
        records = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
        assert records["a"]["result"]["size"] == len(body)
        assert "size mismatch" in json.dumps(records["b"])
        assert "DeprecationWarning" not in proc.stderr


#: A test named in a doc: ``tests/test_x.py::TestClass::test_name``.
TEST_REFERENCE = re.compile(r"`((?:tests|plugins/[\w-]+/tests)/[\w/]+\.py)::(\w+)::(\w+)")
REFERENCING_DOCS = ["security.md", "reliability.md", "journal.md"]


class TestNamedTests:
    """The docs that name the test behind each guarantee name tests that exist."""

    @pytest.mark.parametrize("doc", REFERENCING_DOCS)
    def test_every_named_test_exists(self, doc: str) -> None:
        """Each `path::Class::test` in the doc is a test method of that class in that file."""
        path = GUIDE.parent / doc
        assert path.exists(), f"docs/{doc} is missing"
        references = TEST_REFERENCE.findall(path.read_text(encoding="utf-8"))
        if doc in ("security.md", "reliability.md"):
            assert len(references) >= 20
        missing = []
        for relative, class_name, test_name in references:
            source = (GUIDE.parents[1] / relative).read_text(encoding="utf-8")
            body = re.split(rf"^class {class_name}\b", source, flags=re.MULTILINE)
            if len(body) < 2 or not re.search(
                rf"^    def {test_name}\(", body[1].split("\nclass ", 1)[0], re.MULTILINE
            ):
                missing.append(f"{relative}::{class_name}::{test_name}")
        assert missing == []
