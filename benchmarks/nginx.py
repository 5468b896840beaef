"""nginx on 127.0.0.1 with a config of its own, run as a child (``daemon off``)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from .processes import ChildServer, free_ports
from .tls import TlsFiles

#: The nginx release that replaced ``listen ... http2`` with the ``http2 on;`` directive.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)
#: Where nginx logs, per request on the HTTP/2 server, the protocol it spoke.
PROTOCOL_LOG = "h2-protocols.log"

CONFIG_TEMPLATE = """\
daemon off;
master_process on;
worker_processes {workers};
user {user};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    open_file_cache max=20000 inactive=60s;
    default_type application/octet-stream;
    types {{ }}
    # One line per request, only where a server turns it on: the HTTP/2 case
    # checks which protocol each tool really spoke.
    log_format protocol '$server_protocol';

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name localhost;
        root {root};
        location / {{ }}
{extra_locations}    }}
{tls_servers}}}
"""

#: A folder served from outside the root: ``/NAME/FILE``, and ``/NAME/rN/FILE`` as the
#: same file under a distinct URL (lists longer than the corpus: one URL per entry).
EXTRA_LOCATION = """\
        location ~ ^/{name}/(?:r[0-9]+/)?([^/]+)$ {{
            alias {path}/$1;
        }}
"""

#: The TLS servers: HTTPS offering only HTTP/1.1, and HTTPS offering HTTP/2 (ALPN h2).
TLS_TEMPLATE = """\
    ssl_certificate {certificate};
    ssl_certificate_key {private_key};
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:10m;

    server {{
        listen 127.0.0.1:{https_port} ssl backlog=4096;
        server_name localhost;
        root {root};
        location / {{ }}
    }}

    server {{
        listen 127.0.0.1:{h2_port} ssl{h2_listen_flag} backlog=4096;
{h2_directive}        server_name localhost;
        root {root};
        access_log {prefix}/{protocol_log} protocol;
        location / {{ }}
    }}
"""


def nginx_binary() -> str:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed")
    return found


def nginx_version(binary: str) -> tuple[int, ...]:
    """``nginx -v``'s version as a tuple of ints; (0,) when it cannot be read."""
    completed = subprocess.run(
        [binary, "-v"], check=False, capture_output=True, text=True, timeout=30
    )
    found = re.search(r"nginx/(\d+(?:\.\d+)*)", completed.stderr + completed.stdout)
    return tuple(int(part) for part in found.group(1).split(".")) if found else (0,)


def http2_syntax(version: tuple[int, ...]) -> tuple[str, str]:
    """(flag after ``listen ... ssl``, directive line) that turn HTTP/2 on in this nginx."""
    if version >= HTTP2_DIRECTIVE_SINCE:
        return "", "        http2 on;\n"
    return " http2", ""


class NginxServer:
    """Serves ``root`` on free ports of 127.0.0.1 until :meth:`stop`.

    Always over plain HTTP; with ``tls`` also over HTTPS (HTTP/1.1 only) and
    over HTTPS with HTTP/2 offered, each on a port of its own.  Each of
    ``extra`` (URL folder name -> folder) is served over plain HTTP as
    ``/NAME/FILE``, and as ``/NAME/rN/FILE`` too (see ``EXTRA_LOCATION``).
    """

    def __init__(
        self,
        root: Path,
        prefix: Path,
        workers: int = 2,
        tls: TlsFiles | None = None,
        extra: dict[str, Path] | None = None,
    ) -> None:
        self.root = root
        self.prefix = prefix
        self.workers = workers
        self.tls = tls
        self.extra = dict(extra or {})
        self.port = 0
        self.https_port = 0
        self.h2_port = 0
        self._child: ChildServer | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        """``https://127.0.0.1:PORT`` of the HTTPS server that speaks only HTTP/1.1."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def h2_url(self) -> str:
        """``https://127.0.0.1:PORT`` of the HTTPS server that offers HTTP/2."""
        return f"https://127.0.0.1:{self.h2_port}"

    @property
    def protocol_log(self) -> Path:
        """The HTTP/2 server's log: one ``$server_protocol`` line per request."""
        return self.prefix / PROTOCOL_LOG

    @property
    def pid(self) -> int | None:
        """The nginx master's PID while it runs."""
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Write the config and start nginx; wait until it accepts connections."""
        self.port, self.https_port, self.h2_port = free_ports(3)
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        binary = nginx_binary()
        tls_servers = ""
        if self.tls is not None:
            flag, directive = http2_syntax(nginx_version(binary))
            self.protocol_log.unlink(missing_ok=True)
            tls_servers = "\n" + TLS_TEMPLATE.format(
                certificate=self.tls.certificate,
                private_key=self.tls.private_key,
                https_port=self.https_port,
                h2_port=self.h2_port,
                h2_listen_flag=flag,
                h2_directive=directive,
                root=self.root,
                prefix=self.prefix,
                protocol_log=PROTOCOL_LOG,
            )
        extra_locations = "".join(
            EXTRA_LOCATION.format(name=name, path=path) for name, path in self.extra.items()
        )
        config = self.prefix / "nginx.conf"
        config.write_text(
            CONFIG_TEMPLATE.format(
                workers=self.workers,
                user=pwd.getpwuid(os.getuid()).pw_name,
                prefix=self.prefix,
                port=self.port,
                root=self.root,
                extra_locations=extra_locations,
                tls_servers=tls_servers,
            )
        )
        argv = [binary, "-p", str(self.prefix), "-c", str(config)]
        # -e keeps nginx from touching /var/log/nginx before it has read the config.
        argv += ["-e", str(self.prefix / "error.log")]
        self._child = ChildServer("nginx", argv, self.prefix / "stdout.log")
        self._child.start(self.port)

    def stop(self) -> None:
        """Stop nginx by its master's PID."""
        if self._child is not None:
            self._child.stop()
            self._child = None
