"""``python -m benchmarks.image_codecs``: CPU per image of the codecs `resize` could use.

Each candidate does img2dataset's default job on one JPEG: decode (at a
reduced scale where the library can: libjpeg's DCT scaling), resize the
longer side to 256, pad to a square, encode as JPEG at quality 95.  The test
JPEGs are 640x480 to 1280x960 photographs' stand-ins: smooth shapes, edges
and sensor-like noise, encoded at quality 90, so that the entropy decoder
has about as much to do as on real photos (a flat or pure-noise image
would flatter or punish every codec alike, but not by the same amount).

Figures are CPU milliseconds per image (``time.process_time``, all
threads), one thread, every library held to one thread of its own; then
the images per second of two threads, which shows which codecs release the
GIL.  Candidates whose library is not installed are skipped with a note.

Options: ``--images N`` (per size, default 25), ``--reps N`` (default 5;
the median is reported), ``--pipeline N``: also run the whole command
(download from a loopback server, ``resize``, ``shards`` into a temporary
folder) on N of the images and report its CPU per image, the figure to set
beside img2dataset's.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SIZE = 256
QUALITY = 95
SOURCE_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 960))

Codec = Callable[[bytes], bytes]


def make_jpegs(per_size: int) -> list[bytes]:
    """Photo-like JPEGs: low-frequency colour fields, hard-edged shapes and fine noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1234)
    images = []
    for width, height in SOURCE_SIZES:
        for _ in range(per_size):
            coarse = rng.integers(
                0, 256, size=(height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8
            )
            field = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
            draw = ImageDraw.Draw(field)
            for _ in range(12):
                x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
                x1, y1 = (
                    x0 + int(rng.integers(10, width // 3)),
                    y0 + int(rng.integers(10, height // 3)),
                )
                colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            pixels = np.asarray(field, dtype=np.int16)
            pixels = pixels + rng.normal(0, 4, size=pixels.shape).astype(np.int16)
            photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            buffer = io.BytesIO()
            photo.save(buffer, "JPEG", quality=90)
            images.append(buffer.getvalue())
    return images


def _border_box(width: int, height: int) -> tuple[int, int]:
    scale = SIZE / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def full_opencv() -> Codec:
    """img2dataset's own path: full-scale decode, INTER_AREA, pad, encode."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)

    def run(data: bytes) -> bytes:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return _cv_finish(image)

    return run


def _cv_finish(image: Any) -> bytes:
    import cv2

    height, width = image.shape[:2]
    new_width, new_height = _border_box(width, height)
    image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    top, left = (SIZE - new_height) // 2, (SIZE - new_width) // 2
    image = cv2.copyMakeBorder(
        image,
        top,
        SIZE - new_height - top,
        left,
        SIZE - new_width - left,
        cv2.BORDER_CONSTANT,
        value=(255, 255, 255),
    )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    assert ok
    return bytes(encoded)


def reduced_opencv() -> Codec:
    """OpenCV's IMREAD_REDUCED_COLOR_{2,4,8}: the largest reduction that stays >= 256."""
    import cv2
    import numpy as np
    from PIL import Image

    cv2.setNumThreads(1)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2}
    flags.update({4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8})

    def run(data: bytes) -> bytes:
        # OpenCV cannot tell the size without decoding: Pillow reads the header.
        width, height = Image.open(io.BytesIO(data)).size
        factor = 1
        while factor < 8 and max(width, height) // (factor * 2) >= SIZE:
            factor *= 2
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags[factor])
        return _cv_finish(image)

    return run


def simplejpeg_opencv() -> Codec:
    """simplejpeg (libjpeg-turbo) scaled decode, OpenCV INTER_AREA and pad, simplejpeg encode."""
    import cv2
    import simplejpeg

    cv2.setNumThreads(1)

    def run(data: bytes) -> bytes:
        width, height, _, _ = simplejpeg.decode_jpeg_header(data)
        scale = SIZE / max(width, height)
        image = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=int(width * scale),
            min_height=int(height * scale),
        )
        height, width = image.shape[:2]
        new_width, new_height = _border_box(width, height)
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
        top, left = (SIZE - new_height) // 2, (SIZE - new_width) // 2
        image = cv2.copyMakeBorder(
            image,
            top,
            SIZE - new_height - top,
            left,
            SIZE - new_width - left,
            cv2.BORDER_CONSTANT,
            value=(255, 255, 255),
        )
        return bytes(simplejpeg.encode_jpeg(image, quality=QUALITY, colorspace="RGB"))

    return run


def simplejpeg_pillow() -> Codec:
    """simplejpeg scaled decode, Pillow BOX (area) resize and pad, simplejpeg encode."""
    import numpy as np
    import simplejpeg
    from PIL import Image

    def run(data: bytes) -> bytes:
        width, height, _, _ = simplejpeg.decode_jpeg_header(data)
        scale = SIZE / max(width, height)
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=int(width * scale), min_height=int(height * scale)
        )
        image = Image.fromarray(pixels)
        image = image.resize(_border_box(*image.size), Image.Resampling.BOX)
        canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
        return bytes(simplejpeg.encode_jpeg(np.asarray(canvas), quality=QUALITY, colorspace="RGB"))

    return run


def pillow_draft() -> Codec:
    """Pillow with ``draft()`` (libjpeg scaling), resize, pad, encode."""
    from PIL import Image

    def run(data: bytes) -> bytes:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", _border_box(*image.size))
        image = image.convert("RGB")
        image = image.resize(_border_box(*image.size), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
        out = io.BytesIO()
        canvas.save(out, "JPEG", quality=QUALITY)
        return out.getvalue()

    return run


def pillow_full() -> Codec:
    """Pillow without draft: full-scale decode."""
    from PIL import Image

    def run(data: bytes) -> bytes:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image = image.resize(_border_box(*image.size), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
        out = io.BytesIO()
        canvas.save(out, "JPEG", quality=QUALITY)
        return out.getvalue()

    return run


def pyvips_thumbnail() -> Codec:
    """libvips ``thumbnail_buffer`` (shrink-on-load), gravity pad, JPEG save."""
    import pyvips

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)

    def run(data: bytes) -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, SIZE, height=SIZE)
        image = image.gravity("centre", SIZE, SIZE, extend="white")
        return bytes(image.jpegsave_buffer(Q=QUALITY))

    return run


def dpp_image() -> Codec:
    """The ``resize`` processor's own function (header probe, EXIF, codec choice)."""
    from dpp_image.codec import ResizeSpec, resize_image

    spec = ResizeSpec(size=SIZE)

    def run(data: bytes) -> bytes:
        return resize_image(data, spec).data

    return run


CANDIDATES: dict[str, Callable[[], Codec]] = {
    "opencv full decode (img2dataset's path)": full_opencv,
    "opencv IMREAD_REDUCED": reduced_opencv,
    "pillow full decode": pillow_full,
    "pillow draft()": pillow_draft,
    "simplejpeg + pillow BOX resize + simplejpeg encode": simplejpeg_pillow,
    "simplejpeg + opencv resize": simplejpeg_opencv,
    "pyvips thumbnail": pyvips_thumbnail,
    "dpp-image resize processor": dpp_image,
}


def cpu_pass(codec: Codec, images: list[bytes]) -> float:
    """CPU milliseconds per image of one pass over ``images``, one thread."""
    start = time.process_time()
    for data in images:
        codec(data)
    return (time.process_time() - start) * 1000 / len(images)


def threaded_rate(codec: Codec, images: list[bytes], threads: int) -> float:
    """Images per second of ``threads`` threads sharing the images."""
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(codec, images * 2))
        return 2 * len(images) / (time.perf_counter() - start)


def pipeline_cpu_ms(
    images: list[bytes], count: int, processing_limit: int = 2
) -> tuple[float, float]:
    """CPU ms per image of the whole command (its process alone), and its images per second."""
    import resource
    import subprocess
    import tempfile
    from pathlib import Path

    from download_pipeline_processor.testing import FileServer

    cli = Path(sys.executable).with_name("download-pipeline-processor")
    with FileServer() as server, tempfile.TemporaryDirectory() as folder:
        lines = ["url,caption"]
        for index in range(count):
            url = server.add(f"/{index}.jpg", images[index % len(images)])
            lines.append(f"{url},picture {index}")
        files = Path(folder) / "files.csv"
        files.write_text("\n".join(lines) + "\n", encoding="utf-8")
        argv = [str(cli), "--files", str(files), "--processor", "resize"]
        argv += ["--post-processor", "shards", "--post-processor-option", f"output={folder}/out"]
        argv += ["--processing-limit", str(processing_limit), "--download-workers", "16", "--quiet"]
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "image"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, timeout=600)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1000 / count, count / wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25, help="test images per source size")
    parser.add_argument("--reps", type=int, default=5, help="passes per candidate")
    parser.add_argument("--pipeline", type=int, default=0, help="images for a whole-command run")
    args = parser.parse_args(argv)
    images = make_jpegs(args.images)
    mean_kib = sum(map(len, images)) / len(images) / 1024
    print(f"{len(images)} JPEGs, {SOURCE_SIZES[0]}..{SOURCE_SIZES[-1]}, mean {mean_kib:.0f} KiB")
    print(f"job: decode, longer side to {SIZE}, pad to a square, JPEG q{QUALITY}")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    codecs: dict[str, Codec] = {}
    for name, build in CANDIDATES.items():
        try:
            codec = build()
            codec(images[0])
        except Exception as exc:
            print(f"skipped {name}: {type(exc).__name__}: {exc}"[:160])
            continue
        codecs[name] = codec
    # Candidates take turns, pass by pass, so a burst of load elsewhere on
    # the machine spreads over all of them instead of landing on one.
    passes: dict[str, list[float]] = {name: [] for name in codecs}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in codecs}
    for _ in range(args.reps):
        for name, codec in codecs.items():
            passes[name].append(cpu_pass(codec, images))
            rates[name].append((threaded_rate(codec, images, 1), threaded_rate(codec, images, 2)))
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"| {'candidate':52} | CPU ms/image, median (min) | images/s, 1 thread | 2 threads |")
    print(f"|{'-' * 54}|{'-' * 28}|{'-' * 20}|{'-' * 11}|")
    for name in codecs:
        median = statistics.median(passes[name])
        one = statistics.median(rate[0] for rate in rates[name])
        two = statistics.median(rate[1] for rate in rates[name])
        figure = f"{median:.2f} ({min(passes[name]):.2f})"
        print(f"| {name:52} | {figure:>26} | {one:18.0f} | {two:9.0f} |")
    if args.pipeline:
        cpu, rate = pipeline_cpu_ms(images, args.pipeline)
        print()
        print(
            f"whole command, {args.pipeline} images, --processing-limit 2: "
            f"{cpu:.2f} CPU ms/image (process start-up included), {rate:.0f} images/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
