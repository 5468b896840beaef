"""Why an image was not turned into a sample: one exception class per reason, one-line messages.

A run's summary groups failures by the exception's class name, so each
reason a user may want to count has its own class.  The ``shards``
post-processor's own errors follow: a shard that could not be written, an
output another run writes to.
"""

from __future__ import annotations

__all__ = [
    "ImageDecodeError",
    "ImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "NotAnImageError",
    "OutputInUseError",
    "ShardWriteError",
]


class ImageError(Exception):
    """Base class: the file could not be made into a resized image."""


class NotAnImageError(ImageError):
    """The file is not in an image format the processor reads."""


class ImageDecodeError(ImageError):
    """The file looks like an image but its pixels could not be decoded (truncated, corrupt)."""


class ImageTooSmallError(ImageError):
    """A side of the image is shorter than ``min_size`` pixels."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than Pillow's decompression-bomb limit allows."""


class ShardWriteError(Exception):
    """A shard's file could not be written (a full disk, a quota): the shard was dropped."""


class OutputInUseError(Exception):
    """Another run, alive, writes shards to the same output: one run per output."""
