"""The run plan: classes, plugin options and input resolved once, before any download."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from download_pipeline_processor import (
    BasePostProcessor,
    BaseProcessor,
    FileData,
    Option,
    ProcessingPipeline,
    hookimpl,
)
from download_pipeline_processor._plan import plan_run
from download_pipeline_processor._registry import PluginRegistry
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import InputError, PluginOptionError
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import FileServer, make_plugin_manager

#: How often each plugin's option values were converted, by plugin.
conversions: Counter[str] = Counter()


def counted(plugin: str) -> Any:
    """An option type that counts its conversions: one per resolve_options of that plugin."""

    def convert(text: str) -> int:
        conversions[plugin] += 1
        return int(text)

    return convert


class LevelProcessor(BaseProcessor):
    """Returns its ``level`` option for every file."""

    options = (Option("level", type=counted("processor"), required=True),)

    def __init__(self, level: int) -> None:
        self.level = level

    def process(self, file_data: FileData) -> Any:
        return self.level


class LevelPostProcessor(BasePostProcessor):
    """Keeps every result next to its ``level`` option."""

    options = (Option("level", type=counted("post-processor"), required=True),)
    seen: ClassVar[list[tuple[int, Any]]] = []

    def __init__(self, level: int) -> None:
        self.level = level

    def post_process(self, result: Any, file_data: FileData) -> None:
        LevelPostProcessor.seen.append((self.level, result))


class LevelPlugin:
    """Registers the counting plugins under names the CLI can select."""

    @hookimpl
    def register_processors(self, register: Any) -> None:
        register("level", LevelProcessor)

    @hookimpl
    def register_post_processors(self, register: Any) -> None:
        register("levelreport", LevelPostProcessor)


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    conversions.clear()
    LevelPostProcessor.seen.clear()


def served_list(tmp_path: Path, file_server: FileServer, count: int = 4) -> Path:
    entries = [{"url": file_server.add(f"/p{i}", b"x" * i)} for i in range(count)]
    listing = tmp_path / "l.json"
    listing.write_text(json.dumps(entries), encoding="utf-8")
    return listing


class TestResolvedOnce:
    """Each plugin's options are checked and converted once per run, not per instance."""

    def test_library_run_resolves_each_plugin_once(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """Three processor instances and a post-processor cost one conversion each."""
        pipeline = ProcessingPipeline(
            "level",
            "levelreport",
            processor_options={"level": "5"},
            post_processor_options={"level": "6"},
            plugin_manager=make_plugin_manager(LevelPlugin()),
            processing_limit=3,
            download_cache=tmp_path / "cache",
        )
        assert pipeline.run(served_list(tmp_path, file_server)) == 0
        assert conversions == Counter({"processor": 1, "post-processor": 1})
        assert LevelPostProcessor.seen == [(6, 5)] * 4

    def test_cli_run_resolves_each_plugin_once(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """The command line resolves names and options once: one conversion per plugin."""
        args = [
            "--files",
            str(served_list(tmp_path, file_server)),
            "--processor",
            "level",
            "--processor-option",
            "level=2",
            "--post-processor",
            "levelreport",
            "--post-processor-option",
            "levelreport.level=3",
            "--processing-limit",
            "3",
            "--download-cache",
            str(tmp_path / "cache"),
        ]
        obj = {"plugin_manager": make_plugin_manager(LevelPlugin())}
        result = CliRunner().invoke(main, args, obj=obj, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert conversions == Counter({"processor": 1, "post-processor": 1})
        assert LevelPostProcessor.seen == [(3, 2)] * 4


class TestPlanRun:
    """plan_run makes every choice of a run in one step."""

    def test_plan_holds_classes_converted_options_and_input(self, tmp_path: Path) -> None:
        """The plan names the classes, their converted options, the downloader and the input."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]), encoding="utf-8")
        plan = plan_run(
            "level",
            ["levelreport", "jsonl"],
            registry=PluginRegistry(make_plugin_manager(LevelPlugin())),
            settings=PipelineSettings(simulate_downloads=True),
            processor_options={"level": "4"},
            routed_post_processor_options={"level": "8", "jsonl.path": str(tmp_path / "r")},
            files=listing,
        )
        assert (plan.processor.cls, dict(plan.processor.options)) == (LevelProcessor, {"level": 4})
        assert [(c.cls.__name__, dict(c.options)) for c in plan.post_processors] == [
            ("LevelPostProcessor", {"level": 8}),
            ("JsonlPostProcessor", {"path": str(tmp_path / "r")}),
        ]
        assert plan.downloader_class.__name__ == "SimulatedDownloader"
        assert plan.entries is not None
        assert plan.entries.count == 1

    def test_input_is_checked_before_plugins_load(self, tmp_path: Path) -> None:
        """A bad input fails before the registry is made, so its error comes first."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"id": "no-url"}]), encoding="utf-8")
        made: list[PluginRegistry] = []

        def registry() -> PluginRegistry:
            made.append(PluginRegistry(make_plugin_manager()))
            return made[-1]

        with pytest.raises(InputError, match="missing required field 'url'"):
            plan_run(registry=registry, settings=PipelineSettings(), files=listing)
        assert made == []

    def test_routed_option_nobody_takes_is_an_error(self) -> None:
        """A plain KEY no selected post-processor declares is refused, naming them."""
        with pytest.raises(PluginOptionError, match="no selected post-processor"):
            plan_run(
                "dummy",
                ["jsonl"],
                registry=PluginRegistry(make_plugin_manager()),
                settings=PipelineSettings(),
                routed_post_processor_options={"colour": "red"},
            )


class RemoteWriter(BasePostProcessor):
    """Writes its output where its option says: a local file or a URL it handles itself."""

    options = (Option("output", output=True), Option("log", output=True, default="-"))

    def __init__(self, output: str, log: str = "-") -> None:
        self.output = output

    def post_process(self, result: Any, file_data: FileData) -> None:
        """Nothing: only the plan is tested."""


class TestOutputPaths:
    """A post-processor's output file is checked when the run is planned, before any work."""

    def _plan(self, output: str) -> Any:
        return plan_run(
            "dummy",
            [RemoteWriter],
            registry=PluginRegistry(make_plugin_manager()),
            settings=PipelineSettings(simulate_downloads=True),
            post_processor_options={"output": output},
        )

    def test_missing_folder_named(self, tmp_path: Path) -> None:
        """An output in a missing folder is a usage error naming the writer, option and path."""
        target = tmp_path / "missing" / "out.bin"
        with pytest.raises(PluginOptionError) as caught:
            self._plan(str(target))
        assert str(caught.value) == (
            f"post-processor RemoteWriter (option output): {target}:"
            f" no such folder {tmp_path / 'missing'}"
        )

    def test_standard_output_and_urls_pass(self, tmp_path: Path) -> None:
        """``-`` and a URL are not local files: a plugin writes them by its own means."""
        self._plan("s3://bucket/prefix")
        self._plan(str(tmp_path / "out.bin"))
        assert list(tmp_path.iterdir()) == []  # checked, nothing written
