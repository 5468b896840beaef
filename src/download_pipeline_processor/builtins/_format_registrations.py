"""Registers the built-in input formats: JSON, JSON Lines, CSV and URL lists."""

from __future__ import annotations

from typing import Callable

from .._input_formats import BUILTIN_FORMATS
from ..hookspecs import hookimpl


@hookimpl
def register_input_formats(register: Callable[..., None]) -> None:
    """Register ``json``, ``jsonl``, ``csv`` and ``urls`` with the file suffixes they claim."""
    for builtin in BUILTIN_FORMATS:
        register(builtin.name, builtin.read, suffixes=builtin.suffixes, position=builtin.position)
