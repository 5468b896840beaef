"""What the ``resize`` processor is asked for and what it returns: plain data, no codec.

Kept apart from the codec so that registering the plugins (at every start
of the command) imports no image library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ENCODE_FORMATS", "MODES", "SUCCESS", "ResizeSpec", "ResizedImage"]

#: The resize modes, img2dataset's names.
MODES = ("border", "keep_ratio", "keep_ratio_largest", "center_crop", "no")
#: Output formats: the file extension written in a shard, and Pillow's name for it.
ENCODE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
#: img2dataset's ``status`` of a sample in the tar.
SUCCESS = "success"


@dataclass(frozen=True)
class ResizeSpec:
    """What to make of every image: the processor's options, checked."""

    size: int = 256
    mode: str = "border"
    format: str = "jpg"
    #: JPEG and WebP quality (0-100), or PNG's zlib compression level (0-9).
    quality: int = 95
    min_size: int = 0
    resize_only_if_bigger: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.format not in ENCODE_FORMATS:
            choices = ", ".join(ENCODE_FORMATS)
            raise ValueError(f"format must be one of {choices}, not {self.format!r}")
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be 0 or more, got {self.min_size}")
        top = 9 if self.format == "png" else 100
        if not 0 <= self.quality <= top:
            what = "compression level" if self.format == "png" else "quality"
            raise ValueError(f"{what} for {self.format} must be 0 to {top}, got {self.quality}")


@dataclass(frozen=True)
class ResizedImage:
    """One encoded image and what a dataset records about it.

    Its report form (the ``jsonl`` line, the journal) leaves the bytes out:
    a journal must not grow by the dataset's size.
    """

    data: bytes
    format: str
    width: int
    height: int
    original_width: int
    original_height: int
    #: sha256 of the file as downloaded, in hex.
    sha256: str

    def report_form(self) -> dict[str, Any]:
        """Every field but the image bytes, whose length is given as ``bytes``."""
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "original_width": self.original_width,
            "original_height": self.original_height,
            "sha256": self.sha256,
            "bytes": len(self.data),
        }
