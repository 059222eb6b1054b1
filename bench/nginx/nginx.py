"""Start and stop the benchmark nginx: fixed OpenAI / Anthropic / Gemini bodies on 127.0.0.1.

    python bench/nginx/nginx.py start      # prints the base URL and the prefix directory
    python bench/nginx/nginx.py stop PREFIX

From Python (what the benchmark scripts do)::

    with Nginx() as upstream:
        upstream.base_urls["openai"]          # http://127.0.0.1:PORT/openai/v1
        upstream.stream_base_urls["openai"]   # same protocol, SSE bodies

Everything (config, pid, logs, temp dirs) lives in a fresh temp directory; the port is a free
one picked at start. Debian's ``nginx-light`` package is enough.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
BODIES = HERE / "bodies"
TEMPLATE = HERE / "nginx.conf.template"

__all__ = ["Nginx", "find_nginx"]


def find_nginx() -> str | None:
    """The nginx binary, or None when it is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """One private nginx instance; a context manager."""

    def __init__(self, prefix: str | None = None) -> None:
        self.binary = find_nginx()
        self.prefix = pathlib.Path(prefix) if prefix else None
        self.port = 0
        self.url = ""

    @property
    def base_urls(self) -> dict[str, str]:
        """Router ``base_url`` per provider type, answering with JSON bodies."""
        return {
            "openai": f"{self.url}/openai/v1",
            "anthropic": f"{self.url}/anthropic",
            "google": f"{self.url}/google",
        }

    @property
    def stream_base_urls(self) -> dict[str, str]:
        """Router ``base_url`` per provider type, answering with SSE bodies."""
        return {
            "openai": f"{self.url}/openai-sse/v1",
            "anthropic": f"{self.url}/anthropic-sse",
            "google": f"{self.url}/google",  # Gemini streams have their own URL
        }

    def start(self, attempts: int = 5) -> Nginx:
        if self.binary is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
        if self.prefix is None:
            self.prefix = pathlib.Path(tempfile.mkdtemp(prefix="router-bench-nginx-"))
        # Readable by the worker user when started as root (workers then run as nobody).
        os.chmod(self.prefix, 0o755)
        bodies = self.prefix / "bodies"
        if not bodies.exists():
            shutil.copytree(BODIES, bodies)
        for path in [bodies, *bodies.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        last = ""
        for _ in range(attempts):  # the free port may be taken between probe and bind
            self.port = _free_port()
            conf = TEMPLATE.read_text()
            for key, value in (
                ("@PREFIX@", str(self.prefix)),
                ("@PORT@", str(self.port)),
                ("@BODIES@", str(bodies)),
            ):
                conf = conf.replace(key, value)
            (self.prefix / "nginx.conf").write_text(conf)
            run = subprocess.run(
                [self.binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if run.returncode == 0:
                self.url = f"http://127.0.0.1:{self.port}"
                self._wait_ready()
                return self
            last = run.stderr.strip()
        raise RuntimeError(f"nginx did not start: {last}")

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx started but does not answer") from None
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop this instance (by its own pid file) and remove its directory."""
        if self.prefix is None:
            return
        pid_file = self.prefix / "nginx.pid"
        if pid_file.exists() and self.binary:
            subprocess.run(
                [
                    self.binary,
                    "-p",
                    str(self.prefix),
                    "-c",
                    str(self.prefix / "nginx.conf"),
                    "-s",
                    "stop",
                ],
                capture_output=True,
                timeout=30,
            )
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "start":
        server = Nginx().start()
        print(f"url={server.url}")
        print(f"prefix={server.prefix}")
        for name, url in server.base_urls.items():
            print(f"{name}={url}  (stream: {server.stream_base_urls[name]})")
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        Nginx(prefix=argv[1]).stop()
        return 0
    print("usage: nginx.py start | nginx.py stop PREFIX", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
