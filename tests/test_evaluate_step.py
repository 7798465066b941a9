"""The evaluate-model step with real lm-eval on the tiny model: fine-tuning shows in the scores."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals import catalog
from evals.catalog import CatalogError
from steps.evaluate import EndpointError, EvaluationError, checkpoint_digest, evaluate_model

pytestmark = pytest.mark.model

TASKS = ["tiny_instructions_mc", "tiny_instructions_gen"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a small machine more threads make a tiny model several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(
    tiny_model: Path, fine_tuned: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, Path]]:
    """The whole tiny suite on the base model and on its fine-tuned version."""
    root = tmp_path_factory.mktemp("eval")
    done = {}
    for label, model in (("reference", tiny_model), ("candidate", fine_tuned)):
        out = evaluate_model(
            suite="tiny", output=f"file://{root / label}", model_path=str(model), label=label
        )
        done[label] = (out, root / label)
    return done


def test_fine_tuned_model_scores_higher_on_every_task(runs: dict) -> None:
    base, tuned = runs["reference"][0].metrics, runs["candidate"][0].metrics
    print(json.dumps({"base": base, "fine_tuned": tuned}, indent=1))
    assert (
        set(base)
        == set(tuned)
        == {
            "tiny_instructions_mc/acc",
            "tiny_instructions_mc/acc_norm",
            "tiny_instructions_gen/exact_match",
        }
    )
    # A random model is at chance (4 choices) and generates nothing right.
    assert 0.1 <= base["tiny_instructions_mc/acc"] <= 0.4
    assert base["tiny_instructions_gen/exact_match"] <= 0.05
    assert tuned["tiny_instructions_mc/acc"] >= base["tiny_instructions_mc/acc"] + 0.25
    assert (
        tuned["tiny_instructions_gen/exact_match"]
        >= base["tiny_instructions_gen/exact_match"] + 0.25
    )


def test_outputs_are_written(runs: dict, fine_tuned: Path) -> None:
    out, folder = runs["candidate"]
    assert out.results_uri == f"file://{folder}"
    assert out.model_digest == checkpoint_digest(fine_tuned)
    assert out.model_digest.startswith("sha256:") and len(out.model_digest) == 71
    assert out.model_digest != runs["reference"][0].model_digest
    results = json.loads((folder / "results.json").read_text())
    assert "samples" not in results
    assert (
        results["results"]["tiny_instructions_mc"]["acc,none"]
        == out.metrics["tiny_instructions_mc/acc"]
    )
    for task in TASKS:
        lines = (folder / f"samples_{task}.jsonl").read_text().splitlines()
        samples = [json.loads(line) for line in lines]
        assert len(samples) == 100
        assert sorted(s["doc_id"] for s in samples) == list(range(100))
        for name in catalog.tasks()[task].metrics:
            assert all(s[name] in (0, 1) for s in samples), name
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["harness"] == {"name": "lm-eval", "version": "0.4.13"}
    assert provenance["backend"] == "hf"
    assert provenance["model_digest"] == out.model_digest
    assert provenance["suite"] == {"name": "tiny", "version": 1.0}
    assert {t: v["version"] for t, v in provenance["tasks"].items()} == dict.fromkeys(TASKS, 1.0)
    assert provenance["batch_size"] == 1 and provenance["seed"] == 1234
    assert provenance["limit"] == 0 and provenance["label"] == "candidate"


def test_digest_ignores_cache_metadata_but_not_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    first = checkpoint_digest(tmp_path)
    (tmp_path / ".llmflow").mkdir()
    (tmp_path / ".llmflow" / "manifest.json").write_text("{}")
    assert checkpoint_digest(tmp_path) == first
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert checkpoint_digest(tmp_path) != first


def test_bad_suite_fails_before_lm_eval_runs(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(
        CatalogError, match="eval suite 'tinny' does not exist; did you mean 'tiny'"
    ):
        evaluate_model(suite="tinny", output=f"file://{tmp_path}", model_path=str(tiny_model))
    assert not list(tmp_path.iterdir())


def test_model_and_endpoint_are_exclusive(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="exactly one of model-path"):
        evaluate_model(
            suite="tiny",
            output=f"file://{tmp_path}",
            model_path=str(tiny_model),
            endpoint="http://127.0.0.1:1/v1/completions",
        )
    with pytest.raises(EvaluationError, match="served-model-name is required"):
        evaluate_model(
            suite="tiny", output=f"file://{tmp_path}", endpoint="http://127.0.0.1:1/v1/completions"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_fails_naming_it(tiny_model: Path, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}/v1/completions"
    with pytest.raises(
        EndpointError,
        match=re.escape(f"endpoint {endpoint} failed during the evaluation (ConnectionError"),
    ):
        evaluate_model(
            suite="tiny",
            output=f"file://{tmp_path / 'out'}",
            endpoint=endpoint,
            served_model_name="tiny",
            tokenizer=str(tiny_model),
            limit=2,
        )
    assert not (tmp_path / "out").exists()


#: Four items in the ARC dataset's own format (what lm-eval's arc_easy task reads).
ARC_ITEMS = [
    {
        "id": f"q{i}",
        "question": question,
        "choices": {"text": choices, "label": ["A", "B", "C", "D"]},
        "answerKey": answer,
    }
    for i, (question, choices, answer) in enumerate(
        [
            ("Which is a liquid at room temperature?", ["iron", "water", "salt", "wood"], "B"),
            ("What do plants need to make food?", ["sand", "light", "noise", "plastic"], "B"),
            ("Which planet is closest to the Sun?", ["Mercury", "Mars", "Venus", "Earth"], "A"),
            ("What melts ice fastest?", ["shade", "cold air", "heat", "darkness"], "C"),
        ]
    )
]


@pytest.mark.s3
def test_builtin_task_reads_data_from_s3(
    s3: Any, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lm-eval's own arc_easy, pointed at a JSONL in S3: nothing comes from the hub."""
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "arc_local.yaml").write_text(
        "group: arc_local\ntask: [arc_easy]\nmetadata: {version: 1, lm_eval_families: [arc]}\n"
    )
    monkeypatch.setattr(catalog, "SUITES", suites)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s3.client().put_object(
        Bucket="models",
        Key="data/arc/test.jsonl",
        Body="".join(json.dumps(item) + "\n" for item in ARC_ITEMS).encode(),
    )
    out = evaluate_model(
        suite="arc_local",
        output="s3://models/evals/arc",
        model_path=str(tiny_model),
        data_files=json.dumps({"arc_easy": {"test": "s3://models/data/arc/test.jsonl"}}),
    )
    assert set(out.metrics) == {"arc_easy/acc", "arc_easy/acc_norm"}
    body = s3.client().get_object(Bucket="models", Key="evals/arc/samples_arc_easy.jsonl")["Body"]
    samples = [json.loads(line) for line in body.read().decode().splitlines()]
    assert [s["doc"]["id"] for s in samples] == ["q0", "q1", "q2", "q3"]
    provenance = json.loads(
        s3.client().get_object(Bucket="models", Key="evals/arc/provenance.json")["Body"].read()
    )
    assert provenance["data_files"] == {"arc_easy": {"test": "s3://models/data/arc/test.jsonl"}}
