"""The ``resize`` processor: each downloaded image decoded, turned upright, resized, re-encoded."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from download_pipeline_processor import BaseProcessor, FileData, Option

from .model import ENCODE_FORMATS, MODES, ResizedImage, ResizeSpec

__all__ = ["ResizeProcessor"]


class ResizeProcessor(BaseProcessor):
    """Returns a :class:`~dpp_image.codec.ResizedImage` per file; img2dataset's modes.

    A file that is not an image, or has a side under ``min_size`` pixels,
    fails at stage ``process`` with that reason.
    """

    options: ClassVar[tuple[Option, ...]] = (
        Option("size", type=int, default=256, help="target size in pixels"),
        Option(
            "mode",
            default="border",
            help=f"img2dataset's resize mode: {', '.join(MODES)}",
        ),
        Option("format", default="jpg", help=f"output format: {', '.join(ENCODE_FORMATS)}"),
        Option(
            "quality",
            type=int,
            default=None,
            help="jpg/webp quality 0-100 (default 95); png: compression level 0-9 (default 6)",
        ),
        Option(
            "min_size",
            type=int,
            default=0,
            help="fail images with a side shorter than this many pixels",
        ),
        Option(
            "resize_only_if_bigger",
            type=bool,
            default=False,
            help="leave images already within size as they are (never scale up)",
        ),
    )

    def __init__(
        self,
        *,
        size: int = 256,
        mode: str = "border",
        format: str = "jpg",
        quality: int | None = None,
        min_size: int = 0,
        resize_only_if_bigger: bool = False,
    ) -> None:
        if quality is None:
            quality = 6 if format == "png" else 95
        self.spec = ResizeSpec(size, mode, format, quality, min_size, resize_only_if_bigger)

    def process(self, file_data: FileData) -> ResizedImage:
        """Read the downloaded file and make it into the dataset's image."""
        if file_data.local_path is None:
            raise ValueError("the file was not downloaded")
        from .codec import resize_image  # the image libraries load when first used

        data = Path(file_data.local_path).read_bytes()
        return resize_image(data, self.spec, file_data.download.sha256)
