"""A throwaway certificate authority and a server certificate for nginx on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA every client is told to trust, and nginx's certificate and key."""

    ca_bundle: Path
    certificate: Path
    private_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A new CA and a certificate for ``127.0.0.1`` and ``localhost`` signed by it.

    Made fresh on every run with ``trustme`` (the project's test extra), so no
    key outlives the run and nothing is fetched from the network.  The keys
    are trustme's default (ECDSA P-256), which every tool here accepts.
    """
    import trustme  # only the TLS cases need it; install.py provides it

    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="dpp benchmark")
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(folder / "ca.pem", folder / "server-chain.pem", folder / "server-key.pem")
    authority.cert_pem.write_to_path(str(files.ca_bundle))
    # nginx wants the leaf first and any intermediates after it in one file.
    files.certificate.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.private_key))
    files.private_key.chmod(0o600)
    return files
