"""The built-in plugins, registered through the same hooks as third-party ones.

The classes are public (subclass them, or name them in ``module:ClassName``
form); the modules that hold them are not.  Each is imported on first use, so
that a run which never downloads over HTTP never imports requests or urllib3.
``watch_socket`` is for a blocking transport of a ``RequestsDownloader``
subclass: the sockets it notes are hung up at the attempt's ``--file-timeout``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._deadlines import watch_socket
    from ._local_executor import LocalExecutor
    from ._post_processors import DummyPostProcessor, JsonlPostProcessor
    from ._processors import ChecksumProcessor, DummyProcessor
    from ._requests_downloader import RequestsDownloader, Transport
    from ._save import SaveProcessor
    from ._simulated import SimulatedDownloader

#: Public name -> the private module that defines it.
_HOMES = {
    "ChecksumProcessor": "._processors",
    "DummyPostProcessor": "._post_processors",
    "DummyProcessor": "._processors",
    "JsonlPostProcessor": "._post_processors",
    "LocalExecutor": "._local_executor",
    "RequestsDownloader": "._requests_downloader",
    "SaveProcessor": "._save",
    "SimulatedDownloader": "._simulated",
    "Transport": "._requests_downloader",
    "watch_socket": "._deadlines",
}

__all__ = [
    "ChecksumProcessor",
    "DummyPostProcessor",
    "DummyProcessor",
    "JsonlPostProcessor",
    "LocalExecutor",
    "RequestsDownloader",
    "SaveProcessor",
    "SimulatedDownloader",
    "Transport",
    "watch_socket",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
