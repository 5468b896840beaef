"""Writing a response body to its cache file: os-level calls, no buffer copies.

A file object would copy every chunk into its own buffer and add syscalls;
each syscall also hands the GIL to the other workers and back.
"""

from __future__ import annotations

import os
from pathlib import Path

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def open_destination(destination: Path) -> int:
    """Create or truncate ``destination`` for writing and return its descriptor."""
    return os.open(destination, _WRITE_FLAGS, 0o644)


def write_all(descriptor: int, data: memoryview) -> None:
    """Write every byte of ``data``: ``os.write`` may take fewer than it is given."""
    while data:
        data = data[os.write(descriptor, data) :]
