"""The class every processor derives from."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .file_data import FileData
    from .options import Option


__all__ = ["DOWNLOAD", "BaseProcessor", "Download", "checks_before_download"]


class Download(enum.Enum):
    """The type of :data:`DOWNLOAD`."""

    DOWNLOAD = "download"

    def __repr__(self) -> str:
        return "DOWNLOAD"


#: What :meth:`BaseProcessor.result_without_download` returns for "download this file".
DOWNLOAD = Download.DOWNLOAD


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

    def result_without_download(self, file_data: FileData) -> Any:
        """Before a file is downloaded: :data:`DOWNLOAD`, or its result without downloading it.

        A result other than :data:`DOWNLOAD` goes to the post-processors as the
        file's processing result, succeeded, and the file is never requested
        (``file_data.local_path`` stays None, ``file_data.download.attempts``
        0); an exception fails the file at stage ``process``, also without a
        download.  The default downloads every file.

        Only a class that overrides this method is asked, and not through its
        processing instances: the pipeline builds one more instance, with the
        same options, in the main process (in process mode too), calls this
        method on it from the download threads, one call at a time, and
        closes it at the end of the run.  Keep it quick (a look at the disk, a
        database lookup): downloads wait for it.
        """
        return DOWNLOAD

    def close(self) -> None:
        """Release resources when the worker stops; the default does nothing."""


def checks_before_download(processor_class: type) -> bool:
    """True when ``processor_class`` overrides :meth:`BaseProcessor.result_without_download`."""
    method = getattr(processor_class, "result_without_download", None)
    return method is not None and method is not BaseProcessor.result_without_download
