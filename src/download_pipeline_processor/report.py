"""One file's outcome as a plain, JSON-ready record with secrets removed."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from .file_data import FileData
from .redact import redact_url, scrub

#: The logger of one line per file (the ``dummy`` post-processor's).  The CLI
#: leaves its INFO lines out of the terminal while the progress view shows;
#: warnings (failed files) and ``--log-file`` keep them.
FILES_LOGGER = "download_pipeline_processor.files"


def _json_default(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def outcome_record(result: Any, file_data: FileData) -> dict[str, Any]:
    """``id``, ``name``, redacted ``url``, ``status``, ``error`` and ``result``."""
    error = file_data.error
    return {
        "id": file_data.id,
        "name": file_data.name,
        "url": redact_url(file_data.url),
        "status": "failed" if error else "ok",
        "error": (
            {"stage": error.stage, "message": scrub(error.message, file_data.url)}
            if error
            else None
        ),
        "result": result,
    }


# One encoder for the process: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json_default, separators=(",", ":"))


def to_json(value: Any) -> str:
    """Compact JSON; values JSON cannot hold (paths, sets, objects) become strings."""
    return _ENCODER.encode(value)
