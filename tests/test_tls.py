"""https on every shipped downloader: verification, CA bundles, dropped handshakes."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import trustme

from download_helpers import StageFactory, cached_files, download_error
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor.errors import PermanentDownloadError, TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.testing import CLOSE, RECEIVE, Answer, FileServer

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


class TestTls:
    """https is verified against the CA bundle requests would use."""

    def test_verified_download(
        self,
        tls_server: FileServer,
        authority: trustme.CA,
        make_stage: StageFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With the server's CA in REQUESTS_CA_BUNDLE, https downloads, twice on one set-up."""
        bundle = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        body = b"secure" * 5000
        url = tls_server.add(f"/{uuid.uuid4().hex}.bin", body)
        assert url.startswith("https://")
        stage = make_stage()
        for sequence in range(2):
            file_data = FileData(url)
            assert stage.download(sequence, file_data) == len(body)
            assert file_data.local_path is not None
            assert file_data.local_path.read_bytes() == body

    def test_bundle_may_be_a_folder(
        self,
        tls_server: FileServer,
        authority: trustme.CA,
        make_stage: StageFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """REQUESTS_CA_BUNDLE naming a hashed certificate folder works, as in requests."""
        folder = tmp_path / "certs"
        folder.mkdir()
        authority.cert_pem.write_to_path(str(folder / "ca.pem"))
        # OpenSSL finds certificates in a folder by subject-hash names: make them.
        openssl = shutil.which("openssl")
        assert openssl, "the openssl command (Debian: openssl) is needed to hash the folder"
        subprocess.run([openssl, "rehash", str(folder)], check=True, capture_output=True)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(folder))
        url = tls_server.add(f"/{uuid.uuid4().hex}.bin", b"via folder")
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"via folder"

    def test_dropped_handshake_is_transient(
        self, file_server: FileServer, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection closed during the TLS handshake (a busy balancer) is retried."""
        accepted: list[int] = []
        # Reads the ClientHello, then hangs up without a ServerHello.
        file_server.script_connections(Answer(RECEIVE, lambda: accepted.append(1), CLOSE))
        url = file_server.url("/x")
        error = download_error(make_stage(max_retries=1), url.replace("http:", "https:"))
        assert isinstance(error, TransientDownloadError)
        assert len(accepted) == 2  # tried again

    def test_untrusted_certificate_fails_at_once(
        self,
        tls_server: FileServer,
        make_stage: StageFactory,
        cache: DownloadCache,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A certificate no trusted CA signed is a permanent failure: no retry, no file."""
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        path = f"/{uuid.uuid4().hex}.bin"
        url = tls_server.add(path, b"never")
        error = download_error(make_stage(max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        # The same words on every downloader, OpenSSL's reason included.
        assert str(error) == (
            "TLS certificate check failed: CERTIFICATE_VERIFY_FAILED: "
            "unable to get local issuer certificate"
        )
        assert tls_server.request_count(path) == 0
        assert cached_files(cache) == []
