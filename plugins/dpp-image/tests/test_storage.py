"""ShardStore: files published whole and never over an existing name, locally and remotely."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dpp_image.storage import ShardStore


def staged(store: ShardStore, content: bytes) -> str:
    """A temporary file of ``store`` holding ``content``."""
    temporary = store.temporary(".tar")
    Path(temporary).write_bytes(content)
    return temporary


class TestPublish:
    def test_local_publish_never_overwrites(self, tmp_path: Path) -> None:
        """Publishing to a name that exists fails and leaves the existing file as it was."""
        store = ShardStore(str(tmp_path / "out"))
        store.publish(staged(store, b"first run"), "00000.tar")
        temporary = staged(store, b"second run")
        with pytest.raises(FileExistsError, match=r"00000\.tar is already in the output"):
            store.publish(temporary, "00000.tar")
        assert (tmp_path / "out" / "00000.tar").read_bytes() == b"first run"
        assert not Path(temporary).exists()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.tar"]

    def test_local_publish_is_readable(self, tmp_path: Path) -> None:
        """A published local file has its content under its name, readable by all; no temporary."""
        store = ShardStore(str(tmp_path / "out"))
        store.publish(staged(store, b"shard"), "00003.tar")
        published = tmp_path / "out" / "00003.tar"
        assert published.read_bytes() == b"shard"
        assert published.stat().st_mode & 0o777 == 0o644
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["00003.tar"]

    def test_remote_publish_never_overwrites(self) -> None:
        """On an fsspec output (memory://) an existing key is not overwritten either."""
        import fsspec

        root = f"/publish-{uuid.uuid4().hex}"
        store = ShardStore(f"memory://{root}")
        fs = fsspec.filesystem("memory")
        try:
            store.publish(staged(store, b"first run"), "00000.parquet")
            temporary = staged(store, b"second run")
            with pytest.raises(FileExistsError, match="not overwritten"):
                store.publish(temporary, "00000.parquet")
            assert fs.cat_file(f"{root}/00000.parquet") == b"first run"
            assert not Path(temporary).exists()
        finally:
            fs.rm(root, recursive=True)

    def test_marker_written_once(self, tmp_path: Path) -> None:
        """A second run marker is refused while one is there: two runs cannot both claim it."""
        store = ShardStore(str(tmp_path / "out"))
        store.write_marker(b'{"run_id": "a"}')
        with pytest.raises(FileExistsError):
            store.write_marker(b'{"run_id": "b"}')
        assert store.read_marker() == b'{"run_id": "a"}'
