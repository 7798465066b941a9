"""A stand-in for a vLLM pod in the gateway mirror tests: records each request, answers as told.

Run as a pod's command (the test's `LLMFLOW_VLLM_PYTHON` wrapper execs it with vLLM's argv);
it listens on the `--port` the local runtime gives. Env: STAND_IN_ROLE (the name it answers
with), STAND_IN_RECORD (a JSON-lines file: one line per request on arrival, and one when a
streamed answer was written to its end), STAND_IN_CONTROL (a JSON file read per request:
`{"<role>": {"sleep": 2, "status": 500}}`). `GET /health` (the probes) is neither recorded
nor slowed down; paths under `/stream` are answered in three chunks 50 ms apart.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROLE = os.environ["STAND_IN_ROLE"]
RECORD = Path(os.environ["STAND_IN_RECORD"])
CONTROL = Path(os.environ["STAND_IN_CONTROL"])
_LOCK = threading.Lock()


def record(entry: dict[str, Any]) -> None:
    with _LOCK, RECORD.open("a") as out:
        out.write(json.dumps(entry) + "\n")


def control() -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(CONTROL.read_text()).get(ROLE) or {}
        return found
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body as one write: no 40 ms delayed-ACK stall

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/health":
            self.reply(200, b"ok")
            return
        request_id = self.headers.get("X-Request-Id", "")
        record(
            {
                "role": ROLE,
                "method": self.command,
                "path": self.path,
                "body": body.decode(),
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "request_id": request_id,
                "at": time.time(),
            }
        )
        told = control()
        time.sleep(float(told.get("sleep", 0)))
        status = int(told.get("status", 200))
        if self.path.startswith("/stream"):
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = f"data: {ROLE} {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            record({"role": ROLE, "event": "stream-done", "request_id": request_id})
            return
        answer = {"role": ROLE, "request_id": request_id, "method": self.command, "path": self.path}
        self.reply(status, json.dumps(answer).encode())

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
