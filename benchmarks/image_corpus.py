"""The image corpus: seeded photo-like JPEGs, their download lists, and the check of a run's shards.

Each image is 640x480 to 1280x960 (width and height drawn apart, so the
aspect ratio varies): a smooth colour field (a coarse random grid scaled up
bicubically: gradients), 8 to 19 filled ellipses, rectangles and triangles
(hard edges), and +-1 of luma noise (sensor grain), saved by Pillow at
quality 95.  That gives ~144 KB an image on average (57-268 KB), about the
entropy of real photographs at that size: a flat image would flatter every
decoder, pure noise punish it.  Everything comes from ``numpy``'s PCG64
seeded per file, so the same numpy and Pillow versions make the same bytes
(the manifest records both; another version regenerates the corpus).

Needs numpy, Pillow and pyarrow in the harness's virtualenv
(``install.py`` adds them when the ``images`` case is selected).
"""

from __future__ import annotations

import csv
import io
import random
import tarfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import Corpus
from .verify import VerificationError

#: The words the captions are drawn from.
CAPTION_TEXT = (
    "a photo of the red house by the lake at dawn with mountains and trees "
    "an old blue car parked in a quiet street near green fields under clouds "
    "two people walking a small dog on the beach at sunset in summer light"
)
WORDS = tuple(CAPTION_TEXT.split())




def caption(index: int) -> str:
    """Entry ``index``'s caption: seeded words, and the index, so that every caption is unique."""
    rng = random.Random(index)
    words = rng.sample(WORDS, rng.randint(5, 12))
    return f"{' '.join(words)} #{index}"


@dataclass(frozen=True)
class ImageList:
    """One download list of images in the formats the tools read, and what it must produce."""

    count: int
    csv_path: Path
    parquet_path: Path
    #: Every entry's caption: a complete run stores exactly this multiset.
    captions: Counter[str]


def image_urls(corpus: Corpus, base_url: str, count: int) -> list[str]:
    """``count`` URLs over ``corpus``: its files in order, then again under ``/rN/`` paths.

    nginx serves ``/FOLDER/rN/NAME`` as ``/FOLDER/NAME`` (``nginx.py``), so a list
    longer than the corpus still has a distinct URL per entry.
    """
    files = corpus.files
    urls = []
    for index in range(count):
        repeat, position = divmod(index, len(files))
        middle = f"r{repeat}/" if repeat else ""
        urls.append(f"{base_url}/{corpus.spec.folder}/{middle}{files[position].name}")
    return urls


def write_image_list(folder: Path, urls: Sequence[str]) -> ImageList:
    """``list.csv`` and ``list.parquet`` under ``folder``: columns ``url`` and ``caption``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    captions = [caption(index) for index in range(len(urls))]
    csv_path = folder / "list.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["url", "caption"])
        writer.writerows(zip(urls, captions))
    parquet_path = folder / "list.parquet"
    pq.write_table(pa.table({"url": list(urls), "caption": captions}), parquet_path)
    return ImageList(len(urls), csv_path, parquet_path, Counter(captions))


def verify_shards(folder: Path, expected: ImageList, size: int) -> None:
    """The WebDataset tars under ``folder`` hold every entry once, each a ``size`` square JPEG.

    Counts the samples (keys with a ``.jpg`` member) in every ``*.tar``; each
    image must open as a ``size`` x ``size`` JPEG (header only), and the
    samples' ``.txt`` captions must be exactly the list's (unique per entry,
    so a lost or doubled entry shows).
    """
    from PIL import Image

    tars = sorted(folder.rglob("*.tar"))
    if not tars:
        raise VerificationError(f"no .tar shard under {folder}")
    found: Counter[str] = Counter()
    images = 0
    for path in tars:
        with tarfile.open(path) as archive:
            members: dict[str, dict[str, Any]] = {}
            for member in archive:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                reader = archive.extractfile(member)
                assert reader is not None
                members.setdefault(key, {})[ext] = reader.read()
        for key, parts in members.items():
            if "jpg" not in parts:
                continue
            images += 1
            with Image.open(io.BytesIO(parts["jpg"])) as image:
                if image.format != "JPEG" or image.size != (size, size):
                    raise VerificationError(
                        f"{path.name}:{key}.jpg is {image.format} {image.size}, "
                        f"expected a {size}x{size} JPEG"
                    )
            found[parts.get("txt", b"").decode("utf-8")] += 1
    if images != expected.count or found != expected.captions:
        missing = sum((expected.captions - found).values())
        extra = sum((found - expected.captions).values())
        raise VerificationError(
            f"{images} samples in {len(tars)} shards under {folder}, expected "
            f"{expected.count}; {missing} captions missing, {extra} unexpected"
        )
