"""Registers the built-in download backends, and the executor that runs them here.

The local executor registers from this module so that the built-in plugin
sources stay the same three: it is the built-in way downloads and processing
run, on this machine.
"""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from ._local_executor import LocalExecutor
from ._requests_downloader import RequestsDownloader
from ._simulated import SimulatedDownloader


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``requests`` (the default) and ``simulated`` (simulated runs)."""
    register("requests", RequestsDownloader)
    register("simulated", SimulatedDownloader)


@hookimpl
def register_executors(register: Register) -> None:
    """Register ``local`` (the default): download and process on this machine."""
    register("local", LocalExecutor)
