"""The mirror relay: takes nginx's mirror subrequests, answers at once, replays them on its own.

Why it exists: nginx's `mirror` directive runs each copy as a subrequest bound to the client's
request, and nginx does not finish that request until every subrequest has. Measured on nginx
1.22 with a mirror target that answers after 2 s: the client's first response arrives at once,
but the next request on the same keep-alive connection waits the 2 s, a `Connection: close`
or HTTP/1.0 client sees the connection (the end of its streamed answer) close only after
them, and the access log line and `$request_time` include them. A slow or hung candidate
would so slow down the clients of stable. The gateway therefore mirrors to this relay, which
reads the copy, answers 204 at once (nginx's subrequest is over in well under a millisecond)
and only then sends the copy to the target: the same method, path, query, headers (less the
hop-by-hop ones) and body. It reads the whole answer and discards it, so the target (vLLM)
counts a finished request, not an abort.

Each copy names its target in the header `X-Llmflow-Mirror-To` (the mirror Service's ready
endpoints, set by nginx from the route; one is taken per copy, in turn); only loopback
addresses are accepted. At most `--max-in-flight` copies are sent at once: beyond that a copy
is dropped and counted, never queued, so a slow target costs bounded memory. Requests without
the header are for the relay itself: `GET /-/ready`, `GET /-/stats` (counters as JSON).

Run by `LocalGateway` (see `_mirror.MirrorRelay`) with the llmflow environment's Python, by
path, so it imports nothing of llmflow:

    python workflows/local/kinds/_relay.py --port 40123 [--max-in-flight 64] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: The header nginx sets on each copy: the target endpoints, `host:port` separated by commas.
TARGET_HEADER = "X-Llmflow-Mirror-To"

#: Headers that belong to one connection, not to the request: never replayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        TARGET_HEADER.lower(),
    }
)

#: Hosts a copy may be sent to: the relay is no open proxy, it reaches local pods only.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})

#: Largest body accepted, as nginx's `client_max_body_size` of the gateway.
MAX_BODY = 64 * 1024 * 1024

#: Failures logged one by one before the log only notes every hundredth.
LOGGED_FAILURES = 10


@dataclass
class Counters:
    """What the relay did since it started (`GET /-/stats`)."""

    received: int = 0
    forwarded: int = 0
    failed: int = 0
    dropped: int = 0
    refused: int = 0
    in_flight: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values."""
        return {
            "received": self.received,
            "forwarded": self.forwarded,
            "failed": self.failed,
            "dropped": self.dropped,
            "refused": self.refused,
            "in_flight": self.in_flight,
            "statuses": dict(self.statuses),
        }


def parse_targets(value: str) -> list[str]:
    """The `host:port` endpoints of a target header; [] when any is not a loopback address."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    for target in targets:
        host, _, port = target.rpartition(":")
        if host not in LOOPBACK or not port.isdigit():
            return []
    return targets


class Relay:
    """Answers copies at once and replays them to their targets in the background."""

    def __init__(self, max_in_flight: int, timeout: float) -> None:
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.counters = Counters()
        self._turn = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None

    async def start(self, app: Any) -> None:
        """Open the client session (on the server's loop)."""
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_in_flight),
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=5),
            auto_decompress=False,
            # Replay exactly the client's headers: add none of aiohttp's own.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )

    async def close(self, app: Any) -> None:
        """Cancel copies still in flight and close the session (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: Any) -> Any:
        """A copy: read it, start its replay (unless too many are in flight), answer 204."""
        from aiohttp import web

        header = request.headers.get(TARGET_HEADER)
        if header is None:
            return self._control(request)
        self.counters.received += 1
        targets = parse_targets(header)
        body = await request.read()
        if not targets:
            self.counters.refused += 1
            return web.Response(
                status=400, text=f"{TARGET_HEADER} {header!r}: give loopback host:port endpoints"
            )
        if self.counters.in_flight >= self.max_in_flight:
            self.counters.dropped += 1
            return web.Response(status=204, headers={"X-Llmflow-Mirror": "dropped"})
        target = targets[next(self._turn) % len(targets)]
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        self.counters.in_flight += 1
        task = asyncio.create_task(
            self._forward(request.method, f"http://{target}{request.raw_path}", headers, body)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=204)

    async def _forward(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        import aiohttp

        try:
            async with self._session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False
            ) as response:
                # The whole answer, streamed or not: the target then counts a finished request.
                async for _ in response.content.iter_any():
                    pass
                self.counters.forwarded += 1
                self.counters.statuses[str(response.status)] += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.counters.failed += 1
            failed = self.counters.failed
            if failed <= LOGGED_FAILURES or failed % 100 == 0:
                print(f"copy {method} {url} failed ({failed} so far): {exc!r}", flush=True)
        finally:
            self.counters.in_flight -= 1

    def _control(self, request: Any) -> Any:
        from aiohttp import web

        if request.path == "/-/ready":
            return web.Response(text="ok")
        if request.path == "/-/stats":
            return web.Response(
                text=json.dumps(self.counters.as_dict()), content_type="application/json"
            )
        return web.Response(
            status=400,
            text=f"not a mirrored request: no {TARGET_HEADER} header (GET /-/stats for counters)",
        )


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until SIGTERM or SIGINT."""
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    relay = Relay(args.max_in_flight, args.timeout)
    app = web.Application(client_max_size=MAX_BODY)
    app.on_startup.append(relay.start)
    app.on_cleanup.append(relay.close)
    app.router.add_route("*", "/{tail:.*}", relay.handle)
    print(f"mirror relay on 127.0.0.1:{args.port}, at most {args.max_in_flight} in flight")
    sys.stdout.flush()
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, shutdown_timeout=1.0
    )


if __name__ == "__main__":
    main()
