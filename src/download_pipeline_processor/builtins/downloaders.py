"""Registers the built-in download backends."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .fast import FastDownloader
from .http import RequestsDownloader
from .simulated import SimulatedDownloader


@hookimpl
def register_downloaders(register: Register) -> None:
    """Register ``requests`` (the default), ``fast``, and ``simulated`` (simulated runs)."""
    register("requests", RequestsDownloader)
    register("fast", FastDownloader)
    register("simulated", SimulatedDownloader)
