"""Benchmark: what mirroring every request to a second vLLM costs the clients of the first.

One local platform (real nginx gateway, real mirror relay) serves the tiny model twice, each a
real vLLM on a core of its own: `stable` answers the clients, `canary` is the mirror target.
The route comes from llmflow's factory (`serving.routing.build_httproute`, releases/tiny.yaml),
with and without `Mirror("canary", 1.0)`. A client keeps a fixed number of streamed
completions in flight (`ignore_eos`, so every answer has the same length), the same prompts
in both modes; the modes alternate in phases within the run (no mirror, mirrored, no mirror,
...), each phase starting once the relay has no copy left in flight, after an untimed warm-up.

A third mode separates the gateway's part from the mirror's load: no mirror, but the client
itself sends each request's copy straight to the canary at the same time (untimed), so the
canary works as much as when mirrored and only nginx's mirror and the relay are missing.

Printed: a table of p50/p95 time to first token and whole-request time per mode, the ratios
mirrored / not mirrored and mirrored / client copies, the relay's counters, and what the
mirror vLLM counted (finished requests by reason: copies read to their end count as `length`,
never `abort`).

On a 2-core machine the client, nginx, the relay and both vLLMs share the cores, so the first
ratio includes the CPU the mirror's work takes from everyone else: an upper bound of what a
cluster, where the candidate has a node of its own, would see. The second ratio is what the
gateway's mirroring costs beyond that.

    .venv/bin/python benchmarks/mirror_latency.py            # 4 phases per mode, 48 requests each
    .venv/bin/python benchmarks/mirror_latency.py --quick    # a smoke run for the tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving import deployment, routing  # noqa: E402
from serving.labels import served_name  # noqa: E402
from workflows.local.kinds._nginx import LocalGateway  # noqa: E402
from workflows.local.kinds.overview import down  # noqa: E402
from workflows.local.platform import LocalPlatform  # noqa: E402
from workflows.spec import ReleaseSpec, load_spec  # noqa: E402

SPEC = ROOT / "releases" / "tiny.yaml"
VLLM_PYTHON = ROOT / ".venv" / "vllm" / "bin" / "python"
READY_TIMEOUT_S = 600.0
MODES = ("no mirror", "100% mirrored", "no mirror, client copies")
PROMPTS = [
    "Question: What is 2 plus 4?\nAnswer:",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Instruction: Repeat the word data 3 times.\nResponse:",
    "A model is trained on data and evaluated on held out examples. " * 8,
    "Question: What colour is the coal?\nAnswer:",
    "Question: What is the capital of France? Answer: Paris. " * 6,
]


@dataclass
class Sample:
    """What the client saw of one mode."""

    ttft_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, prompt: str, max_tokens: int
) -> tuple[float, float]:
    """One streamed completion; (seconds to the first token, seconds to the end)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    began = time.perf_counter()
    first = None
    async with session.post(f"{url}/v1/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter() - began
    if first is None:
        raise RuntimeError("no token streamed")
    return first, time.perf_counter() - began


async def phase(
    url: str,
    model: str,
    requests: int,
    concurrency: int,
    max_tokens: int,
    sample: Sample | None,
    copies_to: str | None = None,
) -> None:
    """`requests` completions, `concurrency` in flight; recorded into `sample` unless None.

    With `copies_to`, each request is also sent there at the same time, untimed.
    """
    todo = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=300)
    copies: list[asyncio.Task[tuple[float, float]]] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            for i in todo:
                if copies_to is not None:
                    copy = one_request(
                        session, copies_to, model, PROMPTS[i % len(PROMPTS)], max_tokens
                    )
                    copies.append(asyncio.create_task(copy))
                try:
                    ttft, total = await one_request(
                        session, url, model, PROMPTS[i % len(PROMPTS)], max_tokens
                    )
                except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                    if sample is not None:
                        sample.errors[str(exc) or type(exc).__name__] += 1
                    continue
                if sample is not None:
                    sample.ttft_s.append(ttft)
                    sample.total_s.append(total)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await asyncio.gather(*copies, return_exceptions=True)


def serve(home: Path, spec: ReleaseSpec, model: Path) -> LocalPlatform:
    """Stable and canary Deployments of the tiny model with their Services, both ready."""
    volumes = home / "volumes"
    if spec.model.cache.volume == "host":
        cache = volumes / "host" / spec.model.cache.host_path.strip("/") / spec.model.name
    else:
        cache = volumes / "pvc" / str(spec.model.cache.claim_name) / spec.model.name
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / "bench"
    if not link.exists():
        link.symlink_to(model, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "LLMFLOW_VLLM_PYTHON"}
    platform = LocalPlatform(home, spec.namespace, env)
    path = f"/models/{spec.model.name}/bench"
    for track, version in (("stable", "v1"), ("canary", "v2")):
        platform.act("apply", deployment.build_deployment(spec, track, version, path))
        platform.act("apply", routing.build_service(spec, track))
    began = time.monotonic()
    while time.monotonic() - began < READY_TIMEOUT_S:
        ready = [
            (platform.get("Deployment", spec.namespace, f"{spec.model.name}-{t}") or {})
            .get("status", {})
            .get("readyReplicas", 0)
            for t in ("stable", "canary")
        ]
        if ready == [1, 1]:
            print(f"two vLLM pods ready in {time.monotonic() - began:.0f} s", flush=True)
            return platform
        time.sleep(1)
    raise SystemExit(f"vLLM pods not ready within {READY_TIMEOUT_S:.0f} s; logs under {home}")


def route(platform: LocalPlatform, spec: ReleaseSpec, mirrored: bool) -> None:
    mirror = routing.Mirror("canary", 1.0) if mirrored else None
    platform.act("apply", routing.build_httproute(spec, {"stable": 100}, mirror=mirror))


def drain(gateway: LocalGateway, timeout: float = 300.0) -> dict[str, object]:
    """Wait until the relay has no copy in flight; its counters ({} when it is not running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = gateway.relay.stats()
        if not stats or stats.get("in_flight") == 0:
            return stats or {}
        time.sleep(0.2)
    return gateway.relay.stats() or {}


def finished_by_reason(metrics_url: str) -> dict[str, float]:
    """vLLM's `vllm:request_success_total` by finished_reason."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm:request_success_total{"):
            reason = re.search(r'finished_reason="([^"]+)"', line)
            out[reason.group(1) if reason else "?"] = float(line.rsplit(" ", 1)[1])
    return out


def ms(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) * 1000 if values else float("nan")


def report(samples: dict[str, Sample]) -> None:
    print("| mode | requests | errors | TTFT p50 ms | TTFT p95 ms | total p50 ms | total p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode, s in samples.items():
        print(
            f"| {mode} | {len(s.total_s)} | {sum(s.errors.values())} | "
            f"{ms(s.ttft_s, 0.5):.1f} | {ms(s.ttft_s, 0.95):.1f} | "
            f"{ms(s.total_s, 0.5):.1f} | {ms(s.total_s, 0.95):.1f} |"
        )
    mirrored = samples[MODES[1]]
    for label, base in (("no mirror", samples[MODES[0]]), ("client copies", samples[MODES[2]])):
        ratios = [
            f"{name} {q} {ms(getattr(mirrored, attr), p) / ms(getattr(base, attr), p):.2f}x"
            for name, attr in (("TTFT", "ttft_s"), ("total", "total_s"))
            for q, p in (("p50", 0.5), ("p95", 0.95))
        ]
        print(f"ratio mirrored / {label}: " + ", ".join(ratios))
    for mode, s in samples.items():
        if s.errors:
            print(f"errors ({mode}): {dict(s.errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 short phases per mode")
    parser.add_argument("--phases", type=int, default=4, help="phases per mode, interleaved")
    parser.add_argument("--requests", type=int, default=48, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.phases, args.requests, args.max_tokens = 2, 8, 4
    if not VLLM_PYTHON.is_file():
        raise SystemExit(f"{VLLM_PYTHON} not found: build the vLLM environment (`make setup`)")
    spec = load_spec(SPEC)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    model_dir = workdir / "tiny-llama"
    if not (model_dir / "config.json").is_file():
        from steps.tiny_model import create_tiny_model

        create_tiny_model(model_dir, seed=0)
    home = workdir / ".llmflow"
    began = time.monotonic()
    try:
        platform = serve(home, spec, model_dir)
        gateway = LocalGateway(platform.root)
        model = served_name(spec)
        route(platform, spec, mirrored=True)  # starts the relay
        url = next(iter(gateway.urls().values()))
        services = json.loads((platform.root / "services.json").read_text())
        canary = services[f"{spec.model.name}-canary.{spec.namespace}"]["endpoints"][0]
        print(
            f"mirror_latency: tiny model on 2 vLLM (one core each), gateway {url}, "
            f"concurrency {args.concurrency}, {args.max_tokens} tokens per answer, "
            f"{args.phases} x {args.requests} requests per mode, interleaved",
            flush=True,
        )
        for mirrored in (False, True):  # warm-up, untimed
            route(platform, spec, mirrored)
            asyncio.run(phase(url, model, 2 * args.concurrency, args.concurrency, 4, None))
        drain(gateway)
        samples = {mode: Sample() for mode in MODES}
        for i in range(args.phases):
            for mode in MODES:
                route(platform, spec, mirrored=mode == MODES[1])
                copies_to = f"http://{canary}" if mode == MODES[2] else None
                asyncio.run(
                    phase(
                        url,
                        model,
                        args.requests,
                        args.concurrency,
                        args.max_tokens,
                        samples[mode],
                        copies_to,
                    )
                )
                drain(gateway)
            print(f"phase {i + 1}/{args.phases} done", flush=True)
        report(samples)
        stats = drain(gateway)
        print(
            f"relay: forwarded {stats.get('forwarded')}, dropped {stats.get('dropped')}, "
            f"failed {stats.get('failed')}, statuses {json.dumps(stats.get('statuses'))}"
        )
        print(
            "mirror vLLM finished requests by reason (copies and client copies): "
            f"{finished_by_reason(f'http://{canary}/metrics')}"
        )
        platform.close()
    finally:
        down(home)
    print(f"wall time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
