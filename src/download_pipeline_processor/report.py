"""One file's outcome as a plain, JSON-ready record with secrets removed."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from .file_data import FileData
from .redact import REDACTED, redact_url, scrub


def _json_default(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def input_fields(file_data: FileData) -> dict[str, Any]:
    """The entry's extra fields, the values of its request ``headers`` replaced.

    Header values are secrets (tokens, cookies): a report keeps only their names.
    """
    fields = dict(file_data.additional_fields)
    headers = fields.get("headers")
    if isinstance(headers, dict):
        fields["headers"] = dict.fromkeys(headers, REDACTED)
    return fields


def outcome_record(result: Any, file_data: FileData) -> dict[str, Any]:
    """One file's outcome: ``id``, ``name``, redacted ``url``, ``status``, ``error``, ``result``,
    then the entry's ``index`` and extra ``fields``, and the download's ``http_status``,
    ``attempts``, ``size``, ``sha256`` and ``elapsed`` seconds (None when unknown).
    """
    error = file_data.error
    download = file_data.download
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
        "index": file_data.input_index,
        "fields": input_fields(file_data),
        "http_status": download.http_status,
        "attempts": download.attempts,
        "size": download.size,
        "sha256": download.sha256,
        "elapsed": None if download.elapsed is None else round(download.elapsed, 6),
    }


# One encoder for the process: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json_default, separators=(",", ":"))


def to_json(value: Any) -> str:
    """Compact JSON; values JSON cannot hold (paths, sets, objects) become strings."""
    return _ENCODER.encode(value)
