"""The Hugging Face Hub as a weights source: `hf://org/name@revision`.

The listing is one API call (`GET /api/models/{repo}/revision/{rev}?blobs=true`, through
huggingface_hub's `model_info`): it resolves the revision to a commit sha and gives every
file's size, git blob id and, for LFS files, the SHA-256 of the content. Those become the
checksums every downloaded byte is verified against (`sha256:` for LFS files, `git-sha1:` for
files kept in git), and the commit sha is recorded in the cache manifest: a branch that moves
later cannot change what an entry holds.

Bytes are read as the S3 source reads them: parallel ranged GETs, each worker on its own
keep-alive connections, of `{endpoint}/{repo}/resolve/{commit}/{path}`. The Hub answers LFS
files with a redirect to a signed URL on a storage host (cdn-lfs, the Xet bridge); the final
URL is remembered per file so later chunks go straight there, and the token is sent only to
the Hub's own origin, never to the storage host (as huggingface_hub does). A remembered URL
that has expired is resolved again.

Settings come from the environment, in a pod from a Kubernetes Secret: `HF_TOKEN` (needed
for private and gated models) and `HF_ENDPOINT` (a mirror; default https://huggingface.co).
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from steps.errors import IntegrityError, SourceError, TransferError
from steps.weights.sources import RangeReader, RemoteFile, Sink, Source, stream_body
from steps.weights.uri import SourceURI

if TYPE_CHECKING:
    from http.client import HTTPResponse

DEFAULT_ENDPOINT = "https://huggingface.co"

#: Redirects followed from `resolve` to the bytes (the Hub uses one, a renamed repo two).
MAX_REDIRECTS = 5

#: Pauses before retrying a listing that failed to connect or got a 5xx.
LISTING_BACKOFF_S = (0.5, 2.0)

#: Where to fix a refused token, for messages.
_TOKEN_FIX = (
    "check the Secret that sets HF_TOKEN (the spec's storage.hf_token_secret; locally, the "
    "HF_TOKEN variable) and that its account can read the repository"
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: What a storage host answers for a signed URL that has expired (S3: 400 or 403).
_EXPIRED = frozenset({400, 401, 403, 404, 410})


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The hub client's connection errors, whichever HTTP library its version uses.

    httpx2 in huggingface_hub 2.x, httpx in 1.x; requests' errors (0.x) are OSErrors.
    """
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return (*found, OSError)


class HFSource(Source):
    """A model repository on the Hugging Face Hub (or a Hub-compatible mirror) at one revision."""

    def __init__(self, uri: SourceURI) -> None:
        super().__init__(uri)
        self.endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise SourceError(
                f"source {uri.raw!r}: HF_ENDPOINT={self.endpoint!r} is not an http(s) URL; "
                f"unset it for {DEFAULT_ENDPOINT} or give the mirror's URL"
            )
        self._token = os.environ.get("HF_TOKEN", "").strip()
        self._commit = ""
        self._urls: dict[str, str] = {}
        self._urls_lock = threading.Lock()

    @property
    def repo(self) -> str:
        """The repository id, `org/name`."""
        return self.uri.location

    def list_files(self) -> list[RemoteFile]:
        """Resolve the revision and list the files with their checksums (one API call).

        A mirror that leaves sizes out of that answer costs a second call, the tree listing
        at the resolved commit.
        """
        info = self._listing(self._model_info)
        if not info.sha:
            raise SourceError(
                f"source {self.uri.raw!r}: {self.endpoint} named no commit for revision "
                f"{self.uri.revision!r}; check that HF_ENDPOINT is a Hugging Face Hub or mirror"
            )
        self._commit = info.sha
        siblings = info.siblings or []
        if all(s.size is not None and s.blob_id for s in siblings):
            files = [_remote_file(s.rfilename, s.size, s.blob_id, s.lfs) for s in siblings]
        else:
            files = self._listing(self._tree_files)
        if not files:
            raise SourceError(
                f"source {self.uri.raw!r}: the repository holds no files at commit {info.sha}"
            )
        return sorted(files, key=lambda f: f.path)

    def resolved_revision(self) -> str:
        """The commit sha the revision resolved to (after `list_files`)."""
        return self._commit

    def reader(self) -> RangeReader:
        """A reader with its own keep-alive connections (to the Hub and the storage host)."""
        return _HubRangeReader(self)

    # -- listing --------------------------------------------------------------------------

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self._token or False, library_name="llmflow")

    def _model_info(self) -> Any:
        return self._api().model_info(
            self.repo, revision=self.uri.revision, files_metadata=True, timeout=60
        )

    def _tree_files(self) -> list[RemoteFile]:
        from huggingface_hub.hf_api import RepoFile

        tree = self._api().list_repo_tree(self.repo, revision=self._commit, recursive=True)
        return [
            _remote_file(e.path, e.size, e.blob_id, e.lfs) for e in tree if isinstance(e, RepoFile)
        ]

    def _listing(self, call: Any) -> Any:
        """Run a listing call, retrying connection errors and 5xx, mapping errors to ours."""
        for attempt in range(len(LISTING_BACKOFF_S) + 1):
            try:
                return self._mapped(call)
            except TransferError:
                if attempt == len(LISTING_BACKOFF_S):
                    raise
                time.sleep(LISTING_BACKOFF_S[attempt])
        raise AssertionError("unreachable")

    def _mapped(self, call: Any) -> Any:
        try:
            from huggingface_hub.errors import (
                DisabledRepoError,
                GatedRepoError,
                HfHubHTTPError,
                OfflineModeIsEnabled,
                RepositoryNotFoundError,
                RevisionNotFoundError,
            )
        except ImportError:
            raise SourceError(
                f"source {self.uri.raw!r}: hf:// sources need huggingface_hub; install it with "
                "`pip install 'llmflow[hf]'`"
            ) from None

        where = f"source {self.uri.raw!r}"
        page = f"{self.endpoint}/{self.repo}"
        try:
            return call()
        except GatedRepoError:
            raise SourceError(self._gated(where)) from None
        except RepositoryNotFoundError:
            raise SourceError(
                f"{where}: repository {self.repo!r} not found at {self.endpoint}, or it is "
                + (
                    f"private and the token cannot see it; check the name ({page}) and {_TOKEN_FIX}"
                    if self._token
                    else "private and no HF_TOKEN is set; check the name, or set HF_TOKEN in "
                    "the Secret the spec names (storage.hf_token_secret)"
                )
            ) from None
        except RevisionNotFoundError:
            raise SourceError(
                f"{where}: revision {self.uri.revision!r} does not exist in {self.repo}; use a "
                f"branch, tag or full commit sha listed at {page}/commits/main"
            ) from None
        except DisabledRepoError:
            raise SourceError(f"{where}: the repository is disabled on the Hub") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise _status_error(
                where, status, exc.server_message or "", bool(self._token)
            ) from None
        except OfflineModeIsEnabled:
            raise SourceError(
                f"{where}: HF_HUB_OFFLINE is set, so the Hub cannot be asked; unset it, or use "
                "a file:// source for a local copy"
            ) from None
        except _transport_errors() as exc:
            raise TransferError(
                f"{where}: cannot reach {self.endpoint} ({type(exc).__name__}: {exc}); check "
                "HF_ENDPOINT and the network"
            ) from None

    def _gated(self, where: str) -> str:
        fix = (
            "accept its conditions at "
            f"{self.endpoint}/{self.repo} with the account whose token is in HF_TOKEN"
        )
        if not self._token:
            fix += ", and set HF_TOKEN in the Secret the spec names (storage.hf_token_secret)"
        return f"{where}: {self.repo} is a gated model; {fix}"

    # -- URLs for the readers -------------------------------------------------------------

    def resolve_url(self, file: RemoteFile) -> str:
        """The file's URL at the resolved commit (immutable, whatever the branch does)."""
        revision = self._commit or quote(self.uri.revision, safe="")  # listed first, normally
        return f"{self.endpoint}/{self.repo}/resolve/{revision}/{quote(file.path)}"

    def final_url(self, file: RemoteFile) -> str | None:
        """Where the bytes were last found after redirects, shared by all workers."""
        with self._urls_lock:
            return self._urls.get(file.path)

    def remember(self, file: RemoteFile, url: str | None) -> None:
        """Record (or with None, forget) the final URL of a file."""
        with self._urls_lock:
            if url is None:
                self._urls.pop(file.path, None)
            else:
                self._urls[file.path] = url

    def headers_for(self, url: str) -> dict[str, str]:
        """Request headers for a URL: the token only for the Hub's own origin."""
        headers = {"User-Agent": "llmflow", "Accept-Encoding": "identity"}
        if self._token and _origin(url) == _origin(self.endpoint):
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def where(self, file: RemoteFile) -> str:
        """A file's name for messages (never a signed URL)."""
        return f"{self.uri.raw}/{file.path} (commit {self._commit[:12]})"

    def gated_message(self, file: RemoteFile) -> str:
        """What to do when reading a file of a gated model is refused."""
        return self._gated(self.where(file))

    @property
    def has_token(self) -> bool:
        """Whether HF_TOKEN is set."""
        return bool(self._token)


def _remote_file(path: str, size: int | None, blob_id: str | None, lfs: Any) -> RemoteFile:
    """A listed file, tagged by its LFS SHA-256 or its git blob id, which are also checksums."""
    if lfs:
        sha256 = lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
        return RemoteFile(path, int(lfs["size"]), sha256, checksum=f"sha256:{sha256}")
    oid = blob_id or ""
    return RemoteFile(path, int(size or 0), oid, checksum=f"git-sha1:{oid}")


def _status_error(where: str, status: int, message: str, has_token: bool) -> Exception:
    """Our error for an HTTP status from the Hub or its storage host."""
    said = f": {message}" if message else ""
    if status == 401:
        if has_token:
            return SourceError(f"{where}: the Hub refused the token (HTTP 401{said}); {_TOKEN_FIX}")
        return SourceError(
            f"{where}: the Hub wants a token (HTTP 401{said}); set HF_TOKEN in the Secret the "
            "spec names (storage.hf_token_secret)"
        )
    if status == 403:
        return SourceError(f"{where}: access denied (HTTP 403{said}); {_TOKEN_FIX}")
    if status == 404:
        return SourceError(f"{where}: not found (HTTP 404{said}); check the repository and path")
    if status == 416:
        return IntegrityError(f"{where}: the server's file is shorter than listed; run again")
    if status == 429:
        return TransferError(f"{where}: rate limited by the Hub (HTTP 429); run again later")
    if status >= 500:
        return TransferError(f"{where}: server error HTTP {status}{said}; run again")
    return SourceError(f"{where}: unexpected HTTP {status}{said}")


class _HubRangeReader(RangeReader):
    """Ranged GETs following the Hub's redirects, one keep-alive connection per host."""

    def __init__(self, source: HFSource) -> None:
        self._source = source
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def _connection(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conn = self._conns.get(key)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = self._conns[key] = cls(parts.netloc, timeout=60)
        return conn

    def _drop(self, url: str) -> None:
        parts = urlsplit(url)
        conn = self._conns.pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()

    def read_range(
        self, file: RemoteFile, offset: int, length: int, buffer: memoryview, sink: Sink
    ) -> None:
        if length == 0:
            return
        try:
            response = self._open(file, offset, length)
            stream_body(response, self._source.where(file), offset, length, buffer, sink)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransferError(
                f"{self._source.where(file)}: {type(exc).__name__}: {exc}"
            ) from None
        except BaseException:
            self.close()  # a response left half read makes its connection unusable
            raise

    def _open(self, file: RemoteFile, offset: int, length: int) -> HTTPResponse:
        """Send the ranged GET, following redirects; returns the response with the bytes."""
        source = self._source
        remembered = source.final_url(file)
        url = remembered or source.resolve_url(file)
        for _ in range(MAX_REDIRECTS + 2):
            try:
                response = self._send(url, offset, length)
            except (OSError, http.client.HTTPException):
                if url != remembered:
                    raise
                response = None  # the remembered storage host is gone: ask the Hub again
            if response is not None and response.status in _REDIRECTS:
                response.read()
                url = urljoin(url, response.getheader("Location", ""))
                continue
            if response is not None and response.status in (206, 200):
                self._check_range(file, response, offset, length)
                if url != source.resolve_url(file) and url != remembered:
                    source.remember(file, url)
                return response
            body = response.read(4096) if response is not None else b""
            if url == remembered and (response is None or response.status in _EXPIRED):
                source.remember(file, None)  # e.g. an expired signed URL: resolve again
                remembered, url = None, source.resolve_url(file)
                continue
            assert response is not None
            raise self._status_error(file, url, response, body)
        raise TransferError(
            f"{source.where(file)}: more than {MAX_REDIRECTS} redirects; check HF_ENDPOINT"
        )

    def _send(self, url: str, offset: int, length: int) -> HTTPResponse:
        """One GET; a kept-alive connection the server has closed meanwhile is reopened once."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = self._source.headers_for(url)
        headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        for attempt in (0, 1):
            conn = self._connection(url)
            reused = conn.sock is not None
            try:
                conn.request("GET", target, headers=headers)
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                self._drop(url)
                if not reused or attempt:
                    raise
        raise AssertionError("unreachable")

    def _check_range(
        self, file: RemoteFile, response: HTTPResponse, offset: int, length: int
    ) -> None:
        """The answer must be exactly the asked bytes of a file of the listed size."""
        where = self._source.where(file)
        if response.status == 200:
            size = response.getheader("Content-Length")
            if offset != 0 or length != file.size or (size is not None and int(size) != length):
                response.close()
                raise IntegrityError(
                    f"{where}: the server ignored the byte range (HTTP 200 with "
                    f"{size or 'unknown'} bytes); it cannot serve parallel or resumed downloads"
                )
            return
        expected = f"bytes {offset}-{offset + length - 1}/{file.size}"
        got = response.getheader("Content-Range", "")
        if got.strip() != expected:
            response.close()
            raise IntegrityError(
                f"{where}: asked for {expected}, the server sent {got or 'no Content-Range'}; "
                "the file differs from the listing, run again"
            )

    def _status_error(
        self, file: RemoteFile, url: str, response: HTTPResponse, body: bytes
    ) -> Exception:
        where = self._source.where(file)
        if _origin(url) != _origin(self._source.endpoint) and response.status < 500:
            return SourceError(
                f"{where}: the storage host {urlsplit(url).netloc} refused the Hub's signed URL "
                f"(HTTP {response.status}); run again, and report it if it persists"
            )
        code = response.getheader("X-Error-Code", "")
        message = response.getheader("X-Error-Message", "")
        if code == "GatedRepo":
            return SourceError(self._source.gated_message(file))
        if not message and response.status < 500:
            message = body[:200].decode("utf-8", "replace").strip()
        return _status_error(where, response.status, message, self._source.has_token)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
