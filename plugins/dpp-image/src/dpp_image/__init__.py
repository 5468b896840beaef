"""Image datasets for download-pipeline-processor: the ``resize`` processor and ``shards``.

Importing the package loads no image library, pyarrow or fsspec: they load
when a run builds the processor or the post-processor (``dpp_image.codec``
holds :func:`~dpp_image.codec.resize_image`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    OutputInUseError,
    ShardWriteError,
)
from .model import ResizedImage, ResizeSpec
from .processor import ResizeProcessor
from .shards import ShardsPostProcessor

__all__ = [
    "ImageDecodeError",
    "ImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "NotAnImageError",
    "OutputInUseError",
    "ResizeProcessor",
    "ResizeSpec",
    "ResizedImage",
    "ShardWriteError",
    "ShardsPostProcessor",
    "__version__",
]
