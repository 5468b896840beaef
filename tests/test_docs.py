"""The plugin author's guide stays true: its hooks match hookspecs and its example works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    return _install_guide_package(tmp_path_factory.mktemp("guide"), "dpp-wordcount")


@pytest.fixture(scope="module")
def installed_batch_example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The guide's batch-processor package written out and pip-installed into a private folder."""
    return _install_guide_package(tmp_path_factory.mktemp("guide-batch"), "dpp-batchscore")


def _install_guide_package(root: Path, package: str) -> tuple[Path, Path]:
    """Every file block of the guide written under ``root``; ``package`` pip-installed."""
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
            str(root / package),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return root, site


def _env(site: Path, plugin: str = "wordcount") -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": plugin,
    }


def _run(
    args: list[str], env: dict[str, str], *, timeout: int = 60, check: bool = False, **run: Any
) -> subprocess.CompletedProcess[str]:
    """``args`` as a subprocess in ``env``, its output captured as text."""
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, check=check, **run
    )


def _pytest_passes(env: dict[str, str], cwd: Path, *args: str) -> str:
    """``python -m pytest`` run in ``cwd`` passes; its output."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    proc = _run(command, env, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _cli_over(
    cli_path: Path, listing: Path, options: str, env: dict[str, str], **run: Any
) -> subprocess.CompletedProcess[str]:
    """The CLI over the entries in ``listing``, with ``options`` (split on spaces) after them."""
    return _run([str(cli_path), "--files", str(listing), *options.split()], env, **run)


def _listed_plugin(cli_path: Path, env: dict[str, str], name: str) -> dict[str, Any]:
    """The entry ``plugins --json`` gives for the plugin ``name``."""
    proc = _run([str(cli_path), "plugins", "--json"], env, check=True)
    return next(p for p in json.loads(proc.stdout)["plugins"] if p["name"] == name)


def _records(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The jsonl post-processor's records on stdout, by id."""
    return {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}


class TestGuideExample:
    """The guide's example package, installed as a user would, works as written."""

    def test_listed_with_version_and_options(
        self, installed_example: tuple[Path, Path], cli_path: Path
    ) -> None:
        """`plugins --json` shows wordcount from dpp-wordcount 0.1.0 with its options."""
        _, site = installed_example
        entry = _listed_plugin(cli_path, _env(site), "wordcount")
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
        wordcount = "--processor wordcount --processor-option"
        options = f"{wordcount} min_length=4 --post-processor jsonl"
        proc = _cli_over(cli_path, listing, options, _env(site))
        assert proc.returncode == 0, proc.stderr
        counts = {id_: r["result"]["words"] for id_, r in _records(proc).items()}
        assert counts == {"a": 3, "b": 0}
        bad = _cli_over(cli_path, listing, f"{wordcount} min_length=many", _env(site))
        assert bad.returncode == 2
        assert "min_length" in bad.stderr

    def test_guide_tests_pass(self, installed_example: tuple[Path, Path]) -> None:
        """The test file shown in the guide passes against the installed example."""
        root, site = installed_example
        output = _pytest_passes(_env(site), root, str(root / "dpp-wordcount" / "tests"))
        assert "3 passed" in output

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
        proc = _run(
            [str(Path(sys.executable).with_name("pytest")), "-q", "-p", "no:cacheprovider"],
            env,
            timeout=120,
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
        output = _pytest_passes(_example_env(downloader_example), downloader_example, "-W", "error")
        assert "1 passed" in output

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
        options = "--downloader minimal_downloader:MinimalDownloader --processor checksum"
        options += " --post-processor jsonl --max-retries 0"
        env = _example_env(downloader_example)
        proc = _cli_over(cli_path, listing, options, env, cwd=downloader_example)
        assert proc.returncode == 1, proc.stderr
        records = _records(proc)
        assert records["a"]["result"]["size"] == len(body)
        assert "size mismatch" in json.dumps(records["b"])
        assert "DeprecationWarning" not in proc.stderr


class TestGuideBatchExample:
    """The guide's batch processor (process_batch), installed as a user would, works as written."""

    def test_runs_through_cli_in_batches(
        self,
        installed_batch_example: tuple[Path, Path],
        cli_path: Path,
        tmp_path: Path,
        file_server: FileServer,
    ) -> None:
        """The documented processor scores files in batches of 4; a binary file fails alone."""
        _, site = installed_batch_example
        entries = [
            {"id": f"t{i}", "url": file_server.add(f"/t{i}.txt", b"x y x " * (i + 1))}
            for i in range(7)
        ]
        entries.append({"id": "binary", "url": file_server.add("/b.bin", b"\xff\xfe")})
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        options = "--processor batchscore --processing-batch-size 4 --processing-batch-wait 5"
        options += " --download-workers 1 --processing-limit 1 --post-processor jsonl"
        proc = _cli_over(cli_path, listing, options, _env(site, "batchscore"), timeout=120)
        assert proc.returncode == 1, proc.stderr
        records = _records(proc)
        assert set(records) == {entry["id"] for entry in entries}
        assert records["binary"]["error"]["stage"] == "process"
        assert "UnicodeDecodeError" in records["binary"]["error"]["message"]
        batches = [records[f"t{i}"]["result"]["batch"] for i in range(7)]
        assert batches == [4] * 7
        assert records["t0"]["result"]["score"] == round(2 / 3, 3)

    def test_listed_as_taking_batches(
        self, installed_batch_example: tuple[Path, Path], cli_path: Path
    ) -> None:
        """`plugins` says batchscore takes batches."""
        _, site = installed_batch_example
        entry = _listed_plugin(cli_path, _env(site, "batchscore"), "batchscore")
        assert entry["batches"] is True

    def test_guide_batch_test_passes(self, installed_batch_example: tuple[Path, Path]) -> None:
        """The batch processor's test shown in the guide passes against the installed example."""
        root, site = installed_batch_example
        output = _pytest_passes(
            _env(site, "batchscore"), root, str(root / "dpp-batchscore" / "tests")
        )
        assert "1 passed" in output


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
