"""What the command-line tests share: writing an input list, a checksum run's arguments.

A plain module on ``sys.path`` (pyproject's ``pythonpath``): test modules
cannot import each other in importlib mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_list(path: Path, entries: Any) -> Path:
    """``entries`` as a JSON list at ``path``."""
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def checksum_report_args(listing: Path, report: Path, cache: Path, *extra: str) -> list[str]:
    """Arguments for a checksum run that writes a jsonl report and uses its own cache."""
    return [
        "--files",
        str(listing),
        "--processor",
        "checksum",
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={report}",
        "--download-cache",
        str(cache),
        *extra,
    ]
