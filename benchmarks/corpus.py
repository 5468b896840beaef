"""Deterministic corpora: seeded random bytes (or JPEGs), a manifest of sha256 digests, lists."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Bump when the way bytes are generated changes, so old corpora are rebuilt.
FORMAT_VERSION = 1
WRITE_CHUNK = 8 * 1024 * 1024
KIB = 1024
MIB = 1024 * 1024


#: The kind of the random-bytes corpora.
RANDOM = "random"
#: The kind of the image corpora: seeded JPEGs of varied sizes (``jpeg_drawing.py``).
JPEG = "jpeg"


@dataclass(frozen=True)
class CorpusSpec:
    """``count`` files of ``size`` bytes each, bytes drawn from a PRNG seeded per file.

    A ``jpeg`` corpus holds seeded JPEGs instead, whose sizes vary (``size`` 0).
    """

    name: str
    count: int
    size: int
    seed: int
    kind: str = RANDOM

    @property
    def folder(self) -> str:
        """The folder (and URL path) name; differs between a full and a quick corpus."""
        if self.kind == JPEG:
            return f"{self.name}-{self.count}"
        return f"{self.name}-{self.count}x{self.size}"

    def file_name(self, index: int) -> str:
        """The name of file ``index``."""
        suffix = ".jpg" if self.kind == JPEG else ".bin"
        return f"{self.name[0]}{index:05d}{suffix}"

    def record(self) -> dict[str, Any]:
        """The spec as the manifest keeps it (a random corpus's, as before kinds existed)."""
        fields = asdict(self)
        if self.kind == RANDOM:
            del fields["kind"]
        return fields

    def file_seed(self, index: int) -> int:
        """A seed of its own for each file, so any one can be regenerated alone."""
        text = f"{FORMAT_VERSION}:{self.seed}:{self.name}:{index}".encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


FULL_SPECS = {
    "small": CorpusSpec("small", 5000, 16 * KIB, seed=1),
    "medium": CorpusSpec("medium", 200, 1 * MIB, seed=2),
    "large": CorpusSpec("large", 2, 512 * MIB, seed=3),
}
QUICK_SPECS = {
    "small": CorpusSpec("small", 500, 16 * KIB, seed=1),
    "medium": CorpusSpec("medium", 20, 1 * MIB, seed=2),
    "large": CorpusSpec("large", 2, 64 * MIB, seed=3),
}


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus as the manifest records it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Corpus:
    """A generated corpus on disk."""

    spec: CorpusSpec
    folder: Path
    files: tuple[CorpusFile, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes over all files."""
        return sum(f.size for f in self.files)

    def expected(self) -> Counter[str]:
        """The multiset of digests a complete, intact download must produce."""
        return Counter(f.sha256 for f in self.files)

    def warm(self) -> None:
        """Read every file once so nginx serves it from the page cache in every run."""
        for item in self.files:
            with (self.folder / item.name).open("rb") as source:
                while source.read(WRITE_CHUNK):
                    pass


def _write_file(path: Path, size: int, seed: int) -> str:
    generator = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = generator.randbytes(min(WRITE_CHUNK, remaining))
            out.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _write_any(spec: CorpusSpec, path: Path, index: int) -> CorpusFile:
    """File ``index`` of ``spec`` written to ``path``, as the manifest records it."""
    if spec.kind == JPEG:
        from .jpeg_drawing import write_jpeg

        size, digest = write_jpeg(path, spec.file_seed(index))
        return CorpusFile(path.name, size, digest)
    return CorpusFile(path.name, spec.size, _write_file(path, spec.size, spec.file_seed(index)))


def _generator_versions(spec: CorpusSpec) -> dict[str, str]:
    """The libraries whose output a corpus depends on beyond its spec (JPEG: numpy, Pillow)."""
    if spec.kind == JPEG:
        from .jpeg_drawing import generator_versions

        return generator_versions()
    return {}


def _manifest_path(root: Path, spec: CorpusSpec) -> Path:
    return root / f"{spec.folder}.manifest.json"


def _load_if_current(root: Path, spec: CorpusSpec) -> Corpus | None:
    """The corpus described by an existing manifest, if it matches ``spec`` and the files."""
    manifest = _manifest_path(root, spec)
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT_VERSION or data.get("spec") != spec.record():
        return None
    if data.get("generator", {}) != _generator_versions(spec):
        return None
    folder = root / spec.folder
    files = tuple(CorpusFile(**entry) for entry in data.get("files", []))
    if len(files) != spec.count:
        return None
    for item in files:
        path = folder / item.name
        if not path.is_file() or path.stat().st_size != item.size:
            return None
    return Corpus(spec, folder, files)


def ensure_corpus(root: Path, spec: CorpusSpec) -> tuple[Corpus, bool]:
    """The corpus for ``spec`` under ``root``, generated unless a matching one exists.

    Returns the corpus and whether it was (re)generated.
    """
    existing = _load_if_current(root, spec)
    if existing is not None:
        return existing, False
    folder = root / spec.folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = []
    for index in range(spec.count):
        files.append(_write_any(spec, folder / spec.file_name(index), index))
        if spec.kind == JPEG and (index + 1) % 500 == 0:
            print(f"  {spec.folder}: {index + 1} of {spec.count}", file=sys.stderr, flush=True)
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "spec": spec.record(),
        "files": [asdict(item) for item in files],
    }
    if spec.kind != RANDOM:
        manifest["generator"] = _generator_versions(spec)
    _manifest_path(root, spec).write_text(json.dumps(manifest, indent=1))
    return Corpus(spec, folder, tuple(files)), True


@dataclass(frozen=True)
class Entry:
    """One file to download: where from and the name to save it under."""

    name: str
    url: str


def corpus_entries(corpus: Corpus, base_url: str, limit: int | None = None) -> list[Entry]:
    """Entries for the first ``limit`` files (all by default) of ``corpus``."""
    files = corpus.files if limit is None else corpus.files[:limit]
    return [Entry(f.name, f"{base_url}/{corpus.spec.folder}/{f.name}") for f in files]


@dataclass(frozen=True)
class ListFiles:
    """The same download list in each tool's input format."""

    json_list: Path
    url_list: Path
    curl_config: Path


def write_lists(folder: Path, entries: Sequence[Entry], out_dir: Path) -> ListFiles:
    """Write ``entries`` as JSON (this project, the baseline), plain URLs and a curl config."""
    folder.mkdir(parents=True, exist_ok=True)
    lists = ListFiles(folder / "list.json", folder / "list.txt", folder / "curl.cfg")
    records = [{"id": Path(e.name).stem, "name": e.name, "url": e.url} for e in entries]
    lists.json_list.write_text(json.dumps(records))
    lists.url_list.write_text("".join(f"{e.url}\n" for e in entries))
    lists.curl_config.write_text(
        "".join(f'url = "{e.url}"\noutput = "{out_dir / e.name}"\n' for e in entries)
    )
    return lists
