"""A local S3 store that scales with cores: several s3rver processes behind one nginx.

One s3rver is one Node process, so on a machine with many cores it, not the client, bounds a
download. The pool starts one s3rver per core over the same data folder (objects are plain
files, so every process serves every object) and balances requests over them with nginx,
round-robin over keep-alive connections. nginx passes the client's `Host` header through
unchanged, so SigV4 signatures and presigned URLs made for the pool's address still verify.

Files under `<data_dir>/.pool/`: nginx.conf, access.log (one line per request with the
s3rver that served it), error.log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from workflows.exceptions import LLMFlowError
from workflows.local.kinds._nginx import find_nginx
from workflows.local.s3 import LocalS3, free_port


class LocalS3Pool:
    """`processes` s3rver processes over one data folder, behind nginx on one port."""

    def __init__(
        self,
        data_dir: str | Path,
        buckets: tuple[str, ...] = (),
        processes: int = 0,
        port: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / ".pool"
        count = processes or os.cpu_count() or 1
        self.servers = [LocalS3(self.data_dir, buckets) for _ in range(count)]
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._nginx: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The AWS variables that point boto3 (and llmflow's steps) at the pool."""
        return {**self.servers[0].env(), "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        """A boto3 S3 client for the pool."""
        return self.servers[0].client(AWS_ENDPOINT_URL=self.endpoint)

    @property
    def pids(self) -> list[int]:
        """Every process serving requests (s3rvers, nginx and its workers), for CPU accounting."""
        pids = [s.pid for s in self.servers]
        if self._nginx is not None:
            pids += [self._nginx.pid, *_children(self._nginx.pid)]
        return pids

    def render(self) -> str:
        """nginx.conf for the pool."""
        upstreams = "\n".join(f"    server 127.0.0.1:{s.port};" for s in self.servers)
        temp = self.folder / "tmp"
        return f"""daemon off;
worker_processes {len(self.servers)};
pid {self.folder / "nginx.pid"};
events {{ worker_connections 4096; }}
http {{
  log_format pool '$request_method $uri $status upstream=$upstream_addr';
  access_log {self.folder / "access.log"} pool buffer=64k flush=1s;
  client_body_temp_path {temp}/client_body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  upstream s3rver {{
{upstreams}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;
    proxy_buffers 16 256k;
    proxy_buffer_size 256k;
    location / {{
      proxy_pass http://s3rver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }}
  }}
}}
"""

    def start(self, timeout: float = 20.0) -> LocalS3Pool:
        """Start the s3rvers (the first alone, as it creates the buckets), then nginx."""
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / "tmp" / temp).mkdir(parents=True, exist_ok=True)
        try:
            for server in self.servers:
                server.start(timeout)
            conf = self.folder / "nginx.conf"
            conf.write_text(self.render())
            self._nginx = subprocess.Popen(
                [
                    find_nginx(),
                    "-p",
                    str(self.folder),
                    "-c",
                    str(conf),
                    "-e",
                    str(self.folder / "error.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            _wait_listening(self._nginx, self.port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop nginx, then every s3rver."""
        if self._nginx is not None and self._nginx.poll() is None:
            os.killpg(self._nginx.pid, signal.SIGTERM)
            try:
                self._nginx.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._nginx.pid, signal.SIGKILL)
                self._nginx.wait()
        self._nginx = None
        for server in self.servers:
            server.stop()

    def __enter__(self) -> LocalS3Pool:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise LLMFlowError(f"nginx in front of the s3rver pool exited: {err.strip()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise LLMFlowError(f"nginx did not listen on port {port} within {timeout:.0f} s")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found
