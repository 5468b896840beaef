"""Image datasets for download-pipeline-processor: the ``resize`` processor and ``shards``."""

from __future__ import annotations

__version__ = "0.1.0"

from .codec import ResizedImage, ResizeSpec, resize_image
from .errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from .processor import ResizeProcessor
from .shards import ShardsPostProcessor

__all__ = [
    "ImageDecodeError",
    "ImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "NotAnImageError",
    "ResizeProcessor",
    "ResizeSpec",
    "ResizedImage",
    "ShardsPostProcessor",
    "__version__",
    "resize_image",
]
