"""A recording stand-in for the Hugging Face Hub: the endpoints llmflow's hf:// source uses.

No Hub-compatible server can run here offline with byte ranges: olah (PyPI), the one mirror
server that serves local git repositories, answers a ranged GET with the whole file, lists no
file sizes or LFS hashes in `/api/models/{repo}/revision/{rev}?blobs=true`, and checks no
token. So this stand-in answers the way huggingface.co does, as huggingface_hub's own code
expects it (`hf_api.model_info`, `list_repo_tree`, `utils/_http.hf_raise_for_status`,
`file_download`), from real git repositories on disk:

- `GET /api/models/{org}/{name}/revision/{rev}[?blobs=true]`: the commit sha and the files,
  with sizes, git blob ids and LFS metadata when `blobs` is asked for;
- `GET /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=true`: the tree listing;
- `GET|HEAD /{org}/{name}/resolve/{rev}/{path}`: a git file's bytes (with `Range`), or for an
  LFS file a 302 to a signed URL on a second listener, the "CDN", which serves the LFS object
  with `Range` and, like a presigned S3 URL, refuses a request that also carries
  `Authorization`. Both carry `X-Repo-Commit`, `ETag`, and for LFS `X-Linked-Etag` and
  `X-Linked-Size`.

Errors carry the Hub's `X-Error-Code` / `X-Error-Message` headers: `RepoNotFound` (401 without
a token, 404 with one, also for a private repo the token cannot see), `RevisionNotFound`,
`EntryNotFound`, `GatedRepo` (403), and 401 "Invalid credentials in Authorization header"
for an unknown token. Repositories are git repositories under `<root>/<org>/<name>`,
written and read by `tests/hub_repo.py`. Every request is recorded, without tokens, as a JSON line.

Run it as `python -m tests.hub_server --root DIR --port P --cdn-port Q --token alice=hf_x`
(`--no-blobs` answers model info without file metadata, as olah does; `--url-ttl` sets the
life of signed URLs); `LocalHub` starts, kills and restarts it for tests.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.hub_repo import HubRepo


class Recorder:
    """Appends one JSON line per request to a file (no tokens: only whose they were)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def __call__(self, **fields: Any) -> None:
        with self._lock, open(self._path, "a") as f:
            f.write(json.dumps(fields) + "\n")


class Hub:
    """The two listeners' shared state: repositories, users, the URL signing key."""

    def __init__(
        self,
        root: Path,
        tokens: dict[str, str],
        cdn_base: str,
        record: Recorder,
        ttl: float,
        no_blobs: bool = False,
    ) -> None:
        self.root = root
        self.no_blobs = no_blobs
        self.users = {token: user for user, token in tokens.items()}
        self.cdn_base = cdn_base
        self.record = record
        self.ttl = ttl
        self.key = os.urandom(32)

    def repo(self, org: str, name: str) -> HubRepo | None:
        path = self.root / org / name
        return HubRepo(path) if (path / ".git").is_dir() else None

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: Hub
    listener = "hub"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        self._status = 0
        self._recorded = False
        parts = urlsplit(self.path)
        self._query = parse_qs(parts.query)
        self._auth = self._who()
        try:
            self.route(method, parts.path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record()

    def _record(self) -> None:
        """Log the request once, before its status line goes out: a client that has the
        response can rely on the log already holding it."""
        if self._recorded:
            return
        self._recorded = True
        self.hub.record(
            server=self.listener,
            method=self.command,
            path=urlsplit(self.path).path,
            query=sorted(self._query),
            range=self.headers.get("Range"),
            auth=self._auth,
            status=self._status,
        )

    def route(self, method: str, path: str) -> None:
        raise NotImplementedError

    def _who(self) -> str:
        header = self.headers.get("Authorization")
        if header is None:
            return "none"
        kind, _, token = header.partition(" ")
        user = self.hub.users.get(token) if kind == "Bearer" else None
        return f"user:{user}" if user else "invalid"

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self._status = status
        self._record()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str = "") -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _serve_bytes(self, size: int, read: Callable[[int, int], bytes], headers: dict) -> None:
        """A 200 of the whole content, or a 206 of the asked range (one range, as the Hub)."""
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
        asked = self.headers.get("Range")
        start, end = 0, size - 1
        status = 200
        if asked is not None:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", asked.strip())
            if not match or match[1] == match[2] == "":
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            if match[1] == "":
                start, end = max(size - int(match[2]), 0), size - 1
            else:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
            if start >= size or start > end:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self._status = status
        self._record()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        offset = start
        while offset < start + length:
            block = read(offset, min(1 << 20, start + length - offset))
            self.wfile.write(block)
            offset += len(block)


class HubHandler(_Handler):
    """huggingface.co: the API and `resolve`."""

    def route(self, method: str, path: str) -> None:
        if self._auth == "invalid":
            self._error(401, "Invalid credentials in Authorization header")
            return
        api = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/(revision|tree)/([^/]+)(/.*)?", path)
        resolve = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path)
        if api and method == "GET":
            org, name, what, rev, sub = api.groups()
            found = self._visible(org, name)
            if found is None:
                return
            commit = self._commit(found, unquote(rev))
            if commit is None:
                return
            if what == "revision" and not sub:
                self._info(org, name, found, commit)
            elif what == "tree":
                self._tree(found, commit, unquote((sub or "/").lstrip("/")))
            else:
                self._error(404, "Sorry, we can't find the page you are looking for.")
        elif resolve:
            org, name, rev, rel = resolve.groups()
            found = self._visible(org, name, reading=True)
            if found is None:
                return
            commit = self._commit(found, unquote(rev))
            if commit is not None:
                self._resolve(org, name, found, commit, unquote(rel))
        else:
            self._error(404, "Sorry, we can't find the page you are looking for.")

    def _visible(self, org: str, name: str, reading: bool = False) -> HubRepo | None:
        """The repository if this caller may see it (and read it), else the Hub's error."""
        found = self.hub.repo(org, name)
        access = found.access() if found else {}
        user = self._auth.removeprefix("user:") if self._auth.startswith("user:") else ""
        granted = user in access.get("granted", [])
        if found is None or (access["private"] and not granted):
            status = 404 if user else 401
            self._error(status, "Repository not found", "RepoNotFound")
            return None
        if access["gated"] and not granted and (reading or not user):
            self._error(
                403 if user else 401,
                f"Access to model {org}/{name} is restricted and you are not in the authorized "
                "list. Visit https://huggingface.co/{org}/{name} to ask for access.",
                "GatedRepo",
            )
            return None
        return found

    def _commit(self, repo: HubRepo, revision: str) -> str | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _info(self, org: str, name: str, repo: HubRepo, commit: str) -> None:
        blobs = self._query.get("blobs", [""])[0].lower() == "true" and not self.hub.no_blobs
        siblings = []
        for entry in repo.entries(commit):
            sibling: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs_sha256:
                    sibling["lfs"] = {
                        "size": entry.lfs_size,
                        "sha256": entry.lfs_sha256,
                        "pointerSize": entry.blob_size,
                    }
            siblings.append(sibling)
        access = repo.access()
        info = {
            "_id": hashlib.sha1(f"{org}/{name}".encode()).hexdigest()[:24],
            "id": f"{org}/{name}",
            "modelId": f"{org}/{name}",
            "author": org,
            "sha": commit,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "private": access["private"],
            "gated": "manual" if access["gated"] else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo: HubRepo, commit: str, folder: str) -> None:
        recursive = self._query.get("recursive", [""])[0].lower() == "true"
        prefix = folder.rstrip("/") + "/" if folder else ""
        items: list[dict[str, Any]] = []
        folders: set[str] = set()
        for entry in repo.entries(commit):
            if not entry.path.startswith(prefix):
                continue
            rest = entry.path[len(prefix) :]
            if "/" in rest:
                parts = rest.split("/")[:-1]
                depth = len(parts) if recursive else 1
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
                if not recursive:
                    continue
            item: dict[str, Any] = {
                "type": "file",
                "oid": entry.oid,
                "size": entry.size,
                "path": entry.path,
            }
            if entry.lfs_sha256:
                item["lfs"] = {
                    "oid": entry.lfs_sha256,
                    "size": entry.lfs_size,
                    "pointerSize": entry.blob_size,
                }
            items.append(item)
        if prefix and not items and not folders:
            self._error(404, f"Entry not found: {folder}", "EntryNotFound")
            return
        items += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders]
        self._send(200, json.dumps(items).encode(), {"Content-Type": "application/json"})

    def _resolve(self, org: str, name: str, repo: HubRepo, commit: str, rel: str) -> None:
        entry = next((e for e in repo.entries(commit) if e.path == rel), None)
        if entry is None:
            self._error(404, "Entry not found", "EntryNotFound")
            return
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.oid}"'}
        if not entry.lfs_sha256:
            data = repo.blob(entry.oid)
            self._serve_bytes(len(data), lambda o, n: data[o : o + n], headers)
            return
        repo_hash = hashlib.sha256(f"{org}/{name}".encode()).hexdigest()
        cdn_path = f"/repos/{repo_hash[:2]}/{repo_hash[2:4]}/{repo_hash}/{entry.lfs_sha256}"
        expires = int(time.time() + self.hub.ttl)
        signature = self.hub.sign(cdn_path, expires)
        disposition = quote("inline; filename=" + rel.rsplit("/", 1)[-1], safe="")
        location = (
            f"{self.hub.cdn_base}{cdn_path}?response-content-disposition={disposition}"
            f"&Expires={expires}&Signature={signature}"
        )
        headers.update(
            {
                "Location": location,
                "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                "X-Linked-Size": str(entry.lfs_size),
                "Content-Type": "text/plain; charset=utf-8",
            }
        )
        self._send(302, f"Found. Redirecting to {location}".encode(), headers)


class CdnHandler(_Handler):
    """The LFS storage behind signed URLs (cdn-lfs / the Xet bridge)."""

    listener = "cdn"

    def route(self, method: str, path: str) -> None:
        match = re.fullmatch(r"/repos/[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})/([0-9a-f]{64})", path)
        if match is None:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        if self.headers.get("Authorization") is not None:
            self._send(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; "
                b"only the X-Amz-Algorithm query parameter, Signature query string parameter or "
                b"the Authorization header should be specified</Message></Error>",
            )
            return
        expires = self._query.get("Expires", ["0"])[0]
        signature = self._query.get("Signature", [""])[0]
        good = hmac.compare_digest(signature, self.hub.sign(path, int(expires or 0)))
        if not good or int(expires or 0) < time.time():
            self._send(
                403,
                b"<Error><Code>AccessDenied</Code><Message>Request has expired or "
                b"its signature does not match</Message></Error>",
            )
            return
        sha256 = match[2]
        obj = next(
            (
                p
                for p in self.hub.root.glob(
                    f"*/*/.git/lfs/objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"
                )
            ),
            None,
        )
        if obj is None:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return
        with open(obj, "rb") as f:
            size = os.fstat(f.fileno()).st_size

            def read(offset: int, length: int) -> bytes:
                return os.pread(f.fileno(), length, offset)

            self._serve_bytes(size, read, {"ETag": f'"{sha256}"'})


def serve(
    root: Path,
    port: int,
    cdn_port: int,
    tokens: dict[str, str],
    log: Path,
    ttl: float,
    no_blobs: bool = False,
) -> None:
    """Run both listeners until SIGTERM."""
    hub = Hub(root, tokens, f"http://127.0.0.1:{cdn_port}", Recorder(log), ttl, no_blobs)
    servers = []
    for handler, listen in ((HubHandler, port), (CdnHandler, cdn_port)):
        bound = type(handler.__name__, (handler,), {"hub": hub})
        server = ThreadingHTTPServer(("127.0.0.1", listen), bound)
        server.daemon_threads = True
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=servers[0].shutdown).start())
    servers[0].serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cdn-port", type=int, required=True)
    parser.add_argument("--token", action="append", default=[], help="user=token")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--url-ttl", type=float, default=3600.0, help="life of signed URLs (s)")
    parser.add_argument(
        "--no-blobs", action="store_true", help="list no file metadata in model info (as olah)"
    )
    args = parser.parse_args(argv)
    tokens = dict(t.split("=", 1) for t in args.token)
    serve(args.root, args.port, args.cdn_port, tokens, args.log, args.url_ttl, args.no_blobs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalHub:
    """The stand-in as a process on 127.0.0.1; killable and restartable on the same ports."""

    def __init__(
        self,
        root: Path,
        tokens: dict[str, str],
        url_ttl: float = 3600.0,
        no_blobs: bool = False,
    ) -> None:
        self.root = root
        self.tokens = tokens
        self.url_ttl = url_ttl
        self.no_blobs = no_blobs
        self.port, self.cdn_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / f"{root.name}-requests.jsonl"
        self._proc: subprocess.Popen[bytes] | None = None

    def env(self, user: str = "") -> dict[str, str]:
        """`HF_ENDPOINT`, and `HF_TOKEN` of `user` (the first user by default)."""
        token = self.tokens[user or next(iter(self.tokens))]
        return {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": token}

    def start(self, timeout: float = 20.0) -> LocalHub:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "tests.hub_server", "--root", str(self.root)]
        cmd += ["--port", str(self.port), "--cdn-port", str(self.cdn_port), "--log", str(self.log)]
        cmd += ["--url-ttl", str(self.url_ttl)] + (["--no-blobs"] if self.no_blobs else [])
        for user, token in self.tokens.items():
            cmd += ["--token", f"{user}={token}"]
        repo_root = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(
            cmd, cwd=repo_root, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"hub stand-in exited at start: {err.strip()[-500:]}")
            try:
                for port in (self.port, self.cdn_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"hub stand-in did not listen within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL: open connections drop mid-transfer."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, oldest first."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
