"""Decode, orient, resize and encode one image: the ``resize`` processor's work, without I/O.

JPEG (most of a web crawl) takes the fast path: simplejpeg (libjpeg-turbo)
decodes it at the smallest DCT scale that still covers the target size, so a
1280x960 photo bound for 256 pixels is decoded at 320x240, never at full
size.  Everything else (PNG, WebP, GIF's first frame, a JPEG simplejpeg
refuses, such as CMYK) goes through Pillow.  Resizing, padding and cropping
are Pillow's; every step releases the GIL, so the processing threads run on
all cores.  ``benchmarks/image_codecs.py`` measured the choices.

The meanings of the modes are img2dataset's, so its users' habits carry
over: with ``resize_only_if_bigger`` false (its default too) a small image
is scaled up to the size, as img2dataset does; padding and transparency
become white, as there.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, UnidentifiedImageError

from .errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
)
from .model import ENCODE_FORMATS, MODES, ResizedImage, ResizeSpec

__all__ = [
    "ENCODE_FORMATS",
    "MODES",
    "ResizeSpec",
    "ResizedImage",
    "resize_image",
    "target_size",
]

#: What ``Image.open`` may recognise; anything else is "not an image".
READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: MPO is how Pillow names the JPEGs many phone cameras write (opened as JPEG).
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
#: EXIF tag 0x0112: how the stored pixels must be turned to stand upright.
_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TRANSPOSE_FOR = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE = (255, 255, 255)


def target_size(width: int, height: int, spec: ResizeSpec) -> tuple[int, int] | None:
    """The size the (upright) image is scaled to before padding or cropping; None: no scaling.

    As img2dataset: ``keep_ratio`` and ``center_crop`` bring the shorter side
    to ``size``, ``border`` and ``keep_ratio_largest`` the longer one; with
    ``resize_only_if_bigger`` an image already within the size is left alone.
    """
    if spec.mode == "no":
        return None
    side = min(width, height) if spec.mode in ("keep_ratio", "center_crop") else max(width, height)
    if spec.resize_only_if_bigger and side <= spec.size:
        return None
    scale = spec.size / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(data: bytes, spec: ResizeSpec, sha256: str | None = None) -> ResizedImage:
    """Decode ``data``, turn it upright, resize it by ``spec`` and encode it.

    ``sha256`` is the file's digest when the download already computed it.
    Raises an :class:`~dpp_image.errors.ImageError` subclass naming the reason.
    """
    digest = sha256 or hashlib.sha256(data).hexdigest()
    probe = _open(data)
    orientation = _orientation(probe)
    stored_width, stored_height = probe.size
    width, height = stored_width, stored_height
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    if min(width, height) < spec.min_size:
        raise ImageTooSmallError(
            f"image too small: {width}x{height} pixels, min_size is {spec.min_size}"
        )
    target = target_size(width, height, spec)
    try:
        image = _decode(data, probe, orientation, target)
        image = _fit(image, target, spec)
        encoded = _encode(image, spec)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"image could not be decoded: {exc}") from exc
    return ResizedImage(encoded, spec.format, image.width, image.height, width, height, digest)


def _open(data: bytes) -> Image.Image:
    """Pillow's lazy open: reads the header (format, size, EXIF) and no pixels.

    The pixel count is checked here, on the header's size, before any pixel
    is decoded.  Pillow's own check warns between its limit and twice it;
    turning that warning into an error per call would need
    ``warnings.catch_warnings``, whose state is the whole process's and not
    safe from the processing threads, so the limit is compared here instead.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=READ_FORMATS)
    except UnidentifiedImageError:
        raise NotAnImageError("not an image: no JPEG, PNG, WebP, GIF, BMP or TIFF header") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Over twice the limit Pillow refuses by itself (the warning is an
        # error only where the embedding program made warnings errors).
        raise ImageTooLargeError(f"image too large: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"image could not be decoded: {exc}") from exc
    _check_pixels(*image.size)
    return image


def _check_pixels(width: int, height: int) -> None:
    """Refuse an image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"image too large: {width}x{height} is {width * height} pixels,"
            f" over the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS)"
        )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to lose the image
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE_FOR else 1


def _decode(
    data: bytes, probe: Image.Image, orientation: int, target: tuple[int, int] | None
) -> Image.Image:
    """The upright image in RGB, decoded at a reduced scale no smaller than ``target``."""
    stored_target = target
    if target is not None and orientation in _TRANSPOSED_ORIENTATIONS:
        stored_target = (target[1], target[0])
    image: Image.Image | None = None
    if probe.format in _JPEG_FORMATS:
        image = _decode_jpeg(data, stored_target)
    if image is None:
        image = _decode_with_pillow(probe, stored_target)
    transpose = _TRANSPOSE_FOR.get(orientation)
    return image if transpose is None else image.transpose(transpose)


def _decode_jpeg(data: bytes, stored_target: tuple[int, int] | None) -> Image.Image | None:
    """simplejpeg's scaled decode; None when it refuses the file (CMYK, progressive oddities)."""
    import simplejpeg

    minimum = stored_target or (0, 0)
    try:
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            fastdct=False,
            fastupsample=False,
            min_width=minimum[0],
            min_height=minimum[1],
        )
    except ValueError:
        return None
    return Image.fromarray(pixels)


def _decode_with_pillow(probe: Image.Image, stored_target: tuple[int, int] | None) -> Image.Image:
    if stored_target is not None and probe.format in _JPEG_FORMATS:
        probe.draft("RGB", stored_target)
    probe.seek(0)  # an animation's first frame
    if probe.mode in ("RGBA", "LA", "PA") or "transparency" in probe.info:
        rgba = probe.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return probe.convert("RGB")


def _fit(image: Image.Image, target: tuple[int, int] | None, spec: ResizeSpec) -> Image.Image:
    """Scale to ``target``, then pad (``border``) or crop (``center_crop``) to a square."""
    if target is None:
        return image
    if image.size != target:
        shrinking = target[0] <= image.width and target[1] <= image.height
        # img2dataset: area averaging down, Lanczos up.  Pillow's BOX filter
        # is area averaging.
        if shrinking:
            image = image.resize(target, Image.Resampling.BOX)
        else:
            image = image.resize(target, Image.Resampling.LANCZOS)
    size = spec.size
    if spec.mode == "border" and image.size != (size, size):
        canvas = Image.new("RGB", (size, size), _WHITE)
        canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
        return canvas
    if spec.mode == "center_crop" and image.size != (size, size):
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return image.crop((left, top, left + size, top + size))
    return image


def _encode(image: Image.Image, spec: ResizeSpec) -> bytes:
    out = io.BytesIO()
    if spec.format == "png":
        image.save(out, "PNG", compress_level=spec.quality)
    else:
        image.save(out, ENCODE_FORMATS[spec.format], quality=spec.quality)
    return out.getvalue()
