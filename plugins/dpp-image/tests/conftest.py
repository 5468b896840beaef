"""Shared fixtures: images made here with Pillow, a loopback server, the installed CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from download_pipeline_processor.testing import FileServer, run_command_bounded

CLI = Path(sys.executable).with_name("download-pipeline-processor")
RED, BLUE = (255, 0, 0), (0, 0, 255)

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """``image`` saved in Pillow format ``fmt``."""
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def halves(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: shows which way an image was turned."""
    image = Image.new(mode, (width, height), BLUE if mode == "RGB" else (*BLUE, 255))
    image.paste(RED if mode == "RGB" else (*RED, 255), (0, 0, width // 2, height))
    return image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A noisy picture: JPEG has real entropy to decode."""
    return Image.effect_noise((width, height), 40 + seed % 20).convert("RGB")


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """One file of each kind the processor must handle, by name."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    transparent = Image.new("RGBA", (300, 200), (0, 0, 255, 0))
    transparent.paste((0, 255, 0, 255), (0, 0, 150, 200))
    frames = [Image.new("RGB", (120, 90), colour) for colour in (RED, BLUE)]
    return {
        "landscape.jpg": encode(photo(640, 480), "JPEG", quality=90),
        "large.jpg": encode(photo(1280, 960, 1), "JPEG", quality=90),
        "portrait.jpg": encode(halves(300, 500), "JPEG", quality=95),
        "rotated.jpg": encode(halves(400, 200), "JPEG", quality=95, exif=exif),
        "alpha.png": encode(transparent, "PNG"),
        "picture.webp": encode(halves(320, 240), "WEBP", quality=90),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiny.jpg": encode(halves(24, 16), "JPEG"),
        "notes.txt": b"these are words, not pixels\n" * 10,
    }


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A loopback HTTP server."""
    with FileServer() as file_server:
        yield file_server


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run the installed command with only this plugin loaded, bounded in time."""

    def run(
        *args: str, timeout: float = 90, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "image"}
        environment.update(env or {})
        argv = [str(CLI), *args, "--retry-backoff", "0", "--max-retries", "0"]
        argv += ["--download-cache", str(tmp_path / "cache")]
        return run_command_bounded(argv, env=environment, timeout=timeout)

    return run
