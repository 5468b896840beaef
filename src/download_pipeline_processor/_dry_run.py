"""What ``--dry-run`` shows: the run a plan would make, worked out without running it."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._cache import check_cache_root
from .options import declared_options
from .plan import PluginChoice, RunPlan
from .redact import REDACTED, scrub_urls

#: Hosts named one by one; the rest are counted.
SHOWN_HOSTS = 5


def _host_of(url: str) -> str:
    """``scheme://host[:port]``: what ``--max-per-host`` counts, without userinfo."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _plugin(choice: PluginChoice) -> dict[str, Any]:
    # A plugin option may hold a URL with a token in it: never shown whole;
    # one declared secret (credentials) is not shown at all.
    secret = {option.name for option in declared_options(choice.cls) or () if option.secret}
    options = {
        key: REDACTED
        if key in secret
        else scrub_urls(os.fspath(value) if isinstance(value, Path) else str(value))
        for key, value in choice.options.items()
    }
    return {"label": choice.label, "options": options}


def describe_dry_run(plan: RunPlan, files: str) -> dict[str, Any]:
    """The run ``plan`` would make: entries, hosts, plugins, workers and cache folder.

    Reads the plan's checked input once more (streamed) to count hosts, and
    looks at the cache root without making it: nothing is requested or written.
    """
    hosts: Counter[str] = Counter()
    entries = plan.checked_entries(None)
    for file_data in entries:
        hosts[_host_of(file_data.url)] += 1
    settings = plan.settings
    cache_root = settings.cache_root
    return {
        "files": files,
        # Standard input has no count before it is read; it is read whole by now.
        "entries": entries.taken if entries.count is None else entries.count,
        "hosts": dict(hosts.most_common()),
        "processor": _plugin(plan.processor),
        "post_processors": [_plugin(choice) for choice in plan.post_processors],
        "downloader": settings.downloader_name,
        "executor": _plugin(plan.executor),
        "download_workers": settings.download_workers,
        "processing_limit": settings.processing_limit,
        "processing_mode": settings.processing_mode,
        "max_retries": settings.max_retries,
        "cache_root": str(cache_root),
        "cache_root_exists": check_cache_root(cache_root),
        "journal": None if settings.journal is None else os.fspath(settings.journal),
    }


def _plugin_text(plugin: Mapping[str, Any]) -> str:
    options = ", ".join(f"{key}={value}" for key, value in plugin["options"].items())
    label: str = plugin["label"]
    return label + (f" ({options})" if options else "")


def format_dry_run(description: Mapping[str, Any]) -> str:
    """The description as lines for people."""
    hosts: dict[str, int] = description["hosts"]
    shown = [f"{host} ({count})" for host, count in list(hosts.items())[:SHOWN_HOSTS]]
    if len(hosts) > SHOWN_HOSTS:
        shown.append(f"and {len(hosts) - SHOWN_HOSTS} more")
    entries = description["entries"]
    workers = "threads" if description["processing_mode"] == "thread" else "worker processes"
    cache_state = "exists" if description["cache_root_exists"] else "would be made"
    lines = [
        f"Dry run: {description['files']} checked; nothing was requested or written.",
        f"  entries: {entries} file{'' if entries == 1 else 's'}",
        f"  hosts: {len(hosts)}" + (f": {', '.join(shown)}" if shown else ""),
        f"  {_plugin_text(description['processor'])}, {description['processing_limit']} {workers}",
        *(f"  {_plugin_text(plugin)}" for plugin in description["post_processors"]),
        f"  downloader {description['downloader']!r}, {description['download_workers']} workers,"
        f" {description['max_retries']} retries",
        f"  {_plugin_text(description['executor'])}",
        f"  cache folder: a private folder in {description['cache_root']} ({cache_state})",
    ]
    if description["journal"] is not None:
        lines.append(
            f"  journal: {description['journal']} (entries it holds as succeeded are skipped)"
        )
    return "\n".join(lines)
