"""The canary probe against real vLLM servers (the base and the fine-tuned tiny model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from click.testing import CliRunner

from serving.judge import judge
from serving.probe import probe, probe_arms, score_answer, select_prompts, write_records
from serving.probe_sets import ProbePrompt, load_probe_set
from serving.records import read_probes
from tests.vllm_server import (
    TINY_SERVED_NAME,
    VLLMServer,
    VLLMServerError,
    cores,
    require_vllm,
)
from workflows.cli import main
from workflows.local.s3 import free_port

PROMPTS = load_probe_set("tiny")
OPTIONS = {"model": TINY_SERVED_NAME, "concurrency": 4, "max_tokens": 8, "timeout_s": 60.0}


def root(server: VLLMServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def vllm_fine_tuned(
    fine_tuned: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """The fine-tuned tiny model, served as `tiny-llama` on the last core (vllm_tiny has the
    first)."""
    require_vllm()
    log = tmp_path_factory.mktemp("vllm-fine-tuned") / "server.log"
    server = VLLMServer(fine_tuned, log, served_name=TINY_SERVED_NAME, core=cores()[-1])
    try:
        server.start()
    except VLLMServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


# --- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "reference", "score"),
    [
        (" 6\nQuestion: What is", " 6", 1.0),
        (" 7", " 6", 0.0),
        (" data data", " data data data", 0.8),
        (" Blue", " blue", 1.0),
        ("", " 6", 0.0),
        ("\n 6", " 6", 0.0),
    ],
)
def test_score_answer(output: str, reference: str, score: float) -> None:
    assert score_answer(output, reference) == pytest.approx(score)


def test_select_prompts_cycles_with_unique_ids() -> None:
    prompts = [ProbePrompt(f"p{i}", f"q{i}", "a") for i in range(3)]
    first = select_prompts(prompts, 4, offset=0)
    second = select_prompts(prompts, 4, offset=4)
    assert [p.prompt_id for p in first] == ["p0", "p1", "p2", "p0~1"]
    assert [p.prompt_id for p in second] == ["p1~1", "p2~1", "p0~2", "p1~2"]
    assert second[0].prompt == "q1"


# --- failures are records, never exceptions -------------------------------------------


def test_dead_port_gives_failed_records(tmp_path: Path) -> None:
    records = asyncio.run(probe(f"http://127.0.0.1:{free_port()}", PROMPTS[:3], **OPTIONS))
    assert [r["ok"] for r in records] == [False] * 3
    assert all(str(r["error"]).startswith("connection error") for r in records)
    assert all(r["score"] is None and r["ttft_s"] is None for r in records)
    write_records(records, tmp_path / "dead.jsonl")
    assert not read_probes(tmp_path / "dead.jsonl").ok.any()


def _fake_server(kind: str) -> web.Application:
    """A server whose completions stream misbehaves in one way."""

    async def completions(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"choices": [{"index": 0, "text": " 6"}], "usage": None}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if kind == "error-event":
            await response.write(b'data: {"error": {"message": "boom", "code": 500}}\n\n')
        elif kind == "no-usage":
            await response.write(b"data: [DONE]\n\n")
        # "cut": end the stream without [DONE]
        return response

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    return app


@pytest.mark.parametrize(
    ("kind", "ok", "error"),
    [
        ("cut", False, "stream cut before [DONE]"),
        ("error-event", False, "error event in stream"),
        ("no-usage", True, None),
    ],
)
def test_misbehaving_stream(kind: str, ok: bool, error: str | None) -> None:
    async def run() -> list[dict[str, object]]:
        runner = web.AppRunner(_fake_server(kind))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await probe(f"http://127.0.0.1:{port}", PROMPTS[:2], **OPTIONS)
        finally:
            await runner.cleanup()

    records = asyncio.run(run())
    assert [r["ok"] for r in records] == [ok, ok]
    assert records[0].get("error") == error
    # Without a usage block the prompt length is estimated, and says so.
    assert all(r["prompt_tokens_estimated"] is True for r in records)
    if ok:
        assert records[0]["output_tokens"] == 1 and records[0]["itl_s"] is None
        assert records[0]["score"] == score_answer(" 6", PROMPTS[0].reference)
    else:
        assert records[0]["score"] is None and records[0]["ttft_s"] is not None


# --- a real vLLM server -------------------------------------------------------------------


def test_probe_records_from_real_server(vllm_tiny: VLLMServer, tmp_path: Path) -> None:
    records = asyncio.run(probe(root(vllm_tiny), PROMPTS, **OPTIONS))
    assert [r["prompt_id"] for r in records] == [p.prompt_id for p in PROMPTS]
    assert all(r["ok"] for r in records), [r.get("error") for r in records if not r["ok"]]
    write_records(records, tmp_path / "stable.jsonl")
    arm = read_probes(tmp_path / "stable.jsonl")  # the judge's strict reader accepts them
    assert len(arm) == len(PROMPTS) and arm.ok.all()
    assert (arm.ttft_s <= arm.e2e_s).all() and (arm.ttft_s > 0).all()
    assert ((arm.output_tokens >= 1) & (arm.output_tokens <= 8)).all()
    multi = arm.output_tokens >= 2
    assert np.isfinite(arm.itl_s[multi]).all()
    assert np.isfinite(arm.score).all() and ((arm.score >= 0) & (arm.score <= 1)).all()
    # Server-counted prompt lengths follow the context given: ~12 to ~400 tokens.
    chars = np.array([len(p.prompt) for p in PROMPTS])
    assert arm.prompt_tokens.min() < 30 and arm.prompt_tokens.max() > 250
    assert np.corrcoef(chars, arm.prompt_tokens)[0, 1] > 0.95
    assert not any("prompt_tokens_estimated" in r for r in records)


def test_http_errors_and_timeouts_are_records(vllm_tiny: VLLMServer) -> None:
    too_long = ProbePrompt("long", "word " * 2000, " 6")
    records = asyncio.run(probe(root(vllm_tiny), [too_long], **OPTIONS))
    assert records[0]["ok"] is False and records[0]["error"] == "HTTP 400"
    options = {**OPTIONS, "model": "no-such-model"}
    records = asyncio.run(probe(root(vllm_tiny), PROMPTS[:2], **options))
    assert [r["error"] for r in records] == ["HTTP 404", "HTTP 404"]
    options = {**OPTIONS, "timeout_s": 0.001}
    records = asyncio.run(probe(root(vllm_tiny), PROMPTS[:2], **options))
    assert all(str(r["error"]).startswith("timeout") for r in records)


def test_quality_separates_fine_tuned_from_base(
    vllm_tiny: VLLMServer, vllm_fine_tuned: VLLMServer, tmp_path: Path
) -> None:
    """The probe's scores tell the fine-tuned model from the base: a canary can FAIL on
    quality, and both arms get the same prompts at the same time (paired by prompt_id)."""
    fine, base = probe_arms(
        root(vllm_fine_tuned), root(vllm_tiny), PROMPTS, requests=len(PROMPTS), **OPTIONS
    )
    assert [r["prompt_id"] for r in fine] == [r["prompt_id"] for r in base]
    write_records(fine, tmp_path / "fine.jsonl")
    write_records(base, tmp_path / "base.jsonl")
    stable, canary = read_probes(tmp_path / "fine.jsonl"), read_probes(tmp_path / "base.jsonl")
    assert stable.ok.all() and canary.ok.all()
    mean_fine, mean_base = float(np.mean(stable.score)), float(np.mean(canary.score))
    print(f"mean score: fine-tuned {mean_fine:.3f}, base {mean_base:.3f}")
    assert mean_fine > mean_base + 0.2, (mean_fine, mean_base)
    judgement = judge(stable, canary)
    quality = next(c for c in judgement.checks if c.name == "quality")
    assert judgement.design == "paired"
    assert quality.verdict == "FAIL" and judgement.verdict == "FAIL", quality.reason


def test_cli_probe_writes_what_judge_reads(
    vllm_tiny: VLLMServer, vllm_fine_tuned: VLLMServer, tmp_path: Path
) -> None:
    runner = CliRunner()
    out, canary_out = tmp_path / "stable.jsonl", tmp_path / "canary.jsonl"
    args = ["canary", "probe", "--url", root(vllm_tiny), "--canary-url", root(vllm_fine_tuned)]
    args += ["--model", TINY_SERVED_NAME, "--prompts", "tiny", "--requests", "6"]
    args += ["--offset", "78", "--max-tokens", "4", "--out", str(out)]
    args += ["--canary-out", str(canary_out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["ok"] for line in lines] == [6, 6]
    ids = read_probes(out).prompt_id
    assert ids == read_probes(canary_out).prompt_id
    assert ids[:3] == ("tiny-078", "tiny-079", "tiny-000~1")
    result = runner.invoke(
        main, ["canary", "judge", "--stable", str(out), "--canary", str(canary_out)]
    )
    assert result.exit_code == 3, result.output  # 6 requests: INCONCLUSIVE, never PASS
    missing = runner.invoke(main, args[:-2])
    assert missing.exit_code == 2 and "--canary-out" in missing.output
