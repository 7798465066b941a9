from pathlib import Path

import pytest

from workflows.exceptions import SpecError
from workflows.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    return {"model": {"name": "tiny-llama", "source": "s3://models/tiny-llama"}}


def test_every_example_spec_loads() -> None:
    specs = sorted((ROOT / "releases").glob("*.yaml"))
    assert specs, "releases/ holds no example spec"
    for path in specs:
        spec = load_spec(path)
        assert spec.model.name


def test_defaults_fill_the_cluster_settings() -> None:
    spec = parse_spec(base())
    assert spec.namespace == "llmflow"
    assert spec.storage.credentials_secret == "llmflow-s3"
    assert spec.storage.hf_token_secret == "llmflow-hf"
    assert spec.model.cache.verify == "stat"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ftp://host/model", "scheme 'ftp'"),
        ("models/tiny", "no scheme"),
        ("s3://models", "names a whole bucket"),
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("file://relative/path", "absolute path"),
        ("hf://org/model", "no revision"),
        ("hf://model@main", "not a repository id like org/name"),
    ],
)
def test_bad_source_names_field_value_and_fix(source: str, expected: str) -> None:
    data = base()
    data["model"]["source"] = source
    with pytest.raises(SpecError) as info:
        parse_spec(data, origin="releases/x.yaml")
    message = str(info.value)
    assert message.startswith("releases/x.yaml: model.source = ")
    assert repr(source) in message
    assert expected in message


@pytest.mark.parametrize("source", ["hf://org/model@main", "hf://org/model@v1.0"])
def test_hub_sources_are_accepted(source: str) -> None:
    data = base()
    data["model"]["source"] = source
    assert parse_spec(data).model.source == source


def test_misspelled_field_suggests_the_right_one() -> None:
    data = base()
    data["model"]["cach"] = {"verify": "full"}
    with pytest.raises(SpecError, match=r"model\.cach: unknown field; did you mean 'cache'\?"):
        parse_spec(data)


def test_every_problem_is_reported_at_once() -> None:
    data = {"namespace": "Bad_NS", "model": {"name": "x", "source": "ftp://a"}, "extra": 1}
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("<spec>: namespace = 'Bad_NS'") for line in lines)
    assert any("extra: unknown field" in line for line in lines)


def test_out_of_range_numbers_and_enums_are_rejected() -> None:
    data = base()
    data["model"]["cache"] = {"concurrency": 0, "verify": "sometimes"}
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert "model.cache.concurrency = 0" in str(info.value)
    assert "model.cache.verify = 'sometimes'" in str(info.value)


def test_missing_model_section(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("namespace: llmflow\n")
    with pytest.raises(SpecError, match=r"r\.yaml: model: required field is missing"):
        load_spec(path)


def test_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such release spec"):
        load_spec(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def finetune(**changes) -> dict:
    data = base()
    data["finetune"] = {
        "dataset": "s3://data-bucket/train.jsonl",
        "output": "s3://out-bucket/ft",
        **changes,
    }
    return data


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lora": {"rank": 0}}, "finetune.lora.rank = 0: Input should be greater than 0"),
        ({"replicas": 0}, "finetune.replicas = 0: Input should be greater than or equal to 1"),
        ({"gpus_per_replica": 2}, "finetune: gpus_per_replica = 2 but node_pool.gpu is false"),
        ({"dataset": "http://x/y"}, "finetune.dataset = 'http://x/y': must be s3://"),
        ({"launcher": "mpijob"}, "finetune.launcher = 'mpijob'"),
        ({"epochz": 3}, "finetune.epochz: unknown field; did you mean 'epochs'?"),
    ],
)
def test_bad_finetune_sections(changes: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(finetune(**changes))
    assert expected in str(info.value)


def test_gpu_jobs_need_a_gpu_pool_and_say_how() -> None:
    with pytest.raises(SpecError, match="set node_pool.gpu: true"):
        parse_spec(finetune(gpus_per_replica=1))
    spec = parse_spec(finetune(gpus_per_replica=1, node_pool={"gpu": True}))
    assert spec.finetune is not None and spec.finetune.gpus_per_replica == 1


def evaluate(**changes: object) -> dict:
    section = {
        "suite": "tiny",
        "candidate": "s3://models/tiny-llama-ft/final",
        "reference": "s3://models/tiny-llama",
        "output": "s3://models/evals",
        "gates": [{"metric": "tiny_instructions_mc/acc", "margin": 0.05}],
    }
    section.update(changes)
    return {**base(), "evaluate": section}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"suite": "tinny"}, "tinny"),
        ({"gates": [{"metric": "arc_easy/acc", "margin": 0.05}]}, "suite 'tiny' has no task"),
        (
            {"gates": [{"metric": "tiny_instructions_mc/bleu", "margin": 0.05}]},
            "produces acc, acc_norm, not 'bleu'",
        ),
        ({"gates": [{"metric": "tiny_instructions_mc/acc", "margin": -0.1}]}, "greater than"),
        ({"gates": [{"metric": "tiny_instructions_mc/acc"}]}, "neither a margin nor a floor"),
        (
            {"gates": [{"metric": "tiny_instructions_mc/acc", "floor": 0.3, "confidence": 1.2}]},
            "between 0.5 and 1",
        ),
        ({"reference": None}, "non-inferiority needs the model in production"),
        ({"gates": []}, "at least 1 item"),
        ({"candidate": "tiny"}, "must be s3://bucket/path or file:///absolute/path"),
    ],
)
def test_bad_evaluate_sections(changes: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(evaluate(**changes), origin="releases/x.yaml")
    assert expected in str(info.value)
    assert "releases/x.yaml: evaluate" in str(info.value)


def test_a_floor_alone_needs_no_reference() -> None:
    gate = {"metric": "tiny_instructions_gen/exact_match", "floor": 0.2}
    spec = parse_spec(evaluate(reference=None, gates=[gate]))
    assert spec.evaluate is not None and spec.evaluate.reference is None


def serving(**changes: object) -> dict:
    section: dict[str, object] = {"model": "s3://models/tiny-llama-ft/final"}
    section.update(changes)
    return {**base(), "serving": section}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"canary": {"policy": {"metrics": ["ttft_s", "tpot_s"]}}}, "tpot_s"),
        ({"canary": {"policy": {"latency_tolerance": -0.1}}}, "greater than or equal to 0"),
        ({"canary": {"stages": [50, 10, 100]}}, "must increase strictly"),
        ({"canary": {"stages": [10, 50]}}, "must end at 100"),
        ({"canary": {"stages": [0, 100]}}, "not a percentage"),
        ({"canary": {"polcy": {}}}, "did you mean 'policy'"),
        ({"probe": {"prompts": "nope"}}, "no probe set 'nope'"),
        ({"gpus": 1}, "node_pool.gpu is false"),
        ({"scrape_interval": "fast"}, "Prometheus duration"),
        ({"prometheus_url": "prometheus:9090"}, "http(s) URL"),
        ({"autoscale": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas 2 < min_replicas 3"),
        ({"model": "tiny"}, "must be s3://bucket/path or file:///absolute/path"),
    ],
)
def test_bad_serving_sections(changes: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(serving(**changes), origin="releases/x.yaml")
    assert expected in str(info.value)
    assert "releases/x.yaml: serving" in str(info.value)


def test_serving_defaults_are_the_documented_policy() -> None:
    spec = parse_spec(serving())
    assert spec.serving is not None
    canary = spec.serving.canary
    assert canary.stages == [10, 50, 100] and canary.extensions == 1
    policy = canary.policy
    assert (policy.latency_tolerance, policy.error_rate_tolerance) == (0.10, 0.01)
    assert (policy.quality_margin, policy.confidence, policy.min_samples) == (0.05, 0.95, 30)
