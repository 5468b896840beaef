"""Registers the built-in download backends."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from ._requests_downloader import RequestsDownloader
from ._simulated import SimulatedDownloader


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``requests`` (the default) and ``simulated`` (simulated runs)."""
    register("requests", RequestsDownloader)
    register("simulated", SimulatedDownloader)
