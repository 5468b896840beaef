"""The house's layering rules, checked on the source: no module uses another's private names.

import-linter (``lint-imports``, run by CI) checks that the layers point one
way; this test checks what it cannot: that no module imports or reaches
into another module's or object's underscore names, and that the plugin
packages use only the framework's public modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "download_pipeline_processor"
PLUGIN_SOURCES = sorted(REPO.glob("plugins/*/src"))

#: Underscore names of the standard library that are public API despite the name.
STDLIB_PUBLIC = frozenset({"_exit", "_replace", "_asdict", "_fields", "_getframe", "_make"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_private_names(tree: ast.Module) -> set[str]:
    """Underscore names this module defines itself: its functions, methods and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if _is_private(name)}


def private_uses(path: Path) -> list[str]:
    """Where ``path`` imports another module's private name or reads one it does not define."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [
                f"{path.name}:{node.lineno}: imports {alias.name} from {node.module}"
                for alias in node.names
                if _is_private(alias.name)
            ]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
                continue
            if node.attr in STDLIB_PUBLIC or node.attr in own:
                continue
            found.append(f"{path.name}:{node.lineno}: reads .{node.attr} of {ast.unparse(owner)}")
    return found


class TestPrivateNames:
    """Modules talk through public names only."""

    @pytest.mark.parametrize(
        "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
    )
    def test_no_module_uses_another_modules_private_names(self, path: Path) -> None:
        """A framework module neither imports nor reads another module's or object's _names."""
        assert private_uses(path) == []

    @pytest.mark.parametrize(
        "path",
        [p for source in PLUGIN_SOURCES for p in sorted(source.rglob("*.py"))],
        ids=lambda p: str(p.relative_to(REPO / "plugins")),
    )
    def test_plugins_use_only_public_modules(self, path: Path) -> None:
        """A plugin package imports only public framework modules, and no private names."""
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        private_modules = [
            f"{path.name}:{node.lineno}: {node.module}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("download_pipeline_processor")
            and any(_is_private(part) for part in node.module.split("."))
        ]
        assert private_modules == []
        assert [use for use in private_uses(path) if "imports" in use] == []
