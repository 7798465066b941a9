"""Evaluation against a real vLLM server: same scores as the hf backend, clear endpoint failures.

The hf backend and vLLM score the same float32 checkpoint with the same token ids (the step
sends `tokenized_requests=True`, `add_bos_token=True`, the local tokenizer), so each choice's
log-likelihood may differ only by floating-point order of operations in different kernels:
measured here at ~5e-6 nats on the tiny model, against a smallest gap of ~7e-3 between an
item's best and second-best choice. LOGLIK_ATOL (1e-3) is 200 times the measured difference,
yet well under the gaps that decide the answers; an item is only allowed to pick differently
when hf's own top two choices are closer than twice that (a tie at this precision), and the
accuracy may then move by those items alone. Here there are none, so accuracies must be equal.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from steps.evaluate import EndpointError, evaluate_model
from tests.vllm_server import TINY_SERVED_NAME, VLLMServer, cores, require_vllm

SUITE = "tiny"
MC_TASK = "tiny_instructions_mc"
#: Largest difference in one choice's log-likelihood (nats) between the hf backend and vLLM.
LOGLIK_ATOL = 1e-3


def _post(url: str, body: dict[str, object]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _samples(folder: Path, task: str) -> dict[int, dict[str, Any]]:
    lines = (folder / f"samples_{task}.jsonl").read_text().splitlines()
    return {record["doc_id"]: record for record in map(json.loads, lines)}


def _logliks(record: dict[str, Any]) -> list[float]:
    return [float(loglik) for loglik, _greedy in record["filtered_resps"]]


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_vllm_serves_the_tiny_model(vllm_tiny: VLLMServer) -> None:
    answer = _post(
        vllm_tiny.completions_url,
        {"model": TINY_SERVED_NAME, "prompt": "The quick brown", "max_tokens": 4, "temperature": 0},
    )
    assert answer["model"] == TINY_SERVED_NAME
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 4


def test_vllm_scores_match_hf_backend(
    vllm_tiny: VLLMServer, tiny_model: Path, tmp_path: Path
) -> None:
    # Every item (limit 0), one request per choice: the same settings on both sides.
    hf = evaluate_model(
        suite=SUITE,
        output=f"file://{tmp_path}/hf",
        model_path=str(tiny_model),
        batch_size=1,
        seed=1234,
        limit=0,
    )
    served = evaluate_model(
        suite=SUITE,
        output=f"file://{tmp_path}/vllm",
        endpoint=vllm_tiny.completions_url,
        served_model_name=TINY_SERVED_NAME,
        tokenizer=str(tiny_model),
        batch_size=1,
        seed=1234,
        limit=0,
    )

    hf_items, vllm_items = _samples(tmp_path / "hf", MC_TASK), _samples(tmp_path / "vllm", MC_TASK)
    assert sorted(hf_items) == sorted(vllm_items) and len(hf_items) == 100
    ties = 0
    for doc_id, hf_item in hf_items.items():
        hf_ll, vllm_ll = _logliks(hf_item), _logliks(vllm_items[doc_id])
        assert vllm_ll == pytest.approx(hf_ll, abs=LOGLIK_ATOL), f"item {doc_id}"
        best, second = sorted(hf_ll, reverse=True)[:2]
        if best - second < 2 * LOGLIK_ATOL:
            ties += 1
            continue
        assert _argmax(vllm_ll) == _argmax(hf_ll), f"item {doc_id} picks another choice"
        for metric in ("acc", "acc_norm"):
            assert vllm_items[doc_id][metric] == hf_item[metric], f"item {doc_id} {metric}"
    for metric in ("acc", "acc_norm"):
        key = f"{MC_TASK}/{metric}"
        assert served.metrics[key] == pytest.approx(hf.metrics[key], abs=ties / len(hf_items))
    results = json.loads((tmp_path / "vllm" / "results.json").read_text())
    assert results["results"][MC_TASK]["acc,none"] == hf.metrics[f"{MC_TASK}/acc"]
    provenance = json.loads((tmp_path / "vllm" / "provenance.json").read_text())
    assert provenance["backend"] == "local-completions"
    assert provenance["endpoint"] == vllm_tiny.completions_url


def _kill_after_answers(
    server: VLLMServer, answers: int, killed: list[float], done: threading.Event
) -> None:
    """Kill the server once it has answered `answers` completions: mid-evaluation."""
    pattern = re.compile(r'"POST /v1/completions HTTP/1\.1" 200')
    while not done.wait(0.05):
        if len(pattern.findall(server.log_path.read_text(errors="replace"))) >= answers:
            server.kill()
            killed.append(time.monotonic())
            return


def test_endpoint_down_mid_eval_fails_clearly(tiny_model: Path, tmp_path: Path) -> None:
    require_vllm()
    # Its own server (and its own core): killing the session's would break the other tests.
    server = VLLMServer(tiny_model, tmp_path / "server.log", core=cores()[-1])
    output = tmp_path / "eval"
    with server:
        killed: list[float] = []
        done = threading.Event()
        watcher = threading.Thread(target=_kill_after_answers, args=(server, 20, killed, done))
        watcher.start()
        try:
            with pytest.raises(EndpointError) as failure:
                evaluate_model(
                    suite=SUITE,
                    output=f"file://{output}",
                    endpoint=server.completions_url,
                    served_model_name=TINY_SERVED_NAME,
                    tokenizer=str(tiny_model),
                )
        finally:
            done.set()
            watcher.join()
        failed = time.monotonic()
    assert killed, "the evaluation ended before the server was killed"
    assert server.completions_url in str(failure.value)
    assert failed - killed[0] < 60, "a dead endpoint should fail the step promptly"
    assert not (output / "results.json").exists()
