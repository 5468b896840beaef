"""The built-in processors: ``dummy`` (the default), ``checksum`` and ``save``."""

from __future__ import annotations

from typing import Any

from ..base_processor import BaseProcessor
from ..file_data import FileData
from ..hookspecs import Register, hookimpl
from ..options import Option
from ._save import SaveProcessor

HASH_CHUNK = 1024 * 1024
#: ``hashlib.algorithms_guaranteed`` without shake_* (they need a digest length,
#: which a plain hexdigest() cannot give).  Spelled out so that listing plugins
#: does not import hashlib, whose OpenSSL set-up is start-up time;
#: a test checks the list against hashlib.
ALGORITHMS = (
    "blake2b",
    "blake2s",
    "md5",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "sha512",
)


def _require_path(file_data: FileData) -> Any:
    if file_data.local_path is None:
        raise ValueError("the file has no local path; was it downloaded?")
    return file_data.local_path


class DummyProcessor(BaseProcessor):
    """Does nothing with the file; returns its id, name and size."""

    options = ()

    def process(self, file_data: FileData) -> dict[str, Any]:
        path = _require_path(file_data)
        # The download stage recorded the size of the file it wrote: no stat() per file.
        size = file_data.download.size
        if size is None:  # a file given some other way than by the download stage
            size = path.stat().st_size
        return {"id": file_data.id, "name": file_data.name, "size": size}


class ChecksumProcessor(BaseProcessor):
    """Hashes the file in chunks (memory stays flat) and returns its digest and size."""

    options = (
        Option(
            "algorithm",
            default="sha256",
            help="hashlib algorithm: " + ", ".join(ALGORITHMS),
        ),
    )

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"unsupported algorithm {algorithm!r}; choose one of " + ", ".join(ALGORITHMS)
            )
        self.algorithm = algorithm

    def process(self, file_data: FileData) -> dict[str, Any]:
        import hashlib  # here, not at the top: see ALGORITHMS

        digest = hashlib.new(self.algorithm)
        size = 0
        with _require_path(file_data).open("rb") as source:
            while chunk := source.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return {self.algorithm: digest.hexdigest(), "size": size}


@hookimpl
def register_processors(register: Register) -> None:
    """Register ``dummy``, ``checksum`` and ``save``."""
    register("dummy", DummyProcessor)
    register("checksum", ChecksumProcessor)
    register("save", SaveProcessor)
