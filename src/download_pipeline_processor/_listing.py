"""What ``download-pipeline-processor plugins`` shows, as data."""

from __future__ import annotations

from typing import Any

from ._batches import takes_batches
from ._registry import KINDS, PluginRegistry
from .options import declared_options


def describe_plugins(registry: PluginRegistry) -> dict[str, Any]:
    """Every registered class, every plugin module with its hooks, load failures and clashes."""
    manager = registry.manager
    clashes = {(kind.label, name) for kind, name, _ in registry.clashes()}
    entries = []
    for kind in KINDS:
        for name, regs in sorted(registry.registrations(kind).items()):
            for reg in regs:
                declared = declared_options(reg.cls)
                entries.append(
                    {
                        "name": name,
                        "kind": kind.label,
                        "distribution": reg.source.distribution,
                        "version": reg.source.version,
                        "class": f"{reg.cls.__module__}:{reg.cls.__qualname__}",
                        "options": (
                            None if declared is None else [opt.describe() for opt in declared]
                        ),
                        "clash": (kind.label, name) in clashes,
                    }
                )
                if kind.label == "processor" and takes_batches(reg.cls):
                    # It defines process_batch: --processing-batch-size applies to it.
                    entries[-1]["batches"] = True
    entries += _input_format_entries(registry)
    modules = []
    for plugin in manager.get_plugins():
        source = manager.source_of(plugin)
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
        modules.append(
            {
                "name": source.name,
                "distribution": source.distribution,
                "version": source.version,
                "hooks": hooks,
            }
        )
    modules.sort(key=lambda module: (module["distribution"], module["name"]))
    failures = [
        {
            "name": failure.name,
            "distribution": failure.distribution,
            "version": failure.version,
            "error": f"{type(failure.error).__name__}: {failure.error}",
        }
        for failure in manager.load_failures
    ]
    return {
        "plugins": entries,
        "modules": modules,
        "failed": failures,
        "problems": list(registry.problems),
    }


def _input_format_entries(registry: PluginRegistry) -> list[dict[str, Any]]:
    """The listing's rows of the input formats, each with the suffixes it claims."""
    clashes = {name for name, _ in registry.format_clashes()}
    rows = []
    for reg in sorted(registry.format_registrations, key=lambda reg: reg.format.name):
        read = reg.format.read
        rows.append(
            {
                "name": reg.format.name,
                "kind": "input format",
                "distribution": reg.source.distribution,
                "version": reg.source.version,
                "class": f"{read.__module__}:{getattr(read, '__qualname__', repr(read))}",
                "options": None,
                "suffixes": list(reg.format.suffixes),
                "clash": reg.format.name in clashes,
            }
        )
    return rows


def _shown_default(option: dict[str, Any]) -> str:
    """The default as typed on the command line: text quoted, numbers and booleans bare."""
    default = option["default"]
    if default is None:
        return "none"
    return repr(default) if option["type"] == "str" else str(default)


def format_plugins(listing: dict[str, Any]) -> str:
    """The listing as aligned text for people."""
    rows = [("NAME", "KIND", "PACKAGE", "VERSION")]
    rows += [
        (
            entry["name"] + (" (clash)" if entry["clash"] else ""),
            entry["kind"],
            entry["distribution"],
            entry["version"],
        )
        for entry in listing["plugins"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            continue
        entry = listing["plugins"][index - 1]
        if entry.get("batches"):
            lines.append("    takes batches: process_batch() (--processing-batch-size)")
        if entry.get("suffixes"):
            lines.append(f"    suffixes: {' '.join(entry['suffixes'])} (each also + .gz)")
        for option in entry["options"] or []:
            required = "required" if option["required"] else f"default {_shown_default(option)}"
            flag = f"--{entry['kind']}-option"
            text = f"    {flag} {option['name']}=<{option['type']}> ({required})"
            if option["help"]:
                text += f": {option['help']}"
            lines.append(text)
    lines.append("")
    lines.append("Plugin modules:")
    for module in listing["modules"]:
        hooks = ", ".join(module["hooks"]) or "no hooks"
        lines.append(
            f"  {module['name']} ({module['distribution']} {module['version']}): {hooks}".rstrip()
        )
    for failure in listing["failed"]:
        lines.append(
            f"Failed to load: {failure['name']} ({failure['distribution']} "
            f"{failure['version']}): {failure['error']}"
        )
    for problem in listing["problems"]:
        lines.append(f"Problem: {problem}")
    return "\n".join(lines)
