"""Registers the built-in download backends."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .http import RequestsDownloader
from .simulated import SimulatedDownloader


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``requests`` (the default) and ``simulated`` (simulated runs)."""
    register("requests", RequestsDownloader)
    register("simulated", SimulatedDownloader)
