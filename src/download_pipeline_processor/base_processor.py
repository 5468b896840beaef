"""The class every processor derives from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .file_data import FileData
    from .options import Option


class BaseProcessor:
    """Turns one downloaded file into a result.

    The pipeline builds one instance per processing worker, once, passing the
    ``--processor-option`` values as keyword arguments, and calls
    :meth:`process` for each file that worker takes.  ``file_data.local_path``
    is the complete downloaded file; it is deleted after :meth:`process`
    returns, so move it elsewhere (and it will be left alone) to keep it.

    Raise any exception to fail the file in the ``process`` stage.
    """

    #: The keyword arguments the constructor accepts; None means undeclared.
    options: ClassVar[Sequence[Option] | None] = None

    def process(self, file_data: FileData) -> Any:
        """Process one downloaded file and return a result for the post-processor."""
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def close(self) -> None:
        """Release resources when the worker stops; the default does nothing."""
