"""What every transfer of a run is set up with, worked out once from the settings and environment.

The environment is read as the ``requests`` downloader reads it, so that one
machine's set-up means the same thing to every downloader: proxies from
``http_proxy``/``HTTPS_PROXY``/``NO_PROXY`` (either case, as requests has
it; libcurl alone would ignore upper-case ``HTTP_PROXY``), the CA bundle from
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or certifi, and ``.netrc`` from
``NETRC`` or the home folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from download_pipeline_processor.http_rules import (
    ca_bundle,
    check_headers,
    without_credentials,
)
from download_pipeline_processor.options import merge_headers
from download_pipeline_processor.settings import PipelineSettings

__all__ = [
    "MAX_BUFFER",
    "MIN_BUFFER",
    "CurlConfig",
    "Proxies",
    "entry_header_lines",
    "header_lines",
    "netrc_file",
]


#: libcurl's receive buffer is 1 KiB to 10 MiB (CURLOPT_BUFFERSIZE).
MIN_BUFFER = 1024
MAX_BUFFER = 10 * 1024 * 1024

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def header_lines(headers: dict[str, str]) -> list[str]:
    """``Name: value`` lines for CURLOPT_HTTPHEADER.

    libcurl reads ``Name:`` (no value) as "do not send Name", so an empty
    value is written ``Name;``, its form for an empty header.
    """
    return [f"{name}: {value}" if value else f"{name};" for name, value in headers.items()]


def entry_header_lines(config: CurlConfig, extra: dict[str, str]) -> tuple[list[str], list[str]]:
    """(the headers, the headers after a redirect to another host) with an entry's own."""
    merged = merge_headers(config.header_map, extra)
    return header_lines(merged), header_lines(without_credentials(merged))


def netrc_file() -> str | None:
    """The ``.netrc`` requests would read (``NETRC``, else the home folder's), if it exists."""
    for candidate in (os.environ.get("NETRC") or "~/.netrc", "~/_netrc"):
        path = Path(candidate).expanduser()
        if path.is_file():
            return str(path)
    return None


class Proxies:
    """The proxy of each origin, by requests' reading of the environment; cached per origin."""

    def __init__(self) -> None:
        self.enabled = any(
            name.lower() in _PROXY_VARIABLES and value for name, value in os.environ.items()
        )
        self._by_origin: dict[str, str] = {}

    def for_url(self, url: str) -> str:
        """The proxy URL for ``url``, or "" for a direct connection."""
        if not self.enabled:
            return ""
        scheme, _, rest = url.partition("://")
        authority = rest.partition("/")[0].partition("?")[0].rpartition("@")[2]
        origin = f"{scheme.lower()}://{authority.lower()}"
        proxy = self._by_origin.get(origin)
        if proxy is None:
            import requests.utils  # only when a proxy variable is set

            found = requests.utils.select_proxy(origin, requests.utils.get_environ_proxies(origin))
            proxy = self._by_origin[origin] = found or ""
        return proxy


@dataclass
class CurlConfig:
    """The set-up of every easy handle of one downloader."""

    timeout: float
    max_redirects: int
    #: libcurl's receive buffer: the most a write callback is given at once.
    buffer_size: int
    #: Body bytes gathered before one write to the cache file.
    block_size: int
    headers: list[str]
    #: The headers sent after a redirect to another host: no credentials.
    safe_headers: list[str]
    #: The run's headers by name, for an entry's own to go over.
    header_map: dict[str, str]
    ca_file: str | None
    ca_path: str | None
    netrc_file: str | None
    proxies: Proxies = field(default_factory=Proxies)

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> CurlConfig:
        check_headers(settings.headers)
        # The bytes as served: no transparent decompression, exact lengths.
        headers = merge_headers({"Accept-Encoding": "identity"}, settings.request_headers)
        bundle = ca_bundle()
        folder = Path(bundle).is_dir()  # requests accepts a hashed folder too
        return cls(
            timeout=settings.timeout,
            max_redirects=settings.max_redirects,
            buffer_size=min(max(settings.read_size, MIN_BUFFER), MAX_BUFFER),
            block_size=settings.read_size,
            headers=header_lines(headers),
            safe_headers=header_lines(without_credentials(headers)),
            header_map=headers,
            ca_file=None if folder else bundle,
            ca_path=bundle if folder else None,
            netrc_file=netrc_file(),
        )
