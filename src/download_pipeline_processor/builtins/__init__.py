"""The built-in plugins, registered through the same hooks as third-party ones.

The classes are public (subclass them, or name them in ``module:ClassName``
form); the modules that hold them are not.  Each is imported on first use, so
that a run which never downloads over HTTP never imports requests or urllib3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
