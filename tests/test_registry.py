"""Tests for _registry.py and _plugins.py: built-ins, test plugins, clashes, entry-point loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from download_pipeline_processor._plugins import (
    BUILTIN_DISTRIBUTION,
    LOAD_PLUGINS_ENV,
    PluginSource,
    create_plugin_manager,
    load_entry_points,
)
from download_pipeline_processor._registry import (
    DOWNLOADER,
    POST_PROCESSOR,
    PROCESSOR,
    PluginRegistry,
)
from download_pipeline_processor.base_post_processor import BasePostProcessor
from download_pipeline_processor.base_processor import BaseProcessor
from download_pipeline_processor.builtins._post_processors import (
    DummyPostProcessor,
    JsonlPostProcessor,
)
from download_pipeline_processor.builtins._processors import ChecksumProcessor, DummyProcessor
from download_pipeline_processor.builtins._requests_downloader import RequestsDownloader
from download_pipeline_processor.builtins._simulated import SimulatedDownloader
from download_pipeline_processor.errors import (
    DuplicatePluginError,
    PluginError,
    PluginLoadError,
    UnknownPluginError,
)
from download_pipeline_processor.hookspecs import Register, hookimpl
from download_pipeline_processor.testing import FileServer, make_plugin_manager

BUILTIN_SOURCES = {
    "builtin.processors",
    "builtin.post_processors",
    "builtin.downloaders",
    "builtin.input_formats",
    "builtin.executors",
}


class ShoutProcessor(BaseProcessor):
    """A test processor."""

    def process(self, file_data: object) -> str:
        return "SHOUT"


class OtherShoutProcessor(BaseProcessor):
    """A second test processor, for clashes."""


class ShoutPlugin:
    """A plugin object whose hook registers ``shout``."""

    @hookimpl
    def register_processors(self, register: Register) -> None:
        register("shout", ShoutProcessor)


class OtherShoutPlugin:
    """A plugin object from another package that also registers ``shout``."""

    @hookimpl
    def register_processors(self, register: Register) -> None:
        register("shout", OtherShoutProcessor)


class ExplodingPlugin:
    """A plugin whose register hook raises."""

    @hookimpl
    def register_processors(self, register: Register) -> None:
        raise RuntimeError("kaboom")


# --- a real distribution on disk, for entry-point loading -------------------------------

FAKE_MODULES = ("fake_broken_plugin", "fake_good_plugin")


def make_distribution(root: Path, dist: str, entry_name: str, module: str, source: str) -> None:
    """Write ``<dist>-0.1.dist-info`` and a module ``module`` holding ``source`` under ``root``."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[download_pipeline_processor]\n{entry_name} = {module}\n", encoding="utf-8"
    )
    (root / f"{module}.py").write_text(source, encoding="utf-8")


@pytest.fixture
def installed_fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two distributions on sys.path: ``fake_broken`` (fails to import) and ``fake_good``."""
    make_distribution(
        tmp_path,
        "fake_broken",
        "fake_broken",
        "fake_broken_plugin",
        'raise ImportError("boom")\n',
    )
    make_distribution(
        tmp_path,
        "fake_good",
        "fake_good",
        "fake_good_plugin",
        "from download_pipeline_processor import BaseProcessor, hookimpl\n\n"
        "class GoodProcessor(BaseProcessor):\n"
        "    pass\n\n"
        "@hookimpl\n"
        "def register_processors(register):\n"
        '    register("fake-good", GoodProcessor)\n',
    )
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)


class TestBuiltins:
    """The built-ins register through the same hooks as any plugin."""

    def test_builtin_names(self) -> None:
        """Built-in processors, post-processors and downloaders are all registered."""
        registry = PluginRegistry(create_plugin_manager(load_entrypoints=False))
        assert {"dummy", "checksum"} <= set(registry.names(PROCESSOR))
        assert {"dummy", "jsonl"} <= set(registry.names(POST_PROCESSOR))
        assert registry.names(DOWNLOADER) == ["requests", "simulated"]
        assert registry.problems == []
        assert registry.clashes() == []

    def test_builtins_resolve_to_classes(self) -> None:
        """Each built-in name resolves to its class."""
        registry = PluginRegistry(create_plugin_manager(load_entrypoints=False))
        assert registry.resolve(PROCESSOR, "dummy") is DummyProcessor
        assert registry.resolve(PROCESSOR, "checksum") is ChecksumProcessor
        assert registry.resolve(POST_PROCESSOR, "dummy") is DummyPostProcessor
        assert registry.resolve(POST_PROCESSOR, "jsonl") is JsonlPostProcessor
        assert registry.resolve(DOWNLOADER, "requests") is RequestsDownloader
        assert registry.resolve(DOWNLOADER, "simulated") is SimulatedDownloader

    def test_builtins_attributed_to_this_package(self) -> None:
        """Built-in registrations name this distribution as their source."""
        registry = PluginRegistry(create_plugin_manager(load_entrypoints=False))
        (registration,) = registry.registrations(PROCESSOR)["checksum"]
        assert registration.source.distribution == BUILTIN_DISTRIBUTION
        assert registration.source.name == "builtin.processors"

    def test_fresh_manager_each_time(self) -> None:
        """create_plugin_manager builds a new manager, not a shared global."""
        first = create_plugin_manager(load_entrypoints=False)
        first.register(ShoutPlugin(), name="shout-plugin")
        second = create_plugin_manager(load_entrypoints=False)
        assert "shout" not in PluginRegistry(second).names(PROCESSOR)


class TestTestPlugins:
    """Plugins registered in process on a fresh manager."""

    def test_plugin_object_resolves(self) -> None:
        """A class instance with @hookimpl methods registers a processor that resolves by name."""
        registry = PluginRegistry(make_plugin_manager(ShoutPlugin()))
        assert registry.resolve(PROCESSOR, "shout") is ShoutProcessor
        assert {"dummy", "checksum", "shout"} <= set(registry.names(PROCESSOR))

    def test_plugin_module_resolves(self) -> None:
        """A module with @hookimpl functions registers a post-processor that resolves by name."""
        module = types.ModuleType("dpp_test_module_plugin")

        class ListingPostProcessor(BasePostProcessor):
            pass

        @hookimpl
        def register_post_processors(register: Register) -> None:
            register("listing", ListingPostProcessor)

        module.register_post_processors = register_post_processors  # type: ignore[attr-defined]
        manager = make_plugin_manager(module)
        registry = PluginRegistry(manager)
        assert registry.resolve(POST_PROCESSOR, "listing") is ListingPostProcessor
        (registration,) = registry.registrations(POST_PROCESSOR)["listing"]
        assert registration.source.name == "dpp_test_module_plugin"
        manager.unregister(module)
        assert "listing" not in PluginRegistry(manager).names(POST_PROCESSOR)

    def test_unknown_name_lists_available(self) -> None:
        """An unknown name raises UnknownPluginError listing the registered names."""
        registry = PluginRegistry(make_plugin_manager(ShoutPlugin()))
        with pytest.raises(UnknownPluginError) as info:
            registry.resolve(PROCESSOR, "shuot")
        message = str(info.value)
        assert "unknown processor 'shuot'" in message
        assert "available: " in message
        for name in ("checksum", "dummy", "shout"):
            assert name in message

    def test_unknown_kind_is_separate(self) -> None:
        """A processor name is not a post-processor name."""
        registry = PluginRegistry(make_plugin_manager(ShoutPlugin()))
        with pytest.raises(UnknownPluginError, match="unknown post-processor 'shout'"):
            registry.resolve(POST_PROCESSOR, "shout")


class TestClashes:
    """Two distributions registering one name."""

    def make_registry(self) -> PluginRegistry:
        """A registry where dist-one and dist-two both register processor ``shout``."""
        manager = create_plugin_manager(load_entrypoints=False)
        manager.register_source(ShoutPlugin(), PluginSource("one", "dist-one", "1.0"))
        manager.register_source(OtherShoutPlugin(), PluginSource("two", "dist-two", "2.0"))
        return PluginRegistry(manager)

    def test_resolve_names_both(self) -> None:
        """Resolving a clashing name raises DuplicatePluginError naming both distributions."""
        with pytest.raises(DuplicatePluginError) as info:
            self.make_registry().resolve(PROCESSOR, "shout")
        message = str(info.value)
        assert "dist-one" in message
        assert "dist-two" in message
        assert "'shout'" in message

    def test_clashes_reports_it(self) -> None:
        """clashes() lists the clashing kind, name and both registrations."""
        ((kind, name, registrations),) = self.make_registry().clashes()
        assert kind is PROCESSOR
        assert name == "shout"
        assert {r.source.distribution for r in registrations} == {"dist-one", "dist-two"}
        assert {r.cls for r in registrations} == {ShoutProcessor, OtherShoutProcessor}

    def test_other_names_unaffected(self) -> None:
        """A clash on one name leaves the other names selectable."""
        assert self.make_registry().resolve(PROCESSOR, "dummy") is DummyProcessor

    def test_clash_with_builtin(self) -> None:
        """A third-party plugin registering a built-in's name is a clash too."""

        class DummyTakeover:
            @hookimpl
            def register_processors(self, register: Register) -> None:
                register("dummy", ShoutProcessor)

        manager = create_plugin_manager(load_entrypoints=False)
        manager.register_source(DummyTakeover(), PluginSource("takeover", "takeover-dist", "1"))
        with pytest.raises(DuplicatePluginError, match="takeover-dist") as info:
            PluginRegistry(manager).resolve(PROCESSOR, "dummy")
        assert BUILTIN_DISTRIBUTION in str(info.value)

    def test_same_distribution_twice_is_no_clash(self) -> None:
        """One distribution registering a name twice is not a clash; the last one wins."""
        manager = create_plugin_manager(load_entrypoints=False)
        manager.register_source(ShoutPlugin(), PluginSource("one", "dist-one", "1.0"))
        manager.register_source(OtherShoutPlugin(), PluginSource("one-b", "dist-one", "1.0"))
        registry = PluginRegistry(manager)
        assert registry.clashes() == []
        assert registry.resolve(PROCESSOR, "shout") is OtherShoutProcessor


class TestBrokenPlugins:
    """One bad plugin does not stop the others."""

    def test_raising_hook_reported(self) -> None:
        """A plugin whose register hook raises is in problems; the others still resolve."""
        manager = create_plugin_manager(load_entrypoints=False)
        manager.register_source(ExplodingPlugin(), PluginSource("boomer", "boom-dist", "1"))
        manager.register_source(ShoutPlugin(), PluginSource("shouter", "shout-dist", "1"))
        registry = PluginRegistry(manager)
        (problem,) = registry.problems
        assert "'boomer'" in problem
        assert "boom-dist" in problem
        assert "register_processors" in problem
        assert "RuntimeError: kaboom" in problem
        assert registry.resolve(PROCESSOR, "shout") is ShoutProcessor
        assert registry.resolve(PROCESSOR, "checksum") is ChecksumProcessor

    @pytest.mark.parametrize(
        ("name", "cls", "fragment"),
        [
            ("ok-name", JsonlPostProcessor, "not a subclass of BaseProcessor"),
            ("ok-name", "not a class", "not a subclass of BaseProcessor"),
            ("bad:name", ShoutProcessor, "invalid processor name"),
            ("", ShoutProcessor, "invalid processor name"),
        ],
    )
    def test_invalid_registration_reported(self, name: str, cls: object, fragment: str) -> None:
        """Registering a non-subclass or an invalid name is a problem, not a registration."""

        class Invalid:
            @hookimpl
            def register_processors(self, register: Register) -> None:
                register(name, cls)  # type: ignore[arg-type]

        registry = PluginRegistry(make_plugin_manager(Invalid()))
        (problem,) = registry.problems
        assert fragment in problem
        builtins_only = PluginRegistry(create_plugin_manager(load_entrypoints=False))
        assert registry.names(PROCESSOR) == builtins_only.names(PROCESSOR)


class TestModuleClassSpec:
    """The original tool's ``module:ClassName`` form."""

    @pytest.fixture
    def registry(self) -> PluginRegistry:
        """A registry with the built-ins only."""
        return PluginRegistry(create_plugin_manager(load_entrypoints=False))

    def test_imports_class(self, registry: PluginRegistry) -> None:
        """module:ClassName imports the class when it derives from the base."""
        spec = "download_pipeline_processor.builtins._processors:ChecksumProcessor"
        assert registry.resolve(PROCESSOR, spec) is ChecksumProcessor

    def test_user_module(self, registry: PluginRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
        """A class from any importable module works, nested attributes included."""
        module = types.ModuleType("dpp_user_module")
        module.Shout = ShoutProcessor  # type: ignore[attr-defined]
        module.Holder = type("Holder", (), {"Inner": ShoutProcessor})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "dpp_user_module", module)
        assert registry.resolve(PROCESSOR, "dpp_user_module:Shout") is ShoutProcessor
        assert registry.resolve(PROCESSOR, "dpp_user_module:Holder.Inner") is ShoutProcessor

    def test_wrong_base(self, registry: PluginRegistry) -> None:
        """A post-processor class given as a processor is rejected."""
        spec = "download_pipeline_processor.builtins._post_processors:JsonlPostProcessor"
        with pytest.raises(PluginError, match="not a subclass of BaseProcessor"):
            registry.resolve(PROCESSOR, spec)

    def test_not_a_class(self, registry: PluginRegistry) -> None:
        """An attribute that is not a class is rejected."""
        with pytest.raises(PluginError, match="not a subclass of BasePostProcessor"):
            registry.resolve(POST_PROCESSOR, "os:sep")

    def test_missing_module(self, registry: PluginRegistry) -> None:
        """A module that cannot be imported is a PluginLoadError naming it."""
        with pytest.raises(PluginLoadError, match="cannot import 'dpp_no_such_module'"):
            registry.resolve(PROCESSOR, "dpp_no_such_module:Thing")

    def test_missing_attribute(self, registry: PluginRegistry) -> None:
        """A missing class in an existing module is a PluginError naming both."""
        spec = "download_pipeline_processor.builtins._processors:NoSuchProcessor"
        with pytest.raises(PluginError, match="has no attribute 'NoSuchProcessor'"):
            registry.resolve(PROCESSOR, spec)

    @pytest.mark.parametrize("spec", [":ChecksumProcessor", "download_pipeline_processor:"])
    def test_half_spec(self, registry: PluginRegistry, spec: str) -> None:
        """A spec missing its module or class part says what form is expected."""
        with pytest.raises(PluginError, match="expected module:ClassName"):
            registry.resolve(PROCESSOR, spec)


class TestEntryPoints:
    """Loading installed plugins from a real distribution on sys.path."""

    def test_failing_entry_point_recorded(self, installed_fakes: Path) -> None:
        """An entry point that raises on import is in load_failures; the rest keep working."""
        manager = create_plugin_manager(load_entrypoints=False)
        load_entry_points(manager)
        (failure,) = [f for f in manager.load_failures if f.name == "fake_broken"]
        assert failure.distribution == "fake-broken"
        assert failure.version == "0.1"
        assert isinstance(failure.error, ImportError)
        assert str(failure.error) == "boom"
        registry = PluginRegistry(manager)
        assert registry.resolve(PROCESSOR, "checksum") is ChecksumProcessor
        assert registry.resolve(POST_PROCESSOR, "jsonl") is JsonlPostProcessor
        assert registry.resolve(PROCESSOR, "fake-good").__name__ == "GoodProcessor"

    def test_selecting_failed_entry_point_explains(self, installed_fakes: Path) -> None:
        """Resolving the failed entry point's name raises PluginLoadError saying why."""
        registry = PluginRegistry(create_plugin_manager())
        with pytest.raises(PluginLoadError) as info:
            registry.resolve(PROCESSOR, "fake_broken")
        message = str(info.value)
        assert "failed to load" in message
        assert "fake-broken" in message
        assert "ImportError: boom" in message

    def test_good_entry_point_attributed(self, installed_fakes: Path) -> None:
        """A loaded entry point's registrations carry its distribution and version."""
        registry = PluginRegistry(create_plugin_manager())
        (registration,) = registry.registrations(PROCESSOR)["fake-good"]
        assert registration.source == PluginSource("fake_good", "fake-good", "0.1")

    def test_env_empty_loads_none(
        self, installed_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS='' loads no installed plugin."""
        monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
        manager = create_plugin_manager()
        assert manager.load_failures == []
        assert set(manager.sources) == BUILTIN_SOURCES
        assert "fake-good" not in PluginRegistry(manager).names(PROCESSOR)

    def test_env_list_loads_only_those(
        self, installed_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A comma list loads only the named entry points."""
        monkeypatch.setenv(LOAD_PLUGINS_ENV, " fake_good , not_installed")
        manager = create_plugin_manager()
        assert manager.load_failures == []
        assert set(manager.sources) == BUILTIN_SOURCES | {"fake_good"}
        assert "fake-good" in PluginRegistry(manager).names(PROCESSOR)

    def test_env_list_can_name_the_broken_one(
        self, installed_fakes: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Naming only the broken entry point loads it (and records its failure) alone."""
        monkeypatch.setenv(LOAD_PLUGINS_ENV, "fake_broken")
        manager = create_plugin_manager()
        assert [f.name for f in manager.load_failures] == ["fake_broken"]
        assert set(manager.sources) == BUILTIN_SOURCES

    def test_no_entry_points_when_disabled(self, installed_fakes: Path) -> None:
        """create_plugin_manager(load_entrypoints=False) ignores installed plugins."""
        manager = create_plugin_manager(load_entrypoints=False)
        assert manager.load_failures == []
        assert set(manager.sources) == BUILTIN_SOURCES


MODULE_IN_CURRENT_FOLDER = """
from pathlib import Path

from download_pipeline_processor import BasePostProcessor, BaseProcessor


class Raw(BaseProcessor):
    def process(self, file_data):
        return Path(file_data.local_path).read_bytes().decode()


class Out(BasePostProcessor):
    def post_process(self, result, file_data):
        with open("seen.txt", "a", encoding="utf-8") as out:
            out.write(f"{file_data.id}={result}\\n")
"""


class TestModuleInCurrentFolder:
    """``module:ClassName`` finds a module in the current folder, as ``python -m`` does."""

    def test_installed_command(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """myproc.py beside the user, no PYTHONPATH: its processor and post-processor run."""
        (tmp_path / "myproc.py").write_text(MODULE_IN_CURRENT_FOLDER, encoding="utf-8")
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"id": "a", "url": file_server.add("/a", b"hello")}]))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = ""
        # subprocess.run kills the process if it outlives the timeout.
        proc = subprocess.run(
            [
                str(cli_path),
                *("--files", str(listing), "--processor", "myproc:Raw"),
                *("--post-processor", "myproc:Out", "--download-cache", str(tmp_path / "c")),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "seen.txt").read_text(encoding="utf-8") == "a=hello\n"
