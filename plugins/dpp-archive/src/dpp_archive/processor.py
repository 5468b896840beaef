"""The ``extract`` processor: unpack each downloaded zip or tar into its own folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from download_pipeline_processor import BaseProcessor, FileData, Option
from download_pipeline_processor.paths import safe_filename

from .errors import ArchiveError, DestinationExistsError
from .publish import partial_folder, publish
from .readers import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, ExtractionLimits, extract_archive

__all__ = ["ExtractProcessor"]


class ExtractProcessor(BaseProcessor):
    """Extracts each file into ``dest/<safe name>/`` and returns the member paths.

    The folder name is :func:`~download_pipeline_processor.paths.safe_filename`
    of the file's ``name``.  Extraction happens in a hidden folder inside
    ``dest`` that is renamed into place only once every member was written;
    any refused member or exceeded limit fails the file and removes it.
    """

    options: ClassVar[tuple[Option, ...]] = (
        Option(
            "dest",
            type=Path,
            required=True,
            help="folder to extract into (created); each archive goes to DEST/<safe name>/",
        ),
        Option(
            "max_bytes",
            type=int,
            default=DEFAULT_MAX_BYTES,
            help="most bytes one archive may write in total, counted as written",
        ),
        Option(
            "max_members",
            type=int,
            default=DEFAULT_MAX_MEMBERS,
            help="most members (files, folders, links) one archive may hold",
        ),
        Option(
            "overwrite",
            type=bool,
            default=False,
            help="replace an existing DEST/<safe name>/ instead of failing the file",
        ),
    )

    def __init__(
        self,
        dest: Path | str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
        overwrite: bool = False,
    ) -> None:
        if int(max_bytes) < 0:
            raise ValueError(f"max_bytes must be 0 or more, not {max_bytes}")
        if int(max_members) < 1:
            raise ValueError(f"max_members must be 1 or more, not {max_members}")
        self.dest = Path(dest).expanduser().absolute()
        self.limits = ExtractionLimits(max_bytes=int(max_bytes), max_members=int(max_members))
        self.overwrite = bool(overwrite)
        self.dest.mkdir(parents=True, exist_ok=True)

    def target_folder(self, file_data: FileData) -> Path:
        """Where ``file_data`` is extracted: ``dest/<safe name>``."""
        return self.dest / safe_filename(file_data.name, fallback="archive")

    def process(self, file_data: FileData) -> list[str]:
        """Extract the downloaded file; return its members as sorted relative posix paths."""
        if file_data.local_path is None:
            raise ArchiveError("the file was not downloaded")
        final = self.target_folder(file_data)
        if not self.overwrite and os.path.lexists(final):
            # Checked again when publishing; failing early spares the extraction.
            raise DestinationExistsError(final)
        with partial_folder(self.dest, final.name) as partial:
            members = extract_archive(Path(file_data.local_path), partial, self.limits)
            publish(partial, final, overwrite=self.overwrite)
        return members
