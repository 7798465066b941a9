"""The canary probe: the same prompts sent to the stable and the canary server, one record each.

An async client streams completions from an OpenAI-compatible server (vLLM's
`/v1/completions`, `stream: true` with `stream_options.include_usage`, temperature 0) and
writes, per request, the record `serving.records.read_probes` reads:

    {"prompt_id": "tiny-017", "prompt_tokens": 118, "output_tokens": 4, "ttft_s": 0.031,
     "itl_s": 0.012, "e2e_s": 0.067, "ok": true, "score": 1.0}

* `ttft_s`: from sending the request to the first streamed token chunk, with or without text
  (a byte-level token that is part of a character streams as empty text); the whole request
  when no token comes back at all.
* `e2e_s`: from sending the request to the end of the stream (`data: [DONE]`).
* `itl_s`: the mean gap between tokens, (e2e - ttft) / (output_tokens - 1); null below two.
* `prompt_tokens`, `output_tokens`: the server's usage block. When the server gives none (a
  failed request), `prompt_tokens` is taken from another record of the same prompt, else
  estimated from the prompt's length (4 bytes a token), and the record says
  `"prompt_tokens_estimated": true`.
* `score`: the answer against the reference (`score_answer`); null when not ok.
* `ok`: false for a connection error, an HTTP status >= 400, a timeout, an error event in the
  stream or a stream cut before `[DONE]`; such a record has `"error"` (the kind of failure,
  never any text of the prompt or the answer) and null where a value is unknown. One bad
  request never raises: the error rate is part of what the judge compares.

Nothing here logs prompt or answer text. Usage, as `llmflow canary probe` runs it:

    records = asyncio.run(probe("http://127.0.0.1:8000", prompts, model="tiny-llama",
                                concurrency=4, max_tokens=16, timeout_s=30))
    stable, canary = probe_arms(stable_url, canary_url, prompts, model="tiny-llama",
                                requests=40, concurrency=4, max_tokens=16, timeout_s=30)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from serving.probe_sets import ProbePrompt

COMPLETIONS_PATH = "/v1/completions"
"""Appended to the server root (`http://host:port`) given to `probe`."""

BYTES_PER_TOKEN = 4
"""Rough bytes per token, only to estimate `prompt_tokens` of a request the server never
counted (a failed request of a prompt no other request succeeded with)."""

Record = dict[str, object]


def score_answer(output: str, reference: str) -> float:
    """The quality of an answer against the reference, in [0, 1].

    The probe sets' answers are one line, so only the output's first line counts (a model
    that answers and then goes on with a new question is not penalised for the rest). Both
    sides are stripped of surrounding whitespace: 1.0 when they are equal, else the token
    overlap F1 of SQuAD (lower-cased whitespace tokens, counted as a multiset): 2PR / (P + R)
    with P the share of the answer's tokens found in the reference and R the share of the
    reference's tokens found in the answer. `data data` against `data data data` scores 0.8;
    a wrong number scores 0; an empty answer scores 0.
    """
    answer = output.split("\n", 1)[0].strip()
    expected = reference.strip()
    if answer == expected:
        return 1.0
    got, want = answer.lower().split(), expected.lower().split()
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def select_prompts(
    prompts: Sequence[ProbePrompt], requests: int, offset: int = 0
) -> list[ProbePrompt]:
    """`requests` prompts cycling through the set from position `offset`.

    A prompt's id is kept on its first pass through the set; later passes get `~k` appended
    (`tiny-003~1`), so the ids stay unique within an arm and over successive batches with
    advancing offsets (`offset = batch * requests`), which the judge needs to pair the arms.
    """
    if not prompts:
        raise ValueError("no prompts to send: the probe set is empty")
    if requests < 0 or offset < 0:
        raise ValueError(f"requests ({requests}) and offset ({offset}) must be >= 0")
    chosen = []
    for position in range(offset, offset + requests):
        cycle, index = divmod(position, len(prompts))
        prompt = prompts[index]
        if cycle:
            prompt = ProbePrompt(f"{prompt.prompt_id}~{cycle}", prompt.prompt, prompt.reference)
        chosen.append(prompt)
    return chosen


async def probe(
    base_url: str,
    prompts: Sequence[ProbePrompt],
    *,
    model: str,
    concurrency: int,
    max_tokens: int,
    timeout_s: float,
) -> list[Record]:
    """Send each prompt once to a server and record how it went.

    Args:
        base_url: The server root, e.g. `http://127.0.0.1:8000` (`/v1/completions` is appended).
        prompts: The prompts, in the order of the records returned.
        model: The served model name (`--served-model-name`).
        concurrency: Requests in flight at most (>= 1).
        max_tokens: Tokens to generate at most per request.
        timeout_s: Limit of one request, from sending it to the end of its stream.

    Returns:
        One record per prompt, in order (see the module docstring); failures are records with
        `ok` false, never exceptions.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency {concurrency} must be >= 1")
    url = base_url.rstrip("/") + COMPLETIONS_PATH
    gate = asyncio.Semaphore(concurrency)
    # The semaphore bounds the requests; the pool only must not queue them behind its limit.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(prompt: ProbePrompt) -> Record:
            async with gate:
                return await request_once(session, url, prompt, model, max_tokens, timeout_s)

        records = list(await asyncio.gather(*(one(p) for p in prompts)))
    _fill_prompt_tokens(records, prompts)
    return records


def probe_arms(
    stable_url: str,
    canary_url: str,
    prompts: Sequence[ProbePrompt],
    *,
    model: str,
    requests: int,
    concurrency: int,
    max_tokens: int,
    timeout_s: float,
    offset: int = 0,
) -> tuple[list[Record], list[Record]]:
    """Probe both arms with the same prompts at the same time; returns (stable, canary).

    Both arms get the same `requests` prompts (`select_prompts` from `offset`), and run
    concurrently, each with its own `concurrency`, so both see the same time window (the same
    background load) and the judge can pair their records by prompt_id. Give successive
    batches `offset = batch * requests` so that they send different prompts.
    """
    chosen = select_prompts(prompts, requests, offset)

    async def both() -> tuple[list[Record], list[Record]]:
        stable, canary = await asyncio.gather(
            *(
                probe(
                    url,
                    chosen,
                    model=model,
                    concurrency=concurrency,
                    max_tokens=max_tokens,
                    timeout_s=timeout_s,
                )
                for url in (stable_url, canary_url)
            )
        )
        return stable, canary

    stable, canary = asyncio.run(both())
    _share_prompt_tokens(stable, canary)
    return stable, canary


def write_records(records: Sequence[Record], path: Path) -> None:
    """Write records as JSONL (one object per line), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


async def request_once(
    session: aiohttp.ClientSession,
    url: str,
    prompt: ProbePrompt,
    model: str,
    max_tokens: int,
    timeout_s: float,
) -> Record:
    """One streamed completion as a record; every failure becomes `ok: false`."""
    body = {
        "model": model,
        "prompt": prompt.prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        # vLLM's extension: always generate max_tokens, so every request does the same work
        # whatever the model answers, and inter-token latency is always measured.
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    state = _Stream(began)
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, json=body) as response:
                if response.status >= 400:
                    await response.read()
                    return state.failed(prompt, f"HTTP {response.status}")
                async for raw in response.content:
                    if state.feed(raw):
                        break
    except TimeoutError:
        return state.failed(prompt, f"timeout after {timeout_s:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return state.failed(prompt, f"connection error ({type(exc).__name__})")
    if state.error is not None:
        return state.failed(prompt, state.error)
    if state.done_at is None:
        return state.failed(prompt, "stream cut before [DONE]")
    return state.record(prompt)


class _Stream:
    """What one server-sent-event stream has told so far."""

    def __init__(self, began: float) -> None:
        self.began = began
        self.text: list[str] = []
        self.chunks = 0
        self.first_token_at: float | None = None
        self.done_at: float | None = None
        self.usage: dict[str, object] | None = None
        self.error: str | None = None

    def feed(self, raw: bytes) -> bool:
        """Take one line of the stream; True when the stream is over (done or an error)."""
        line = raw.strip()
        if not line.startswith(b"data:"):
            return False  # blank separators, comments, `event:` lines
        data = line[5:].strip()
        now = time.perf_counter()
        if data == b"[DONE]":
            self.done_at = now
            return True
        try:
            event = json.loads(data)
        except ValueError:
            self.error = "bad event in stream (not JSON)"
            return True
        if not isinstance(event, dict) or "error" in event:
            self.error = "error event in stream"
            return True
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        # vLLM streams one chunk per generated token, with empty text while a token is only
        # part of a character (byte-level tokens): the first chunk, text or not, is the first
        # token, or a model whose first tokens are partial characters would look slow.
        for choice in event.get("choices") or ():
            self.chunks += 1
            if self.first_token_at is None:
                self.first_token_at = now
            piece = choice.get("text") or ""
            if piece:
                self.text.append(piece)
        return False

    def record(self, prompt: ProbePrompt) -> Record:
        """The record of a stream that ended with `[DONE]`."""
        assert self.done_at is not None
        e2e = self.done_at - self.began
        first = self.first_token_at if self.first_token_at is not None else self.done_at
        ttft = first - self.began
        output_tokens = _usage_count(self.usage, "completion_tokens")
        if output_tokens is None:
            output_tokens = self.chunks  # one token per chunk, as vLLM streams by default
        itl = None
        if output_tokens >= 2:
            # Strictly positive, as the record format requires, even at timer resolution.
            itl = max(e2e - ttft, 1e-9) / (output_tokens - 1)
        record: Record = {
            "prompt_id": prompt.prompt_id,
            "prompt_tokens": _usage_count(self.usage, "prompt_tokens"),
            "output_tokens": output_tokens,
            "ttft_s": max(ttft, 1e-9),
            "itl_s": itl,
            "e2e_s": max(e2e, 1e-9),
            "ok": True,
            "score": score_answer("".join(self.text), prompt.reference),
        }
        return record

    def failed(self, prompt: ProbePrompt, error: str) -> Record:
        """The record of a failed request: what is known (a first token), null for the rest."""
        output_tokens = _usage_count(self.usage, "completion_tokens")
        ttft = None if self.first_token_at is None else max(self.first_token_at - self.began, 1e-9)
        return {
            "prompt_id": prompt.prompt_id,
            "prompt_tokens": _usage_count(self.usage, "prompt_tokens"),
            "output_tokens": self.chunks if output_tokens is None else output_tokens,
            "ttft_s": ttft,
            "itl_s": None,
            "e2e_s": None,
            "ok": False,
            "score": None,
            "error": error,
        }


def _usage_count(usage: dict[str, object] | None, key: str) -> int | None:
    """A token count from the usage block, or None when it is missing or not a count."""
    value = None if usage is None else usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fill_prompt_tokens(records: list[Record], prompts: Sequence[ProbePrompt]) -> None:
    """Give records without a server count one from the same prompt, else an estimate."""
    known = {
        _base_id(str(r["prompt_id"])): r["prompt_tokens"]
        for r in records
        if r["prompt_tokens"] is not None
    }
    for record, prompt in zip(records, prompts, strict=True):
        if record["prompt_tokens"] is None:
            count = known.get(_base_id(prompt.prompt_id))
            if count is None:
                count = max(1, len(prompt.prompt.encode()) // BYTES_PER_TOKEN)
                record["prompt_tokens_estimated"] = True
            record["prompt_tokens"] = count


def _share_prompt_tokens(stable: list[Record], canary: list[Record]) -> None:
    """Replace estimated prompt lengths with the other arm's count of the same prompt."""
    for mine, theirs in ((stable, canary), (canary, stable)):
        counted = {r["prompt_id"]: r["prompt_tokens"] for r in theirs if _counted(r)}
        for record in mine:
            if record.get("prompt_tokens_estimated") and record["prompt_id"] in counted:
                record["prompt_tokens"] = counted[record["prompt_id"]]
                del record["prompt_tokens_estimated"]


def _counted(record: Record) -> bool:
    """Whether a record's prompt length came from a server."""
    return not record.get("prompt_tokens_estimated")


def _base_id(prompt_id: str) -> str:
    """A prompt's id without the pass suffix `~k` of `select_prompts`."""
    return prompt_id.split("~", 1)[0]
