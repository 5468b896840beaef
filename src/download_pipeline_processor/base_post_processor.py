"""The class every post-processor derives from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .file_data import FileData
    from .options import Option


class BasePostProcessor:
    """Receives every file's outcome, successful or failed, one at a time.

    One instance serves the whole run and is only ever called from a single
    thread, so it needs no locking.  Failed files arrive with ``result`` None
    and ``file_data.error`` set.  The seed's one-argument form
    ``post_process(self, result)`` is still accepted.
    """

    #: The keyword arguments the constructor accepts; None means undeclared.
    options: ClassVar[Sequence[Option] | None] = None

    def post_process(self, result: Any, file_data: FileData) -> None:
        """Handle one file's result (or failure)."""
        raise NotImplementedError(f"{type(self).__name__} must implement post_process()")

    def close(self) -> None:
        """Flush and release resources at the end of the run; the default does nothing."""
