"""The executor seam: choosing an executor, and a third-party one run end to end.

The third-party executor is ``inline`` from the installed fixture package
``dpp-example-plugin`` (found through its real entry point): it runs the
stages in this process through :class:`~download_pipeline_processor.stage_runner.StageRunner`
batch by batch, using only the public API a distributed executor uses.
The misbehaving executors are in ``tests/plugin_modules/executor_plugins.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli_helpers import checksum_report_args, write_list
from download_pipeline_processor import __version__
from download_pipeline_processor._plugins import LOAD_PLUGINS_ENV, create_plugin_manager
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import PipelineInterrupted
from download_pipeline_processor.pipeline import ProcessingPipeline
from download_pipeline_processor.testing import (
    CollectingPostProcessor,
    FileServer,
    leftover_files,
)

PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"
INLINE_CLASS = "dpp_example_plugin.plugin:InlineExecutor"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The seam tests' plugin module, importable by name; only the example entry point loads."""
    monkeypatch.syspath_prepend(str(PLUGIN_MODULES))
    # The example plugin alone: the broken fixture plugin's warning and the
    # dask plugin's executor stay out of the lines these tests compare.
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "example")
    module = importlib.import_module("executor_plugins")
    module.RecordingExecutor.built = module.RecordingExecutor.opened = 0
    module.SlowProcessor.started.clear()
    module.SlowProcessor.release.clear()
    yield module
    # A slow processor still waiting must not outlive the test.
    module.SlowProcessor.release.set()


def invoke(args: list[str]) -> Result:
    """Run the CLI in process with the installed entry points the environment selects."""
    manager = create_plugin_manager()
    return CliRunner().invoke(main, args, obj={"plugin_manager": manager}, catch_exceptions=False)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def report_args(listing: Path, report: Path, cache: Path, *extra: str) -> list[str]:
    """A checksum run over ``listing`` writing a jsonl report, its own cache, no retry waits."""
    return checksum_report_args(listing, report, cache, "--retry-backoff", "0", *extra)


def read_report(report: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]


def serve_files(server: FileServer, count: int, prefix: str = "f") -> dict[str, str]:
    """Serve ``count`` distinct bodies; their entries' ids mapped to the bodies' sha256."""
    digests = {}
    for index in range(count):
        body = f"{prefix} body {index} ".encode() * (index % 7 + 1)
        server.add(f"/{prefix}{index}.bin", body)
        digests[f"{prefix}{index}"] = hashlib.sha256(body).hexdigest()
    return digests


def entries_for(server: FileServer, ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": entry_id, "url": server.url(f"/{entry_id}.bin")} for entry_id in ids]


def served_listing(server: FileServer, folder: Path, count: int) -> tuple[dict[str, str], Path]:
    """``count`` files served (:func:`serve_files`) and an input list of them in ``folder``."""
    digests = serve_files(server, count)
    return digests, write_list(folder / "l.json", entries_for(server, list(digests)))


class TestListing:
    """`plugins` lists executors, built-in and installed, with their options."""

    def test_text_listing_shows_executors_and_options(self, plugins: ModuleType) -> None:
        """`plugins` lists `local` and the installed `inline` as executors, with inline's option."""
        result = invoke(["plugins"])
        assert result.exit_code == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()]
        assert ["local", "executor", "download-pipeline-processor", __version__] in rows
        assert ["inline", "executor", "dpp-example-plugin", "1.2.3"] in rows
        assert (
            "    --executor-option batch_size=<int> (default 8): entries per batch"
            in result.stdout.splitlines()
        )

    def test_json_listing_shows_executors_and_options(self, plugins: ModuleType) -> None:
        """`plugins --json` gives each executor's kind, distribution and options."""
        result = invoke(["plugins", "--json"])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        executors = {p["name"]: p for p in data["plugins"] if p["kind"] == "executor"}
        assert set(executors) == {"local", "inline", "processes"}
        assert executors["local"]["distribution"] == "download-pipeline-processor"
        assert executors["local"]["options"] == []
        inline = executors["inline"]
        assert (inline["distribution"], inline["version"]) == ("dpp-example-plugin", "1.2.3")
        assert [(o["name"], o["type"], o["default"]) for o in inline["options"]] == [
            ("batch_size", "int", "8")
        ]
        module = next(m for m in data["modules"] if m["name"] == "example")
        assert "register_executors" in module["hooks"]


class TestSelection:
    """--executor and --executor-option mistakes are exit 2, one line, before any request."""

    def test_unknown_executor(self, plugins: ModuleType, tmp_path: Path) -> None:
        """An unknown name is one line listing the executors."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--executor", "nope"])
        assert result.exit_code == 2
        assert error_lines(result) == [
            "Error: unknown executor 'nope'; available: inline, local, processes"
        ]

    def test_misspelt_executor_suggests_the_close_one(
        self, plugins: ModuleType, tmp_path: Path
    ) -> None:
        """A name one letter off ('inlne') suggests the registered 'inline'."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--executor", "inlne"])
        assert result.exit_code == 2
        assert error_lines(result) == [
            "Error: unknown executor 'inlne' (did you mean 'inline'?); "
            "available: inline, local, processes"
        ]

    def test_local_takes_no_option(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """An --executor-option for `local` is one line saying it takes none; nothing is fetched."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/o", b"o")}])
        result = invoke(["--files", str(listing), "--executor-option", "x=1"])
        assert result.exit_code == 2
        assert error_lines(result) == [
            "Error: executor 'local': unknown option 'x'; accepted options: none"
        ]
        assert file_server.request_log == []

    def test_bad_option_value_for_inline(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """An option value of the wrong type is one line naming the executor; nothing is fetched."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/o", b"o")}])
        result = invoke(
            ["--files", str(listing), "--executor", "inline", "--executor-option", "batch_size=x"]
        )
        assert result.exit_code == 2
        (line,) = error_lines(result)
        assert "executor 'inline'" in line
        assert "batch_size" in line
        assert file_server.request_log == []

    def test_module_class_form(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """module:ClassName selects an executor class directly; a non-executor class is exit 2."""
        digests, listing = served_listing(file_server, tmp_path, 5)
        report = tmp_path / "out.jsonl"
        result = invoke(
            report_args(
                listing,
                report,
                tmp_path / "cache",
                "--executor",
                "executor_plugins:RecordingExecutor",
                "--executor-option",
                "batch_size=2",
            )
        )
        assert result.exit_code == 0, result.stderr
        assert {r["id"]: r["result"]["sha256"] for r in read_report(report)} == digests
        assert (plugins.RecordingExecutor.built, plugins.RecordingExecutor.opened) == (1, 1)
        bad = invoke(["--files", str(listing), "--executor", "json:JSONDecoder"])
        assert bad.exit_code == 2
        assert error_lines(bad) == [
            "Error: executor 'json:JSONDecoder' is not a subclass of BaseExecutor"
        ]

    def test_dry_run_prints_the_executor_and_builds_nothing(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """--dry-run prints the executor with its options, and neither builds nor opens it."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/d", b"d")}])
        spec = "executor_plugins:RecordingExecutor"
        result = invoke(
            [
                "--files",
                str(listing),
                "--dry-run",
                "--executor",
                spec,
                "--executor-option",
                "batch_size=5",
                "--download-cache",
                str(tmp_path / "cache"),
            ]
        )
        assert result.exit_code == 0, result.stderr
        assert f"  executor {spec!r} (batch_size=5)" in result.stdout.splitlines()
        assert (plugins.RecordingExecutor.built, plugins.RecordingExecutor.opened) == (0, 0)
        assert file_server.request_log == []
        assert not (tmp_path / "cache").exists()
        named = invoke(["--files", str(listing), "--dry-run", "--executor", "inline"])
        assert "  executor 'inline'" in named.stdout.splitlines()


class TestInlineRuns:
    """The installed `inline` executor runs whole runs as `local` does, over real HTTP."""

    def test_hundred_files_with_failures(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """100 files, a 404 and a processor's exception: each id once, right sha256, exit 1."""
        digests = serve_files(file_server, 100)
        file_server.add("/bad.bin", b"unreadable")
        entries = [
            *entries_for(file_server, list(digests)),
            {"id": "gone", "url": file_server.url("/gone.bin")},
            {"id": "bad", "url": file_server.url("/bad.bin")},
        ]
        listing = write_list(tmp_path / "l.json", entries)
        report, cache, summary = tmp_path / "out.jsonl", tmp_path / "cache", tmp_path / "s.json"
        args = report_args(listing, report, cache, "--executor", "inline")
        args += ["--executor-option", "batch_size=16", "--summary-json", str(summary)]
        args[args.index("checksum")] = "executor_plugins:ChecksumOrFail"
        result = invoke(args)
        assert result.exit_code == 1, result.stderr
        records = read_report(report)
        assert Counter(r["id"] for r in records) == Counter([*digests, "gone", "bad"])
        by_id = {r["id"]: r for r in records}
        assert {i: by_id[i]["result"]["sha256"] for i in digests} == digests
        assert all(by_id[i]["status"] == "succeeded" for i in digests)
        assert by_id["gone"]["status"] == "failed"
        assert by_id["gone"]["error"]["stage"] == "download"
        assert "404" in by_id["gone"]["error"]["message"]
        assert by_id["bad"]["status"] == "failed"
        assert by_id["bad"]["error"]["stage"] == "process"
        assert "cannot read bad" in by_id["bad"]["error"]["message"]
        totals = json.loads(summary.read_text())
        assert (totals["total"], totals["succeeded"], totals["failed"]) == (102, 100, 2)
        assert totals["failed_by_stage"] == {"download": 1, "process": 1}
        served = sum(len(f"f body {i} ".encode()) * (i % 7 + 1) for i in range(100))
        assert totals["bytes_downloaded"] == served + len(b"unreadable")
        assert leftover_files(cache) == []

    def test_all_good_is_exit_0(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A run where every file succeeds is exit 0, every file requested once."""
        digests, listing = served_listing(file_server, tmp_path, 20)
        report = tmp_path / "out.jsonl"
        result = invoke(report_args(listing, report, tmp_path / "cache", "--executor", "inline"))
        assert result.exit_code == 0, result.stderr
        assert {r["id"]: r["result"]["sha256"] for r in read_report(report)} == digests
        assert file_server.request_count() == 20

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ("local", "inline"),
            ("inline", "local"),
            ("processes", "local"),
            ("inline", "processes"),
        ],
    )
    def test_journal_rerun_across_executors(
        self,
        plugins: ModuleType,
        tmp_path: Path,
        file_server: FileServer,
        first: str,
        second: str,
    ) -> None:
        """A --journal rerun on the other executor fetches only what the first left unfinished."""
        digests = serve_files(file_server, 12)
        flaky = ["f3", "f7", "f8"]
        for entry_id in flaky:  # a 404 the first time, the file after
            body = f"f body {entry_id[1:]} ".encode() * (int(entry_id[1:]) % 7 + 1)
            file_server.add(f"/{entry_id}.bin", body, statuses=(404, 200))
        listing = write_list(tmp_path / "l.json", entries_for(file_server, list(digests)))
        journal = ["--journal", str(tmp_path / "journal.db")]
        report1, report2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
        cache = tmp_path / "cache"
        one = invoke(report_args(listing, report1, cache, "--executor", first, *journal))
        assert one.exit_code == 1, one.stderr
        failed = sorted(r["id"] for r in read_report(report1) if r["status"] == "failed")
        assert failed == flaky
        two = invoke(report_args(listing, report2, cache, "--executor", second, *journal))
        assert two.exit_code == 0, two.stderr
        records = read_report(report2)
        assert sorted(r["id"] for r in records) == flaky
        assert {r["id"]: r["result"]["sha256"] for r in records} == {
            entry_id: digests[entry_id] for entry_id in flaky
        }
        for entry_id in digests:
            expected = 2 if entry_id in flaky else 1
            assert file_server.request_count(f"/{entry_id}.bin") == expected, entry_id

    def test_stop_reports_each_file_once(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A stop while `inline` works: exit 130, each file taken reported once, interrupted."""
        digests = serve_files(file_server, 12)
        pipeline = ProcessingPipeline(
            "executor_plugins:SlowProcessor",
            [collector := CollectingPostProcessor()],
            executor="inline",
            executor_options={"batch_size": 4},
            plugin_manager=create_plugin_manager(),
            download_cache=tmp_path / "cache",
            processing_limit=1,
            stop_grace=0.2,
            retry_backoff=0,
        )
        stopper = threading.Thread(
            target=lambda: plugins.SlowProcessor.started.wait(20) and pipeline.stop(), daemon=True
        )
        stopper.start()
        code = pipeline.run(entries_for(file_server, list(digests)))
        assert code == 130
        ids = [file_data.id for _, file_data in collector.outcomes]
        assert len(ids) == len(set(ids)) == 4  # the first batch; nothing taken after the stop
        for _, file_data in collector.outcomes:
            assert file_data.error is not None
            assert isinstance(file_data.error.error, PipelineInterrupted)
        assert pipeline.summary.not_started == 8
        assert leftover_files(tmp_path / "cache") == []


class TestMisbehavingExecutors:
    """Whatever an executor does wrong, the run reports each file once and ends cleanly."""

    def test_open_usage_error_is_exit_2_before_anything(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """An executor whose open() raises a UsageError: exit 2, one line, no request, no report."""
        _, listing = served_listing(file_server, tmp_path, 3)
        report = tmp_path / "out.jsonl"
        result = invoke(
            report_args(
                listing,
                report,
                tmp_path / "cache",
                "--executor",
                "executor_plugins:RefusingExecutor",
            )
        )
        assert result.exit_code == 2
        assert error_lines(result) == [
            "Error: executor 'refusing': no scheduler at tcp://127.0.0.1:9"
        ]
        assert file_server.request_log == []
        assert not report.exists()

    def test_executor_error_reports_the_rest_as_interrupted(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """ExecutorError mid-run: exit 1, entries out reported interrupted, the rest not started."""
        digests, listing = served_listing(file_server, tmp_path, 10)
        report, summary = tmp_path / "out.jsonl", tmp_path / "s.json"
        args = report_args(listing, report, tmp_path / "cache", "--summary-json", str(summary))
        result = invoke([*args, "--executor", "executor_plugins:GivingUpExecutor"])
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        assert "the workers are gone" in result.stderr
        by_id = {r["id"]: r for r in read_report(report)}
        assert len(by_id) == len(read_report(report)) == 5
        assert {i: by_id[i]["result"]["sha256"] for i in ("f0", "f1", "f2")} == {
            i: digests[i] for i in ("f0", "f1", "f2")
        }
        for entry_id in ("f3", "f4"):
            assert by_id[entry_id]["status"] == "interrupted"
            assert "run stopped before this file finished" in by_id[entry_id]["error"]["message"]
        totals = json.loads(summary.read_text())
        assert (totals["succeeded"], totals["failed"], totals["not_started"]) == (3, 0, 5)
        assert (totals["interrupted"], totals["failures"]) == (2, [])

    def test_second_hand_off_is_dropped(
        self, plugins: ModuleType, tmp_path: Path, file_server: FileServer
    ) -> None:
        """An executor handing each entry back twice: the post-processor sees each once."""
        digests, listing = served_listing(file_server, tmp_path, 8)
        report, summary = tmp_path / "out.jsonl", tmp_path / "s.json"
        args = report_args(listing, report, tmp_path / "cache", "--summary-json", str(summary))
        result = invoke([*args, "--executor", "executor_plugins:TwiceExecutor"])
        assert result.exit_code == 0, result.stderr
        records = read_report(report)
        assert sorted(r["id"] for r in records) == sorted(digests)
        assert {r["id"]: r["result"]["sha256"] for r in records} == digests
        assert json.loads(summary.read_text())["total"] == 8
