"""resize_image: img2dataset's modes, EXIF orientation, every input format, the failures."""

from __future__ import annotations

import io
import sys
import warnings
from typing import Any

import pytest
from PIL import Image

from dpp_image import (
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    ResizedImage,
    ResizeSpec,
)
from dpp_image.codec import resize_image
from dpp_image.model import MODES


def decoded(result: ResizedImage) -> Image.Image:
    """The encoded bytes opened again, in RGB."""
    return Image.open(io.BytesIO(result.data)).convert("RGB")


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], slack: int = 40) -> bool:
    """True when ``pixel`` is ``colour`` give or take JPEG's error."""
    return all(abs(a - b) <= slack for a, b in zip(pixel, colour))


# (mode, source size, expected size): img2dataset's meaning of each mode.
MODE_SIZES = [
    ("border", (640, 480), (256, 256)),
    ("border", (300, 500), (256, 256)),
    ("keep_ratio", (640, 480), (341, 256)),
    ("keep_ratio", (300, 500), (256, 427)),
    ("keep_ratio_largest", (640, 480), (256, 192)),
    ("keep_ratio_largest", (300, 500), (154, 256)),
    ("center_crop", (640, 480), (256, 256)),
    ("center_crop", (300, 500), (256, 256)),
    ("no", (640, 480), (640, 480)),
    # Smaller than the size: scaled up, as img2dataset does by default.
    ("keep_ratio", (120, 90), (341, 256)),
    ("border", (120, 90), (256, 256)),
]


class TestModes:
    @pytest.mark.parametrize(("mode", "source", "expected"), MODE_SIZES)
    def test_output_size(
        self, mode: str, source: tuple[int, int], expected: tuple[int, int]
    ) -> None:
        """Each mode gives img2dataset's output size, stated in the result and in the bytes."""
        data = io.BytesIO()
        Image.effect_noise(source, 30).convert("RGB").save(data, "JPEG")
        result = resize_image(data.getvalue(), ResizeSpec(mode=mode))
        assert (result.width, result.height) == expected
        assert decoded(result).size == expected
        assert (result.original_width, result.original_height) == source

    def test_all_modes_covered(self) -> None:
        """The size table checks every mode there is."""
        assert {mode for mode, _, _ in MODE_SIZES} == set(MODES)

    def test_resize_only_if_bigger_leaves_small_images(self, images: dict[str, bytes]) -> None:
        """With resize_only_if_bigger a small image keeps its size and gets no border."""
        spec = ResizeSpec(mode="border", resize_only_if_bigger=True)
        result = resize_image(images["animated.gif"], spec)
        assert (result.width, result.height) == (120, 90)

    def test_border_pads_with_white(self, images: dict[str, bytes]) -> None:
        """border centres the image on a white square, as img2dataset pads."""
        result = resize_image(images["landscape.jpg"], ResizeSpec(mode="border"))
        image = decoded(result)
        assert near(image.getpixel((128, 2)), (255, 255, 255))
        assert near(image.getpixel((128, 253)), (255, 255, 255))

    def test_center_crop_keeps_the_middle(self, images: dict[str, bytes]) -> None:
        """center_crop of a left-red, right-blue portrait keeps both halves, centred."""
        result = resize_image(images["portrait.jpg"], ResizeSpec(mode="center_crop", size=100))
        image = decoded(result)
        assert near(image.getpixel((10, 50)), (255, 0, 0))
        assert near(image.getpixel((90, 50)), (0, 0, 255))


class TestOrientation:
    def test_exif_rotation_applied(self, images: dict[str, bytes]) -> None:
        """A JPEG stored sideways with EXIF orientation 6 comes out upright."""
        result = resize_image(images["rotated.jpg"], ResizeSpec(mode="keep_ratio_largest"))
        assert (result.original_width, result.original_height) == (200, 400)
        assert (result.width, result.height) == (128, 256)
        image = decoded(result)
        # The stored left (red) half is the upright image's top.
        assert near(image.getpixel((64, 30)), (255, 0, 0))
        assert near(image.getpixel((64, 226)), (0, 0, 255))


class TestFormats:
    def test_png_alpha_on_white(self, images: dict[str, bytes]) -> None:
        """A PNG's transparent pixels become white, as img2dataset mattes them."""
        result = resize_image(images["alpha.png"], ResizeSpec(mode="keep_ratio_largest"))
        image = decoded(result)
        assert near(image.getpixel((30, 80)), (0, 255, 0))
        assert near(image.getpixel((220, 80)), (255, 255, 255))

    def test_webp_input(self, images: dict[str, bytes]) -> None:
        """A WebP is decoded and resized."""
        result = resize_image(images["picture.webp"], ResizeSpec(mode="keep_ratio_largest"))
        assert (result.width, result.height) == (256, 192)
        assert near(decoded(result).getpixel((20, 96)), (255, 0, 0))

    def test_gif_first_frame(self, images: dict[str, bytes]) -> None:
        """An animated GIF gives its first frame."""
        result = resize_image(images["animated.gif"], ResizeSpec(mode="keep_ratio"))
        assert (result.width, result.height) == (341, 256)
        assert near(decoded(result).getpixel((170, 128)), (255, 0, 0))

    def test_cmyk_jpeg_through_pillow(self) -> None:
        """A CMYK JPEG, which libjpeg-turbo will not turn into RGB, keeps its colours."""
        data = io.BytesIO()
        Image.new("CMYK", (500, 300), (0, 255, 255, 0)).save(data, "JPEG")
        result = resize_image(data.getvalue(), ResizeSpec())
        assert (result.width, result.height) == (256, 256)
        assert near(decoded(result).getpixel((128, 128)), (255, 0, 0))

    @pytest.mark.parametrize(("fmt", "pillow_format"), [("png", "PNG"), ("webp", "WEBP")])
    def test_output_formats(self, images: dict[str, bytes], fmt: str, pillow_format: str) -> None:
        """format=png and format=webp write those formats."""
        quality = 6 if fmt == "png" else 80
        result = resize_image(images["landscape.jpg"], ResizeSpec(format=fmt, quality=quality))
        assert result.format == fmt
        assert Image.open(io.BytesIO(result.data)).format == pillow_format

    def test_report_form_has_no_bytes(self, images: dict[str, bytes]) -> None:
        """The result's report form holds sizes and the original's sha256, not the image."""
        import hashlib

        result = resize_image(images["landscape.jpg"], ResizeSpec())
        form = result.report_form()
        assert form["sha256"] == hashlib.sha256(images["landscape.jpg"]).hexdigest()
        assert form["bytes"] == len(result.data)
        assert not any(isinstance(value, bytes) for value in form.values())


class TestFailures:
    def test_not_an_image(self, images: dict[str, bytes]) -> None:
        """Text is refused in words as not an image."""
        with pytest.raises(NotAnImageError, match="not an image"):
            resize_image(images["notes.txt"], ResizeSpec())

    def test_too_small(self, images: dict[str, bytes]) -> None:
        """An image with a side under min_size is refused, naming both."""
        with pytest.raises(ImageTooSmallError, match=r"image too small: 24x16 .* min_size is 20"):
            resize_image(images["tiny.jpg"], ResizeSpec(min_size=20))

    def test_truncated_jpeg(self, images: dict[str, bytes]) -> None:
        """A JPEG cut in half is a decode error, not a crash."""
        data = images["large.jpg"]
        with pytest.raises(ImageDecodeError, match="could not be decoded"):
            resize_image(data[: len(data) // 2], ResizeSpec())

    @pytest.mark.parametrize(
        "options",
        [{"mode": "stretch"}, {"format": "gif"}, {"size": 0}, {"format": "png", "quality": 95}],
    )
    def test_bad_spec(self, options: dict[str, object]) -> None:
        """An unknown mode or format, a zero size, a PNG level above 9 are refused."""
        with pytest.raises(ValueError, match="must be"):
            ResizeSpec(**options)  # type: ignore[arg-type]


# Pillow warns between its limit and twice it; these tests go there on purpose.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
class TestPixelLimit:
    def test_over_the_limit_fails_in_words(
        self, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An image over MAX_IMAGE_PIXELS but under Pillow's own refusal fails naming its size."""
        # 640x480 = 307,200 pixels: over this limit, under twice it, where
        # Pillow itself only warns.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
        with pytest.raises(
            ImageTooLargeError, match=r"640x480 is 307200 pixels, over the limit of 200000"
        ):
            resize_image(images["landscape.jpg"], ResizeSpec())

    def test_no_limit_when_none(
        self, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MAX_IMAGE_PIXELS set to None lifts the limit, as in Pillow."""
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        assert resize_image(images["large.jpg"], ResizeSpec()).original_width == 1280

    def test_warning_filters_untouched(
        self, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """resize_image never enters warnings.catch_warnings, process-wide state the threads share.

        The race it would cause (one thread restoring the filters another
        changed) cannot be made to happen on demand, so the test wraps
        catch_warnings to note the calls made from the plugin's code.
        """
        original = warnings.catch_warnings
        callers: list[str] = []

        def watched(*args: Any, **kwargs: Any) -> Any:
            caller = str(sys._getframe(1).f_globals.get("__name__"))
            if caller.startswith("dpp_image"):
                callers.append(caller)
            return original(*args, **kwargs)

        monkeypatch.setattr(warnings, "catch_warnings", watched)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
        with pytest.raises(ImageTooLargeError):
            resize_image(images["landscape.jpg"], ResizeSpec())
        assert resize_image(images["tiny.jpg"], ResizeSpec()).width == 256
        assert callers == []

    def test_threads_leave_the_filters_as_they_were(self, images: dict[str, bytes]) -> None:
        """Many threads resizing at once leave the process's warning filters unchanged."""
        from concurrent.futures import ThreadPoolExecutor

        before = list(warnings.filters)
        with ThreadPoolExecutor(8) as pool:
            sizes = list(
                pool.map(lambda _: resize_image(images["tiny.jpg"], ResizeSpec()).width, range(64))
            )
        assert sizes == [256] * 64
        assert warnings.filters == before
