"""The ``shards`` post-processor through the real command: local folders, S3, memory://."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from download_pipeline_processor.testing import Answer, FileServer, Wait, raw_ok, run_pipeline
from dpp_image import ResizeProcessor, ShardsPostProcessor

CLI = Path(sys.executable).with_name("download-pipeline-processor")

# The kinds of input cycled through the 100 rows, and what becomes of each.
KINDS = [
    "landscape.jpg",
    "portrait.jpg",
    "rotated.jpg",
    "alpha.png",
    "picture.webp",
    "animated.gif",
    "large.jpg",
    "tiny.jpg",
    "notes.txt",
    "missing.jpg",
]
FAILURES = {
    "tiny.jpg": ("failed_to_resize", "image too small"),
    "notes.txt": ("failed_to_resize", "not an image"),
    "missing.jpg": ("failed_to_download", "HTTP 404"),
}


def write_csv(path: Path, server: FileServer, images: dict[str, bytes], rows: int) -> list[dict]:
    """A CSV of ``rows`` entries cycling through KINDS, each with a caption and a field."""
    entries = []
    for index in range(rows):
        kind = KINDS[index % len(KINDS)]
        url = server.url(f"/{index}/{kind}")
        if kind in images:
            server.add(f"/{index}/{kind}", images[kind])
        entries.append(
            {
                "id": f"img{index:03d}",
                "url": url,
                "caption": f"caption {index}, {kind}",
                "source": kind,
            }
        )
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["id", "url", "caption", "source"])
        writer.writeheader()
        writer.writerows(entries)
    return entries


def shards_args(files: Path, output: str, *extra: str) -> list[str]:
    """The command line of a resize-and-shard run."""
    return [
        "--files",
        str(files),
        "--processor",
        "resize",
        "--post-processor",
        "shards",
        "--post-processor-option",
        f"output={output}",
        *extra,
    ]


def parquet_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of every parquet file in ``folder``, in shard order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def listing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted."""
    return sorted(path.name for path in folder.iterdir())


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestLocalOutput:
    def test_csv_with_captions_to_shards(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes], run_cli: Any
    ) -> None:
        """100 CSV rows become 4 shards webdataset reads back, every row once in the parquet."""
        files = tmp_path / "files.csv"
        entries = write_csv(files, server, images, 100)
        out = tmp_path / "shards"
        jsonl = tmp_path / "results.jsonl"
        completed = run_cli(
            *shards_args(files, str(out), "--post-processor-option", "samples_per_shard=30"),
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            f"jsonl.path={jsonl}",
            "--processor-option",
            "min_size=20",
        )
        assert completed.returncode == 1, completed.stderr  # the failures
        names = sorted(listing(out))
        assert names == [
            f"{n:05d}{suffix}" for n in range(4) for suffix in (".parquet", ".tar", "_stats.json")
        ]

        # Parquet: one row per input row, img2dataset's columns and statuses.
        rows = parquet_rows(out)
        assert sorted(row["id"] for row in rows) == [entry["id"] for entry in entries]
        by_id = {row["id"]: row for row in rows}
        for entry in entries:
            row = by_id[entry["id"]]
            assert row["caption"] == entry["caption"]
            assert row["source"] == entry["source"]
            assert row["url"] == entry["url"]
            status, reason = FAILURES.get(entry["source"], ("success", None))
            assert row["status"] == status
            if reason is None:
                assert row["error_message"] is None
                assert (row["width"], row["height"]) == (256, 256)
            else:
                assert reason in row["error_message"]
        assert len({row["key"] for row in rows}) == 100
        assert all(len(row["key"]) == 7 for row in rows)  # 5 shard digits + 2 for 30 per shard
        successes = [row for row in rows if row["status"] == "success"]
        assert len(successes) == 70

        # The tars, read as webdataset reads them: every image decodes at 256x256.
        urls = [str(out / f"{n:05d}.tar") for n in range(4)]
        samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
        assert sorted(sample["__key__"] for sample in samples) == sorted(
            row["key"] for row in successes
        )
        for sample in samples:
            assert sample["jpg"].size == (256, 256)
            meta = sample["json"]
            assert sample["txt"] == meta["caption"] == by_id[meta["id"]]["caption"]
            assert meta["sha256"] == by_id[meta["id"]]["sha256"]
            assert meta["original_width"] == by_id[meta["id"]]["original_width"]
        # The same with tarfile: three members per sample, nothing else.
        with tarfile.open(urls[0]) as tar:
            members = tar.getnames()
        assert len(members) == 3 * sum(1 for row in successes if row["key"].startswith("00000"))
        assert {name.rsplit(".", 1)[1] for name in members} == {"jpg", "json", "txt"}

        stats = json.loads((out / "00000_stats.json").read_text(encoding="utf-8"))
        assert stats["count"] == 30
        assert stats["successes"] + stats["failed_to_download"] + stats["failed_to_resize"] == 30

        # The jsonl line of a result keeps its sizes, never the image bytes.
        lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        result = next(line["result"] for line in lines if line["status"] == "succeeded")
        assert set(result) == {
            "format",
            "width",
            "height",
            "original_width",
            "original_height",
            "sha256",
            "bytes",
        }
        assert jsonl.stat().st_size < 100 * 1000

    def test_rerun_numbers_after_existing_shards(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes], run_cli: Any
    ) -> None:
        """A second run into the same folder adds shards after the first's, changing none."""
        files = tmp_path / "files.csv"
        write_csv(files, server, images, 7)
        out = tmp_path / "shards"
        args = shards_args(files, str(out), "--post-processor-option", "samples_per_shard=4")
        assert run_cli(*args).returncode == 0
        first = {name: (out / name).read_bytes() for name in listing(out)}
        assert sorted(first) == sorted(
            f"{n:05d}{s}" for n in range(2) for s in (".tar", ".parquet", "_stats.json")
        )
        assert run_cli(*args).returncode == 0
        assert sorted(listing(out)) == sorted(
            f"{n:05d}{s}" for n in range(4) for s in (".tar", ".parquet", "_stats.json")
        )
        assert {name: (out / name).read_bytes() for name in first} == first
        assert pq.read_table(out / "00002.parquet").column("key").to_pylist()[0] == "000020"

    @pytest.mark.parametrize(
        "case",
        # One mode through the command; test_codec checks every mode's size.
        [("keep_ratio", (341, 256))],
    )
    def test_modes_through_the_command(
        self,
        tmp_path: Path,
        server: FileServer,
        images: dict[str, bytes],
        run_cli: Any,
        case: tuple[str, tuple[int, int]],
    ) -> None:
        """--processor-option mode=... reaches the shards: the image has that mode's size."""
        mode, size = case
        files = tmp_path / "files.csv"
        files.write_text(f"url\n{server.add('/a.jpg', images['landscape.jpg'])}\n")
        out = tmp_path / "shards"
        completed = run_cli(*shards_args(files, str(out)), "--processor-option", f"mode={mode}")
        assert completed.returncode == 0, completed.stderr
        (sample,) = wds.WebDataset([str(out / "00000.tar")], shardshuffle=False).decode("pil")
        assert sample["jpg"].size == size

    def test_storage_options_never_shown(self, tmp_path: Path, run_cli: Any) -> None:
        """storage_options may hold keys: --dry-run shows it as REDACTED."""
        files = tmp_path / "files.csv"
        files.write_text("url\nhttp://127.0.0.1:9/a.jpg\n")
        completed = run_cli(
            *shards_args(files, "s3://bucket/prefix"),
            "--post-processor-option",
            'storage_options={"secret": "KEY-s3cr3t"}',
            "--dry-run",
        )
        assert completed.returncode == 0, completed.stderr
        assert "storage_options=REDACTED" in completed.stdout
        assert "s3cr3t" not in completed.stdout + completed.stderr

    def test_bad_storage_options_is_exit_2(self, tmp_path: Path, run_cli: Any) -> None:
        """storage_options that is not a JSON object is exit 2 naming it, before any request."""
        files = tmp_path / "files.csv"
        files.write_text("url\nhttp://127.0.0.1:9/a.jpg\n")
        completed = run_cli(
            *shards_args(files, str(tmp_path / "out")),
            "--post-processor-option",
            "storage_options=[1, 2]",
        )
        assert completed.returncode == 2
        assert "storage_options must be a JSON object" in completed.stderr
        assert "Traceback" not in completed.stderr


class TestMemoryOutput:
    def test_memory_url(self, server: FileServer, images: dict[str, bytes]) -> None:
        """An fsspec memory:// output gets whole shards and no temporary name."""
        import fsspec

        entries = [{"url": server.add(f"/{n}.jpg", images["landscape.jpg"])} for n in range(3)]
        outcome = run_pipeline(
            entries,
            ResizeProcessor,
            post_processors=[ShardsPostProcessor],
            post_processor_options={"output": "memory://dataset", "samples_per_shard": 2},
        )
        assert outcome.exit_code == 0
        fs = fsspec.filesystem("memory")
        names = sorted(path.rsplit("/", 1)[1] for path in fs.ls("/dataset", detail=False))
        assert names == sorted(
            f"{n:05d}{s}" for n in range(2) for s in (".tar", ".parquet", "_stats.json")
        )
        with fs.open("/dataset/00000.tar", "rb") as stream:
            data = stream.read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            image = tar.extractfile("000000.jpg")
            assert image is not None
            assert Image.open(image).size == (256, 256)
        fs.rm("/dataset", recursive=True)


@pytest.fixture
def s3_server() -> Iterator[str]:
    """A real S3 API server (moto's server mode) on 127.0.0.1 with a bucket ``dataset``."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the local test server's
        ).create_bucket(Bucket="dataset")
        yield endpoint
    finally:
        moto.stop()


class TestS3Output:
    def test_shards_to_s3(
        self,
        tmp_path: Path,
        server: FileServer,
        images: dict[str, bytes],
        run_cli: Any,
        s3_server: str,
    ) -> None:
        """s3://bucket/prefix, configured by AWS_* and FSSPEC_S3_ENDPOINT_URL, gets whole shards."""
        import s3fs

        files = tmp_path / "files.csv"
        write_csv(files, server, images, 12)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FSSPEC_S3_ENDPOINT_URL": s3_server,
        }
        args = shards_args(
            files, "s3://dataset/run1", "--post-processor-option", "samples_per_shard=5"
        )
        completed = run_cli(*args, env=env)
        assert completed.returncode == 1, completed.stderr  # the failures among the 12
        fs = s3fs.S3FileSystem(
            key="testing",
            secret="testing",  # noqa: S106 - the local test server's
            client_kwargs={"endpoint_url": s3_server},
        )
        names = sorted(path.rsplit("/", 1)[1] for path in fs.ls("dataset/run1", refresh=True))
        assert names == sorted(
            f"{n:05d}{s}" for n in range(3) for s in (".tar", ".parquet", "_stats.json")
        )
        local = tmp_path / "copy"
        fs.get("dataset/run1/", str(local), recursive=True)
        rows = parquet_rows(local)
        assert len(rows) == 12
        samples = list(
            wds.WebDataset(sorted(str(p) for p in local.glob("*.tar")), shardshuffle=False).decode(
                "pil"
            )
        )
        # tiny.jpg passes here: no min_size.
        assert len(samples) == sum(row["status"] == "success" for row in rows) == 10
        assert all(sample["jpg"].size == (256, 256) for sample in samples)
        # A rerun numbers after the shards already in the bucket.
        assert run_cli(*args, env=env).returncode == 1
        assert "00003.tar" in {p.rsplit("/", 1)[1] for p in fs.ls("dataset/run1", refresh=True)}


def wait_for(condition: Any, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll ``condition`` every 2 ms while ``proc`` runs; fail if it ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


class TestCrashSafety:
    @pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
    def test_kill_9_twice_and_rerun_with_journal(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes]
    ) -> None:
        """SIGKILL mid-shard, then just after a publication, then a rerun: each image in one shard.

        The first kill lands while a shard is half written, with its files
        post-processed long enough ago for the journal to have recorded them
        were it not told to wait for their publication.  The second lands
        right after a shard's parquet (its last file) appears, most often
        before the journal recorded that shard's files.  No file is lost, none
        is written twice, no partial shard is left.
        """
        kinds = ["landscape.jpg", "rotated.jpg", "alpha.png", "picture.webp"]
        entries = [
            {"id": f"img{n:02d}", "url": server.add(f"/{n}.img", images[kinds[n % 4]], delay=0.05)}
            for n in range(60)
        ]
        files = tmp_path / "files.json"
        files.write_text(json.dumps(entries), encoding="utf-8")
        out = tmp_path / "shards"
        log = tmp_path / "stderr.log"
        args = [
            str(CLI),
            *shards_args(files, str(out), "--post-processor-option", "samples_per_shard=25"),
            # dummy, after shards, logs "processed ID": a file's post-processing, seen from outside.
            "--post-processor",
            "dummy",
            "--journal",
            str(tmp_path / "journal.db"),
            "--download-workers",
            "2",
            "--download-cache",
            str(tmp_path / "cache"),
            "--retry-backoff",
            "0",
        ]
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "image"}

        def start() -> subprocess.Popen[bytes]:
            with log.open("w") as stderr:
                return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=env)

        def processed() -> int:
            return log.read_text(encoding="utf-8").count("INFO processed img")

        proc = start()
        try:
            wait_for(lambda: processed() >= 32, proc)
            time.sleep(0.25)  # past the journal's flush interval
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert sorted(name for name in listing(out) if not name.startswith(".")) == [
            "00000.parquet",
            "00000.tar",
            "00000_stats.json",
        ]

        proc = start()
        try:
            wait_for((out / "00001.parquet").exists, proc)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        proc = start()
        assert proc.wait(timeout=120) == 0, log.read_text(encoding="utf-8")[-2000:]

        names = listing(out)
        assert not [name for name in names if name.startswith(".")]  # no temporary, no marker
        tars = sorted(name for name in names if name.endswith(".tar"))
        for tar in tars:  # every tar is a whole shard: its parquet and stats beside it
            assert tar.replace(".tar", ".parquet") in names
            assert tar.replace(".tar", "_stats.json") in names
        rows = parquet_rows(out)
        assert sorted(row["id"] for row in rows) == [entry["id"] for entry in entries]
        samples = list(wds.WebDataset([str(out / tar) for tar in tars], shardshuffle=False))
        ids = sorted(json.loads(sample["json"])["id"] for sample in samples)
        assert ids == [entry["id"] for entry in entries]

    @pytest.mark.parametrize("owner", ["dead pid", "older version"])
    def test_rerun_removes_a_killed_runs_incomplete_shard(
        self,
        tmp_path: Path,
        server: FileServer,
        images: dict[str, bytes],
        run_cli: Any,
        owner: str,
    ) -> None:
        """After a kill between a tar's and its parquet's publication, the rerun removes the tar.

        That instant (two links apart) cannot be hit by a real signal on
        purpose, so the test lays out what it leaves: the run marker (of a
        process of this host that has ended, or without an owner as an older
        version wrote it), a tar without its parquet, a hidden temporary file.
        """
        files = tmp_path / "files.csv"
        write_csv(files, server, images, 3)
        out = tmp_path / "shards"
        args = shards_args(files, str(out))
        assert run_cli(*args).returncode == 0
        (out / "00001.tar").write_bytes(b"half of a shard")
        (out / ".dpp-shard-left.tar").write_bytes(b"a temporary")
        if owner == "dead pid":
            marker(out, host=socket.gethostname(), pid=dead_pid(), run_id="r", first_shard=1)
        else:
            marker(out, first_shard=1)
        completed = run_cli(*args)
        assert completed.returncode == 0, completed.stderr
        assert "removing 00001.tar, an incomplete shard of a killed run" in completed.stderr
        assert listing(out) == [
            f"{n:05d}{s}" for n in range(2) for s in (".parquet", ".tar", "_stats.json")
        ]
        with tarfile.open(out / "00001.tar") as tar:
            assert tar.getnames()[0] == "000010000.jpg"


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def marker(out: Path, **owner: Any) -> None:
    """Lay a run marker into ``out`` as a run would, with ``owner``'s fields."""
    out.mkdir(parents=True, exist_ok=True)
    (out / ".dpp-shards-running.json").write_text(json.dumps(owner), encoding="utf-8")


class TestOneRunPerOutput:
    @pytest.mark.skipif(os.name != "posix", reason="POSIX process ids")
    def test_second_run_refused_while_the_first_runs(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes], run_cli: Any
    ) -> None:
        """A run into an output a live run writes to exits 2 in one line and touches nothing.

        The first run's last files are held by the server until the second
        run has ended; the first then finishes with every file in a whole shard.
        """
        image = images["landscape.jpg"]
        entries = [{"id": f"img{n:02d}", "url": server.add(f"/{n}.jpg", image)} for n in range(6)]
        held = Answer(Wait(), raw_ok(image))
        entries += [
            {"id": f"img{n:02d}", "url": server.script(f"/{n}.jpg", held)} for n in range(6, 10)
        ]
        files = tmp_path / "files.json"
        files.write_text(json.dumps(entries), encoding="utf-8")
        out = tmp_path / "shards"
        args = shards_args(files, str(out), "--post-processor-option", "samples_per_shard=4")
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "image"}
        first = subprocess.Popen(
            [str(CLI), *args, "--download-cache", str(tmp_path / "c1"), "--retry-backoff", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            # Under way: a shard published, the next one being written.
            wait_for((out / "00000.parquet").exists, first)
            before = {name: (out / name).stat().st_ino for name in listing(out)}
            second = run_cli(*args)
            after = {name: (out / name).stat().st_ino for name in listing(out) if name in before}
            server.release.set()
            _, stderr = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=30)
        assert second.returncode == 2, second.stderr
        assert "another run writes shards there" in second.stderr
        assert f"pid {first.pid} on host" in second.stderr
        assert "Traceback" not in second.stderr
        # What the first run had written is there still, every file as it was.
        assert {name: ino for name, ino in before.items() if not name.startswith(".")} == {
            name: ino for name, ino in after.items() if not name.startswith(".")
        }
        assert first.returncode == 0, stderr.decode()[-2000:]
        names = listing(out)
        assert not [name for name in names if name.startswith(".")]
        assert sorted(name for name in names if name.endswith(".tar")) == [
            f"{n:05d}.tar" for n in range(3)
        ]
        assert sorted(row["id"] for row in parquet_rows(out)) == [e["id"] for e in entries]

    def test_two_in_one_process_refused(self, tmp_path: Path) -> None:
        """A second shards writer on an output this process writes to is refused until it closes."""
        from dpp_image import OutputInUseError

        out = str(tmp_path / "out")
        first = ShardsPostProcessor(out)
        with pytest.raises(OutputInUseError, match="one run per output"):
            ShardsPostProcessor(out)
        first.close()
        ShardsPostProcessor(out).close()
        assert listing(tmp_path / "out") == []

    @pytest.mark.skipif(os.name != "posix", reason="POSIX process ids")
    def test_live_pid_of_this_host_refused(self, tmp_path: Path) -> None:
        """A marker naming a live process of this host is a run in progress: refused."""
        from dpp_image import OutputInUseError

        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            out = tmp_path / "out"
            marker(out, host=socket.gethostname(), pid=sleeper.pid, run_id="r", first_shard=0)
            with pytest.raises(OutputInUseError, match=f"pid {sleeper.pid} on host"):
                ShardsPostProcessor(str(out))
            # The same pid with another process's start time: the pid was reused.
            marker(
                out,
                host=socket.gethostname(),
                pid=sleeper.pid,
                run_id="r",
                first_shard=0,
                process_start="another-boot:1",
            )
            ShardsPostProcessor(str(out)).close()
        finally:
            sleeper.kill()
            sleeper.wait(timeout=30)
        assert listing(out) == []

    def test_other_hosts_marker_needs_resume_killed(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes], run_cli: Any
    ) -> None:
        """Another host's marker is refused with exit 2 until resume_killed=true says it is over."""
        files = tmp_path / "files.csv"
        write_csv(files, server, images, 3)
        out = tmp_path / "shards"
        marker(out, host="elsewhere.invalid", pid=4242, run_id="r", started="x", first_shard=0)
        (out / "00000.tar").write_bytes(b"half of a shard")
        args = shards_args(files, str(out))
        refused = run_cli(*args)
        assert refused.returncode == 2, refused.stderr
        assert "host 'elsewhere.invalid'" in refused.stderr
        assert "resume_killed=true" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert (out / "00000.tar").read_bytes() == b"half of a shard"
        resumed = run_cli(*args, "--post-processor-option", "resume_killed=true")
        assert resumed.returncode == 0, resumed.stderr
        assert "removing 00000.tar, an incomplete shard of a killed run" in resumed.stderr
        assert listing(out) == ["00000.parquet", "00000.tar", "00000_stats.json"]


#: Runs the command in its own mount namespace with a 1 MiB tmpfs on the output
#: folder (a full disk, for real, without touching the machine's mounts), then
#: copies what the output holds to a folder outside.
FULL_DISK_SCRIPT = """
out=$1; keep=$2; shift 2
mount -t tmpfs -o size=1m tmpfs "$out" || exit 97
"$@"; rc=$?
cp -a "$out/." "$keep/" || exit 98
exit $rc
"""
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]


def tiny_disk_or_skip(tmp_path: Path) -> None:
    """Skip unless this machine lets a process mount a tmpfs in a namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command: a small file system cannot be mounted for the test")
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        [*UNSHARE, 'mount -t tmpfs -o size=4k tmpfs "$0"', str(probe)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs in a user namespace is not permitted: {done.stderr.strip()}")


class TestWriteFailure:
    @pytest.mark.skipif(sys.platform != "linux", reason="a tmpfs in a Linux mount namespace")
    def test_full_disk_drops_the_shard_and_goes_on(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes], run_cli: Any
    ) -> None:
        """The output's disk fills mid-shard: that shard is dropped, the next files fill a new one.

        One file fails, naming the full disk; the dropped shard's earlier
        files are not recorded in the journal, so the rerun does them again
        and every image ends in exactly one whole shard.
        """
        tiny_disk_or_skip(tmp_path)
        # About 32 KB a sample (a 30 KB JPEG, its json and txt): the 1 MiB
        # disk fills near the 31st, and the 14 or so after it fit.
        entries = [
            {"id": f"img{n:02d}", "url": server.add(f"/{n}.jpg", images["landscape.jpg"])}
            for n in range(45)
        ]
        files = tmp_path / "files.json"
        files.write_text(json.dumps(entries), encoding="utf-8")
        out, keep = tmp_path / "shards", tmp_path / "kept"
        out.mkdir()
        keep.mkdir()
        jsonl = tmp_path / "results.jsonl"
        journal = tmp_path / "journal.db"
        args = [
            *shards_args(files, str(out), "--post-processor-option", "samples_per_shard=1000"),
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            f"jsonl.path={jsonl}",
            "--journal",
            str(journal),
        ]
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "image"}
        command = [str(CLI), *args, "--retry-backoff", "0", "--max-retries", "0"]
        command += ["--download-cache", str(tmp_path / "cache")]
        full = subprocess.run(
            [*UNSHARE, FULL_DISK_SCRIPT, "sh", str(out), str(keep), *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert full.returncode == 1, full.stderr[-3000:]
        assert "Traceback" not in full.stderr
        lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        failed = [line for line in lines if line["status"] != "succeeded"]
        assert len(failed) == 1, failed
        message = failed[0]["error"]["message"]
        assert "ShardWriteError" in message
        assert "No space left on device" in message
        assert "a rerun with --journal does them again" in message

        # What the full disk held: one whole shard (the number of the dropped
        # one), no temporary; the files that came after the failure.
        assert listing(keep) == ["00000.parquet", "00000.tar", "00000_stats.json"]
        rows = parquet_rows(keep)
        with tarfile.open(keep / "00000.tar") as tar:
            members = tar.getnames()
        assert sorted(name.split(".")[0] for name in members if name.endswith(".jpg")) == sorted(
            row["key"] for row in rows if row["status"] == "success"
        )
        assert all(row["status"] == "success" for row in rows)
        failed_at = [line["id"] for line in lines].index(failed[0]["id"])
        assert {row["id"] for row in rows} == {line["id"] for line in lines[failed_at + 1 :]}

        # The rerun, with room: only what was not published is done again.
        shutil.copytree(keep, out, dirs_exist_ok=True)
        jsonl.unlink()
        rerun = run_cli(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        redone = [json.loads(line)["id"] for line in jsonl.read_text(encoding="utf-8").splitlines()]
        assert sorted(redone) == sorted(line["id"] for line in lines[: failed_at + 1])
        assert listing(out) == [
            f"{n:05d}{s}" for n in range(2) for s in (".parquet", ".tar", "_stats.json")
        ]
        assert sorted(row["id"] for row in parquet_rows(out)) == [e["id"] for e in entries]
        tars = [str(out / f"{n:05d}.tar") for n in range(2)]
        samples = list(wds.WebDataset(tars, shardshuffle=False))
        assert sorted(json.loads(sample["json"])["id"] for sample in samples) == [
            e["id"] for e in entries
        ]


class TestWrongProcessor:
    def test_other_results_fail_in_words(
        self, tmp_path: Path, server: FileServer, images: dict[str, bytes]
    ) -> None:
        """A result that is not a resized image fails its file, saying to use resize."""
        entries = [{"url": server.add("/a.jpg", images["landscape.jpg"])}]
        outcome = run_pipeline(
            entries,
            "checksum",
            post_processors=[ShardsPostProcessor],
            post_processor_options={"output": str(tmp_path / "out")},
        )
        assert outcome.exit_code == 1
        (failure,) = outcome.failures
        assert failure.error is not None
        assert failure.error.stage == "post_process"
        assert "run it with --processor resize" in failure.error.message
        assert listing(tmp_path / "out") == []


class TestMemory:
    def test_memory_flat_in_the_number_of_images(self, tmp_path: Path) -> None:
        """200 MB of images in one shard: the post-processor's memory peak stays under 10 MB."""
        import tracemalloc

        from download_pipeline_processor import FileData
        from dpp_image import ResizedImage

        image = ResizedImage(os.urandom(1024 * 1024), "jpg", 256, 256, 640, 480, "0" * 64)
        writer = ShardsPostProcessor(str(tmp_path / "out"), samples_per_shard=1000)
        tracemalloc.start()
        try:
            for index in range(200):
                file_data = FileData(url=f"http://127.0.0.1/{index}.jpg")
                writer.post_process(image, file_data)
            writer.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 10 * 1024 * 1024
        assert (tmp_path / "out" / "00000.tar").stat().st_size > 200 * 1024 * 1024
        assert len(writer.take_published()) == 200
