"""Writing a response body to its cache file: os-level calls, no buffer copies.

A file object would copy every chunk into its own buffer and add syscalls;
each syscall also hands the GIL to the other workers and back.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._cache import create_cache_file


def open_destination(destination: Path) -> int:
    """Create ``destination`` anew for writing and return its descriptor.

    Never through a symbolic link, never into an existing file: an earlier
    attempt's ``.part`` is replaced by a new file (see ``create_cache_file``).
    """
    return create_cache_file(destination)


def write_all(descriptor: int, data: memoryview) -> None:
    """Write every byte of ``data``: ``os.write`` may take fewer than it is given."""
    while data:
        data = data[os.write(descriptor, data) :]
