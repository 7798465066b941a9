"""Live traffic for a local gateway: a client that keeps sending the probe set's prompts.

On a cluster, users send the traffic a shadow mirrors and a canary splits. On one machine there
are none, so `llmflow local traffic` (and the demo, and the tests) plays them: `concurrency`
streamed completions always in flight against the gateway, prompts taken round the probe set,
each outcome counted. It reports what the client saw (errors, latency), which is what a shadow
must leave untouched. Nothing of a prompt or an answer is logged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from serving.probe import COMPLETIONS_PATH, Record, request_once
from serving.probe_sets import ProbePrompt


@dataclass
class TrafficStats:
    """What the client saw so far.

    Attributes:
        ok: Requests answered in full.
        failed: Requests that failed, by kind of failure (`HTTP 503`, `timeout after 60 s`).
        e2e_s: Whole-request latency of each answered request, in order.
        ttft_s: Time to first token of each answered request.
    """

    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    e2e_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Failed requests of every kind."""
        return sum(self.failed.values())

    def add(self, record: Record) -> None:
        """Count one request's record (`serving.probe`'s format)."""
        if record.get("ok"):
            self.ok += 1
            self.e2e_s.append(float(record["e2e_s"]))  # type: ignore[arg-type]
            self.ttft_s.append(float(record["ttft_s"]))  # type: ignore[arg-type]
        else:
            kind = str(record.get("error"))
            self.failed[kind] = self.failed.get(kind, 0) + 1

    def line(self) -> str:
        """One line: counts and latency quantiles."""
        text = f"{self.ok} answered, {self.errors} failed"
        if self.failed:
            text += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.failed.items())) + ")"
        if self.e2e_s:
            p50, p95 = np.quantile(self.e2e_s, [0.5, 0.95])
            text += f"; latency p50 {p50:.3f} s, p95 {p95:.3f} s"
        return text


class Traffic:
    """A background client: `concurrency` requests always in flight until `stop()`.

    Usage:

        with Traffic(gateway, "tiny-llama", prompts, concurrency=2) as traffic:
            ...  # the release runs
        print(traffic.stats.line())
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        prompts: Sequence[ProbePrompt],
        *,
        concurrency: int = 2,
        max_tokens: int = 16,
        timeout_s: float = 60.0,
    ) -> None:
        """A client of `base_url` (a gateway root, `/v1/completions` appended)."""
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be >= 1")
        if not prompts:
            raise ValueError("no prompts to send: give a probe set with at least one prompt")
        self.url = base_url.rstrip("/") + COMPLETIONS_PATH
        self.model = model
        self.prompts = list(prompts)
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Traffic:
        """Start sending in a background thread."""
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> TrafficStats:
        """Stop sending; returns what was seen.

        The requests in flight finish first, or with `wait` False in the background.
        """
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
        return self.stats

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(self._worker(session, i) for i in range(self.concurrency)))

    async def _worker(self, session: aiohttp.ClientSession, index: int) -> None:
        sent = index
        while not self._stop.is_set():
            prompt = self.prompts[sent % len(self.prompts)]
            record = await request_once(
                session, self.url, prompt, self.model, self.max_tokens, self.timeout_s
            )
            self.stats.add(record)
            sent += self.concurrency


class ShadowUsers:
    """Users who send traffic while a run's shadow window is open, and rest otherwise.

    Locally nobody uses the model, and a shadow judges live traffic: `update` follows a run's
    status and keeps a `Traffic` going from `start-shadow`'s success to `analyse-shadow`'s end,
    so the shadow sees users and the canary stages after it are judged as before. `stop`
    ends the last window and adds up what every window's users saw.
    """

    def __init__(self, make: Callable[[], Traffic]) -> None:
        """Users made by `make` (a new `Traffic` for each window)."""
        self.make = make
        self.windows = 0
        self._all: list[Traffic] = []
        self._open: Traffic | None = None
        self._done: set[str] = set()

    def update(self, status: dict[str, Any]) -> None:
        """Start or stop the users from a run's status; never waits (an engine callback).

        Args:
            status: The run's status: `metadata.name`, and `nodes` by id with `displayName`
                and `phase`.
        """
        nodes = {n.get("displayName"): n for n in (status.get("nodes") or {}).values()}
        started = (nodes.get("start-shadow") or {}).get("phase") == "Succeeded"
        ended = (nodes.get("analyse-shadow") or {}).get("phase") in ENDED
        run = str((status.get("metadata") or {}).get("name") or "")
        if self._open is None and started and not ended and run not in self._done:
            self._open = self.make().start()
            self._all.append(self._open)
            self.windows += 1
        elif self._open is not None and ended:
            self._done.add(run)
            self._open.stop(wait=False)
            self._open = None

    def stop(self) -> TrafficStats:
        """End every window (their requests in flight finish); returns what the users saw."""
        seen = TrafficStats()
        for traffic in self._all:
            stats = traffic.stop()
            seen.ok += stats.ok
            for kind, count in stats.failed.items():
                seen.failed[kind] = seen.failed.get(kind, 0) + count
            seen.e2e_s += stats.e2e_s
            seen.ttft_s += stats.ttft_s
        self._open = None
        return seen


#: Phases a node ends in.
ENDED = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")
