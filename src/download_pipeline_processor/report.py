"""One file's outcome as a plain, JSON-ready record with secrets removed."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from .file_data import FileData
from .redact import REDACTED, redact_url, scrub
from .summary import outcome_status, reason_from_message

__all__ = ["FILES_LOGGER", "input_fields", "outcome_record", "to_json"]


#: The logger of one line per file (the ``dummy`` post-processor's).  The CLI
#: leaves its INFO lines out of the terminal while the progress view shows;
#: warnings (failed files) and ``--log-file`` keep them.
FILES_LOGGER = "download_pipeline_processor.files"


def _json_default(value: Any) -> Any:
    # A result may say what its report holds (an image's metadata, not its
    # bytes): the jsonl line and the journal then stay small.
    report_form = getattr(type(value), "report_form", None)
    if callable(report_form):
        return report_form(value)
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

    ``status`` is ``succeeded``, ``failed`` or ``interrupted``
    (:func:`~.summary.outcome_status`); ``error`` holds the ``stage``, the
    ``message`` in words (``HTTP 404 Not Found``, ``ValueError: bad header``)
    and the ``reason`` the summary groups it by (``HTTP 404``).  Values are
    whole, however long.
    """
    error = file_data.error
    download = file_data.download
    message = None if error is None else scrub(error.message, file_data.url)
    return {
        "id": file_data.id,
        "name": file_data.name,
        "url": redact_url(file_data.url),
        "status": outcome_status(file_data),
        "error": (
            {"stage": error.stage, "message": message, "reason": reason_from_message(message)}
            if error is not None and message is not None
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
    """Compact JSON; values JSON cannot hold (paths, sets, objects) become strings.

    An object whose class defines ``report_form(self)`` is written as what
    that returns (JSON-ready data): a result that carries bulk bytes keeps
    them out of reports and the journal that way.
    """
    return _ENCODER.encode(value)
