"""The seeded photo-like JPEGs of the image corpus (``image_corpus.py``).

Each image is 640x480 to 1280x960 (width and height drawn apart, so the
aspect ratio varies): a smooth colour field (a coarse random grid scaled up
bicubically: gradients), 8 to 19 filled ellipses, rectangles and triangles
(hard edges), and +-1 of luma noise (sensor grain), saved by Pillow at
quality 95.  Everything comes from ``numpy``'s PCG64 seeded per file, so the
same numpy and Pillow versions make the same bytes.  Its own module: both
``corpus.py`` (which writes and checks corpora) and ``image_corpus.py``
(which builds on a corpus) use it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

#: Bump when the drawing changes, so that an existing corpus is made again.
GENERATOR_VERSION = "1"
WIDTHS = (640, 1280)
HEIGHTS = (480, 960)
#: Shapes drawn over the colour field: at least, and fewer than.
SHAPES = (8, 20)
#: One cell of the coarse colour grid covers this many pixels a side.
GRID_CELL = 24
#: Uniform luma noise in [-NOISE, NOISE].
NOISE = 1
QUALITY = 95


def generator_versions() -> dict[str, str]:
    """This drawing's, numpy's and Pillow's versions: the same seeds make the same bytes only
    with the same ones."""
    import numpy
    import PIL

    return {"images": GENERATOR_VERSION, "numpy": numpy.__version__, "Pillow": PIL.__version__}


def make_jpeg(seed: int) -> bytes:
    """One photo-like JPEG from ``seed`` (see the module's description)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    width = int(rng.integers(WIDTHS[0], WIDTHS[1] + 1))
    height = int(rng.integers(HEIGHTS[0], HEIGHTS[1] + 1))
    grid = rng.integers(
        0, 256, size=(height // GRID_CELL + 2, width // GRID_CELL + 2, 3), dtype=np.uint8
    )
    image = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(*SHAPES))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            corners = [
                (int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(3)
            ]
            draw.polygon(corners, fill=colour)
    pixels = np.asarray(image, dtype=np.int16)
    grain = rng.integers(-NOISE, NOISE + 1, size=(height, width, 1), dtype=np.int16)
    noisy = np.clip(pixels + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def write_jpeg(path: Path, seed: int) -> tuple[int, str]:
    """Write :func:`make_jpeg`'s image to ``path``; return its size and sha256."""
    data = make_jpeg(seed)
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()
