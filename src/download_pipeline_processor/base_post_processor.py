"""The class every post-processor derives from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .file_data import FileData
    from .options import Option


__all__ = ["BasePostProcessor"]


class BasePostProcessor:
    """Receives every file's outcome, successful or failed, one at a time.

    One instance serves the whole run and is only ever called from a single
    thread, so it needs no locking.  Failed files arrive with ``result`` None
    and ``file_data.error`` set.  The seed's one-argument form
    ``post_process(self, result)`` is still accepted.
    """

    #: The keyword arguments the constructor accepts; None means undeclared.
    options: ClassVar[Sequence[Option] | None] = None

    #: True for a post-processor that keeps files in a buffer it publishes later
    #: (a shard, a batched upload): the journal records such a file only once
    #: take_published() has returned it.
    holds_results: ClassVar[bool] = False

    def post_process(self, result: Any, file_data: FileData) -> None:
        """Handle one file's result (or failure)."""
        raise NotImplementedError(f"{type(self).__name__} must implement post_process()")

    def take_published(self) -> list[FileData]:
        """The files (FileData objects it was given) whose output became durable since last asked.

        Called only when :attr:`holds_results` is true: after each
        :meth:`post_process` call and after :meth:`close`.  A file is durable
        once a kill -9 (or power loss, if the holder syncs) can no longer lose
        its output.  Each file is returned once; the default returns none.
        """
        return []

    def close(self) -> None:
        """Flush and release resources at the end of the run; the default does nothing."""
