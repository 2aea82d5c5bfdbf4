"""Debian's nginx in front of one Threadline process, with nginx's own proxy defaults.

The configuration is one server block that proxies everything to the app. The proxy directives it
writes out are nginx's defaults (a test may shorten the read timeout); the rest only keeps every
file nginx writes (pid, logs, temp files) in a directory of its own, away from a system nginx.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# Debian's package installs it here; /usr/sbin is not on every user's PATH.
_DEBIAN_NGINX = "/usr/sbin/nginx"

CONF = """\
# Written by Threadline's reliability suite. Debian's /etc/nginx/nginx.conf sets no proxy_* directive,
# so a site proxied with it gets nginx's defaults: the timeouts and buffering are written out below.
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{}}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_read_timeout {read_timeout_s}s;
            proxy_send_timeout 60s;
            proxy_connect_timeout 60s;
            proxy_buffering on;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return _DEBIAN_NGINX if Path(_DEBIAN_NGINX).exists() else None


class Nginx:
    """`nginx -p <root> -c <root>/nginx.conf -g 'daemon off;'`, proxying 127.0.0.1:`port` to the app."""

    def __init__(self, *, upstream_port: int, read_timeout_s: int = 60) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed: `make nginx` installs Debian's package")
        self.binary = binary
        # Not pytest's tmp_path (0700 all the way down): as root, nginx's workers run as `nobody`
        # and must reach the temp directories.
        self.root = Path(tempfile.mkdtemp(prefix="threadline-nginx-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.conf_path = self.root / "nginx.conf"
        self.error_log = self.root / "error.log"
        self.conf = CONF.format(
            root=self.root, port=self.port, upstream_port=upstream_port, read_timeout_s=read_timeout_s
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.conf_path.write_text(self.conf)
        # -e: the error log from the first line on (Debian's build would start with stderr).
        command = [
            self.binary, "-p", str(self.root), "-c", str(self.conf_path), "-e", str(self.error_log),
            "-g", "daemon off;",
        ]  # fmt: skip
        with (self.root / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._accepts():
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen within {READY_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), SIGKILL if it outstays the timeout; then remove its files."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT_S)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
