"""nginx on 127.0.0.1 with a config of its own, run as a child (``daemon off``)."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from .processes import ChildServer, free_port

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

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name localhost;
        root {root};
        location / {{ }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed")
    return found


class NginxServer:
    """Serves ``root`` on a free port of 127.0.0.1 until :meth:`stop`."""

    def __init__(self, root: Path, prefix: Path, workers: int = 2) -> None:
        self.root = root
        self.prefix = prefix
        self.workers = workers
        self.port = 0
        self._child: ChildServer | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The nginx master's PID while it runs."""
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Write the config and start nginx; wait until it accepts connections."""
        self.port = free_port()
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        config = self.prefix / "nginx.conf"
        config.write_text(
            CONFIG_TEMPLATE.format(
                workers=self.workers,
                user=pwd.getpwuid(os.getuid()).pw_name,
                prefix=self.prefix,
                port=self.port,
                root=self.root,
            )
        )
        argv = [nginx_binary(), "-p", str(self.prefix), "-c", str(config)]
        # -e keeps nginx from touching /var/log/nginx before it has read the config.
        argv += ["-e", str(self.prefix / "error.log")]
        self._child = ChildServer("nginx", argv, self.prefix / "stdout.log")
        self._child.start(self.port)

    def stop(self) -> None:
        """Stop nginx by its master's PID."""
        if self._child is not None:
            self._child.stop()
            self._child = None
