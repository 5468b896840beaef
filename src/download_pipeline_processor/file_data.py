"""The record that travels through every stage of the pipeline."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import error_text
from .redact import scrub_error

__all__ = ["STAGES", "DownloadRecord", "FileData", "StageError", "default_name_from_url"]


_KNOWN_KEYS = frozenset(("url", "id", "name"))

#: The stages a file passes through, in order.
STAGES = ("download", "process", "post_process")


@dataclass(frozen=True)
class StageError:
    """Why a file failed: the stage it failed in and the exception raised there."""

    stage: str
    error: BaseException

    @property
    def message(self) -> str:
        """The reason in words, one line (:func:`~.errors.error_text`): ``HTTP 404 Not Found``,
        ``ValueError: bad header``; what every report and message shows."""
        return error_text(self.error)

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"


def default_name_from_url(url: str) -> str:
    """The last segment of the URL's path without its final extension.

    This is the original tool's rule for a missing ``id`` or ``name``:
    ``https://host/audio/talk.mp3?x=1`` gives ``talk``.  A URL without a path
    segment falls back to its host name.
    """
    parts = urlsplit(url)
    segment = unquote(posixpath.basename(parts.path.rstrip("/")))
    stem = posixpath.splitext(segment)[0] if segment else ""
    return stem or segment or (parts.hostname or "")


@dataclass
class DownloadRecord:
    """What the download stage learnt about one file, for reports and the journal.

    The framework fills it in for every downloader: it counts ``attempts``
    and times them, takes ``http_status`` from the last answer (the body's
    ``BodyWriter``, or the status error ``http_rules.check_status`` raised),
    and ``sha256`` from the digest the ``BodyWriter`` keeps while the body
    streams.  Every field stays ``None`` (or 0) when nothing was downloaded
    (a simulated run, a file a processor said it did not need).
    """

    #: Download attempts made (the first one included).
    attempts: int = 0
    #: The HTTP status of the last answer, when there was one (a failed file's too).
    http_status: int | None = None
    #: Bytes of the complete body in the cache.
    size: int | None = None
    #: Hex SHA-256 of the complete body (every body written through a ``BodyWriter``).
    sha256: str | None = None
    #: Seconds from the first attempt's start to the complete file.
    elapsed: float | None = None


@dataclass
class FileData:
    """One entry of the input list and everything learnt about it on the way.

    The input's extra keys are kept in :attr:`additional_fields` and can also
    be read as attributes (``file_data.language``).  Reading an attribute that
    is neither a field nor an extra key raises :class:`AttributeError`, so a
    typo never turns into silent data.
    """

    url: str
    id: str = ""
    name: str = ""
    local_path: Path | None = None
    additional_fields: dict[str, Any] = field(default_factory=dict)
    error: StageError | None = None
    #: What the download stage learnt (attempts, HTTP status, size, digest, time).
    download: DownloadRecord = field(default_factory=DownloadRecord)
    #: The entry's 0-based position in the input (entries a journal skips
    #: counted), set when the run reads it; None for a record made otherwise.
    input_index: int | None = None

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            fallback = default_name_from_url(self.url)
            self.id = self.id or fallback
            self.name = self.name or fallback

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> FileData:
        """Build from one input entry; keys other than url, id and name are kept as extras."""
        extras = {k: v for k, v in entry.items() if k not in _KNOWN_KEYS}
        ident = entry.get("id")
        name = entry.get("name")
        return cls(
            entry["url"],
            "" if ident is None else str(ident),
            "" if name is None else str(name),
            None,
            extras,
        )

    def __getattr__(self, attribute: str) -> Any:
        # Only reached when normal lookup fails.  Guard the field itself so that
        # copy and pickle, which probe attributes before __dict__ is filled,
        # get an AttributeError instead of recursing.
        if attribute.startswith("__") or attribute == "additional_fields":
            raise AttributeError(attribute)
        extras = self.__dict__.get("additional_fields", {})
        try:
            return extras[attribute]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!s} has no field or extra input key {attribute!r}"
            ) from None

    @property
    def has_error(self) -> bool:
        """True once any stage has recorded a failure."""
        return self.error is not None

    def fail(self, stage: str, error: BaseException) -> None:
        """Record that ``stage`` failed with ``error``; the first failure wins.

        The error's message loses the secrets of :attr:`url` and the query
        string and userinfo of any URL it quotes (a library's text may quote a
        redirect's target) before it is kept: every report reads it from here.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        if self.error is None:
            self.error = StageError(stage, scrub_error(error, self.url))
