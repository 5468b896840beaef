"""Resolving processor, post-processor, downloader and executor names to classes,
and collecting the input formats the plugins register."""

from __future__ import annotations

import importlib
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._input_formats import InputFormats
from ._plugins import PipelinePluginManager, PluginSource
from .backend import Downloader
from .base_post_processor import BasePostProcessor
from .base_processor import BaseProcessor
from .errors import (
    DuplicatePluginError,
    PluginError,
    PluginLoadError,
    UnknownPluginError,
)
from .executor import BaseExecutor
from .input_format import InputFormat

#: The hook input formats register through (not classes: a reader function each).
INPUT_FORMATS_HOOK = "register_input_formats"


@dataclass(frozen=True)
class PluginKind:
    """A family of plugin classes: its label, base class and registration hook."""

    label: str
    base: type
    hook: str


PROCESSOR = PluginKind("processor", BaseProcessor, "register_processors")
POST_PROCESSOR = PluginKind("post-processor", BasePostProcessor, "register_post_processors")
DOWNLOADER = PluginKind("downloader", Downloader, "register_downloaders")
EXECUTOR = PluginKind("executor", BaseExecutor, "register_executors")
KINDS = (PROCESSOR, POST_PROCESSOR, DOWNLOADER, EXECUTOR)


@dataclass(frozen=True)
class FormatRegistration:
    """One ``register(name, read, suffixes=...)`` call of ``register_input_formats``."""

    format: InputFormat
    source: PluginSource


@dataclass(frozen=True)
class Registration:
    """One ``register(name, cls)`` call, with the plugin that made it."""

    kind: PluginKind
    name: str
    cls: type
    source: PluginSource


class PluginRegistry:
    """Every class the plugins registered, by kind and name.

    Each hook implementation is called on its own so that every registration
    is attributed to its distribution; a plugin whose hook raises or that
    registers something invalid is reported in :attr:`problems` and skipped.
    """

    def __init__(self, manager: PipelinePluginManager) -> None:
        self.manager = manager
        self.problems: list[str] = []
        self._by_kind: dict[str, dict[str, list[Registration]]] = {}
        for kind in KINDS:
            self._by_kind[kind.label] = self._collect(kind)
        #: Every input format registration, in registration order.
        self.format_registrations = self._collect_formats()
        #: The input formats, for reading ``--files``.
        self.input_formats = InputFormats(
            (reg.format, reg.source.distribution) for reg in self.format_registrations
        )

    def _collect_formats(self) -> list[FormatRegistration]:
        found: list[FormatRegistration] = []
        caller = getattr(self.manager.hook, INPUT_FORMATS_HOOK)
        for impl in caller.get_hookimpls():
            source = self.manager.source_of(impl.plugin)

            def register(
                name: str,
                read: Any,
                suffixes: Any = (),
                position: str = "line",
                _source: PluginSource = source,
            ) -> None:
                if not isinstance(name, str) or not name or ":" in name:
                    raise PluginError(f"invalid input format name {name!r}")
                if not callable(read):
                    raise PluginError(f"input format {name!r}: read must be callable")
                if isinstance(suffixes, str):
                    suffixes = (suffixes,)
                claimed = tuple(str(suffix).lower() for suffix in suffixes)
                if not all(suffix.startswith(".") and len(suffix) > 1 for suffix in claimed):
                    raise PluginError(
                        f"input format {name!r}: suffixes must start with a dot, got {suffixes!r}"
                    )
                registered = InputFormat(name, read, claimed, str(position))
                found.append(FormatRegistration(registered, _source))

            try:
                impl.function(**dict.fromkeys(impl.argnames, register))
            except Exception as exc:  # noqa: BLE001 - one bad plugin must not stop the others
                self.problems.append(
                    f"plugin {source.name!r} ({source.distribution}) failed in "
                    f"{INPUT_FORMATS_HOOK}: {type(exc).__name__}: {exc}"
                )
        return found

    def _collect(self, kind: PluginKind) -> dict[str, list[Registration]]:
        found: dict[str, list[Registration]] = defaultdict(list)
        caller = getattr(self.manager.hook, kind.hook)
        # get_hookimpls() lists plugins in registration order (pluggy calls them in
        # reverse); keep registration order so that the last registration wins.
        for impl in caller.get_hookimpls():
            source = self.manager.source_of(impl.plugin)

            def register(name: str, cls: type, _source: PluginSource = source) -> None:
                if not isinstance(name, str) or not name or ":" in name:
                    raise PluginError(f"invalid {kind.label} name {name!r}")
                if not (isinstance(cls, type) and issubclass(cls, kind.base)):
                    raise PluginError(
                        f"{kind.label} {name!r} is not a subclass of {kind.base.__name__}"
                    )
                found[name].append(Registration(kind, name, cls, _source))

            try:
                impl.function(**dict.fromkeys(impl.argnames, register))
            except Exception as exc:  # noqa: BLE001 - one bad plugin must not stop the others
                self.problems.append(
                    f"plugin {source.name!r} ({source.distribution}) failed in "
                    f"{kind.hook}: {type(exc).__name__}: {exc}"
                )
        return dict(found)

    def registrations(self, kind: PluginKind) -> dict[str, list[Registration]]:
        """All registrations of ``kind``, by name; a list longer than one is a clash."""
        return self._by_kind[kind.label]

    def names(self, kind: PluginKind) -> list[str]:
        """The names selectable for ``kind``."""
        return sorted(self._by_kind[kind.label])

    def clashes(self) -> list[tuple[PluginKind, str, list[Registration]]]:
        """Every name registered by more than one distribution."""
        result = []
        for kind in KINDS:
            for name, regs in sorted(self._by_kind[kind.label].items()):
                if len({reg.source.distribution for reg in regs}) > 1:
                    result.append((kind, name, regs))
        return result

    def format_clashes(self) -> list[tuple[str, list[str]]]:
        """Every input format name registered by more than one distribution, with them."""
        by_name: dict[str, set[str]] = defaultdict(set)
        for reg in self.format_registrations:
            by_name[reg.format.name].add(reg.source.distribution)
        return [(name, sorted(found)) for name, found in sorted(by_name.items()) if len(found) > 1]

    def resolve(self, kind: PluginKind, spec: str) -> type[Any]:
        """The class selected by ``spec``: a registered name or ``module:ClassName``."""
        regs = self._by_kind[kind.label].get(spec)
        if regs:
            distributions = {reg.source.distribution for reg in regs}
            if len(distributions) > 1:
                raise DuplicatePluginError(kind.label, spec, distributions)
            return regs[-1].cls
        for failure in self.manager.load_failures:
            if failure.name == spec:
                raise PluginLoadError(
                    f"{kind.label} {spec!r}: plugin {failure.name!r} from "
                    f"{failure.distribution} failed to load: "
                    f"{type(failure.error).__name__}: {failure.error}"
                )
        if ":" in spec:
            return import_class(kind, spec)
        raise UnknownPluginError(kind.label, spec, self.names(kind))


def _search_current_folder() -> None:
    """Put the current folder first on the module search path, as ``python -m`` does.

    ``--processor myproc:Raw`` next to ``myproc.py`` then works from an
    installed command, whose own search path starts at its script's folder.
    It stays there for the run: the module may import its neighbours later,
    and worker processes started for the run inherit the search path.
    """
    here = str(Path.cwd())
    if sys.path[:1] not in ([here], [""]):
        sys.path.insert(0, here)
    importlib.invalidate_caches()


def import_class(kind: PluginKind, spec: str) -> type[Any]:
    """Import ``module:ClassName`` and check it derives from the kind's base class."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"{kind.label} {spec!r}: expected module:ClassName")
    _search_current_folder()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginLoadError(
            f"{kind.label} {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise PluginError(
                f"{kind.label} {spec!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not (isinstance(target, type) and issubclass(target, kind.base)):
        raise PluginError(f"{kind.label} {spec!r} is not a subclass of {kind.base.__name__}")
    return target
