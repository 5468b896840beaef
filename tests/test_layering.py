"""The house's layering rules, checked on the source: no module uses another's private names.

import-linter (``lint-imports``, run by CI) checks that the layers point one
way; this test checks what it cannot: that no module imports or reaches
into another module's or object's underscore names, that the plugin
packages use only the framework's public modules and read no private
attribute another package defines, and that no package, the framework's
or a plugin's, has an import circle (lazy and typing-only imports count).
Every public module declares its public face in ``__all__``, and plugins
take from the framework only the names declared there.
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


def defined_private_names(paths: list[Path]) -> set[str]:
    """Underscore names the modules at ``paths`` define: functions, classes, attributes, slots.

    Module-level and class-level assignments count; a bare annotation
    (``_x: int`` in a class body) declares a name without defining it.
    """
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bodies = [tree.body] + [
            node.body for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
        ]
        for body in bodies:
            for statement in body:
                if isinstance(statement, ast.Assign):
                    targets = statement.targets
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    targets = [statement.target]
                else:
                    continue
                names.update(t.id for t in targets if isinstance(t, ast.Name))
                if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                    names.update(
                        node.value
                        for node in ast.walk(statement.value)
                        if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    )
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if _is_private(name)}


#: Each plugin package's modules, by the package's folder.
PLUGIN_PACKAGES = {
    package: sorted(package.rglob("*.py"))
    for source in PLUGIN_SOURCES
    for package in sorted(source.iterdir())
    if (package / "__init__.py").exists()
}


def foreign_private_reads(package: Path) -> list[str]:
    """Where a plugin package reads ``obj._x``, ``_x`` defined only in another package.

    Another package is the framework or another plugin; ``self._x`` counts
    too (a subclass reading its framework base class's private attribute).
    """
    own = defined_private_names(PLUGIN_PACKAGES[package])
    foreign = defined_private_names(sorted(PACKAGE.rglob("*.py")))
    for other, paths in PLUGIN_PACKAGES.items():
        if other != package:
            foreign |= defined_private_names(paths)
    found = []
    for path in PLUGIN_PACKAGES[package]:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [
            f"{path.name}:{node.lineno}: reads .{node.attr} of {ast.unparse(node.value)}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and _is_private(node.attr)
            and node.attr in foreign
            and node.attr not in own
            and node.attr not in STDLIB_PUBLIC
        ]
    return found


def _module_name(package: Path, path: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Which of ``package``'s modules each of its modules imports, wherever the import stands.

    Imports inside functions and under ``TYPE_CHECKING`` count: a circle
    hidden there is still a circle in the design.
    """
    modules = {_module_name(package, path): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                imported = target
                while imported and imported not in modules:  # a name inside a module
                    imported = imported.rpartition(".")[0]
                if imported and imported != name:
                    graph[name].add(imported)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of ``graph`` meets, each as the modules around it."""
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        path.append(name)
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, path)
        path.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return circles


def public_modules(package: Path) -> dict[str, Path]:
    """``package``'s modules whose dotted name has no underscore part, by that name."""
    modules = {_module_name(package, path): path for path in sorted(package.rglob("*.py"))}
    return {
        name: path
        for name, path in modules.items()
        if not any(_is_private(part) for part in name.split("."))
    }


def declared_names(path: Path) -> list[str] | None:
    """The names in the module's ``__all__`` (a literal list or tuple), or None without one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, (ast.List, ast.Tuple)), f"{path.name}: __all__ not a literal"
            return [ast.literal_eval(element) for element in value.elts]
    return None


#: The framework's public modules, by dotted name.
FRAMEWORK_PUBLIC = public_modules(PACKAGE)


def undeclared_imports(path: Path) -> list[str]:
    """Names ``path`` takes from a public framework module that its ``__all__`` leaves out.

    ``from download_pipeline_processor.sink import body_writer`` and
    ``from download_pipeline_processor import affinity`` then ``affinity.widened_for``
    both count; a submodule imported from its package is a module, not a name.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    taken: list[tuple[int, str, str]] = []  # (line, module, name)
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in FRAMEWORK_PUBLIC and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in FRAMEWORK_PUBLIC:
                    module_aliases[alias.asname or alias.name] = submodule
                else:
                    taken.append((node.lineno, node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in FRAMEWORK_PUBLIC:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
        ):
            taken.append((node.lineno, module_aliases[node.value.id], node.attr))
    found = []
    for line, module, name in taken:
        declared = declared_names(FRAMEWORK_PUBLIC[module]) or []
        if name not in declared:
            found.append(f"{path.name}:{line}: {name} is not in {module}.__all__")
    return found


class TestPublicFace:
    """Each public module says what it offers (``__all__``); plugins take only that."""

    @pytest.mark.parametrize(
        "path",
        [
            *FRAMEWORK_PUBLIC.values(),
            *(path for package in PLUGIN_PACKAGES for path in public_modules(package).values()),
        ],
        ids=lambda p: str(p.relative_to(REPO)),
    )
    def test_public_module_declares_all(self, path: Path) -> None:
        """Every public module of the framework and of each plugin package has ``__all__``.

        (ruff's F822 checks that each name in it exists.)
        """
        assert declared_names(path) is not None, f"{path.relative_to(REPO)} has no __all__"

    @pytest.mark.parametrize(
        "path",
        [path for paths in PLUGIN_PACKAGES.values() for path in paths],
        ids=lambda p: str(p.relative_to(REPO / "plugins")),
    )
    def test_plugins_import_only_declared_names(self, path: Path) -> None:
        """A plugin package takes from a framework module only what its ``__all__`` declares."""
        assert undeclared_imports(path) == []


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

    @pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES), ids=lambda p: p.name)
    def test_plugins_read_no_private_attribute_of_another_package(self, package: Path) -> None:
        """A plugin package reads no ``obj._x`` that only the framework or another plugin defines.

        What a plugin needs of another package's object is that package's
        public API (``RequestsDownloader.needs_session``, not ``_needs_session``).
        """
        assert foreign_private_reads(package) == []


class TestImportCircles:
    """Imports point one way inside every package, the framework's and each plugin's."""

    @pytest.mark.parametrize("package", [PACKAGE, *sorted(PLUGIN_PACKAGES)], ids=lambda p: p.name)
    def test_no_import_circle(self, package: Path) -> None:
        """No module imports, even lazily or for typing only, one that imports it back."""
        assert import_circles(import_graph(package)) == []
