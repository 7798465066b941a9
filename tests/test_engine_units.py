"""Small pieces of the local engine: path mapping and Argo's expression languages."""

from pathlib import Path

import pytest

from workflows.exceptions import RunError
from workflows.local.expressions import (
    evaluate_condition,
    evaluate_depends,
    evaluate_when,
    substitute,
)
from workflows.local.leaves import duration_seconds
from workflows.local.paths import PathMapper


def test_paths_are_rewritten_only_as_declared_prefixes(tmp_path: Path) -> None:
    mapper = PathMapper({"/models": tmp_path / "vol"}, tmp_path / "fs")
    mapper.declare_output("/tmp/none")
    mapper.declare_output("/tmp/out/msg")
    assert mapper.rewrite("/models/tiny") == f"{tmp_path}/vol/tiny"
    assert mapper.rewrite('[{"value": "/models"}]') == f'[{{"value": "{tmp_path}/vol"}}]'
    assert mapper.rewrite("open('/tmp/out/msg')") == f"open('{tmp_path}/fs/tmp/out/msg')"
    for untouched in [
        "s3://bucket/models/x",
        "file:///models",
        "/modelsX",
        "/tmp/other/python",
        "/tmp/nonexistent",
    ]:
        assert mapper.rewrite(untouched) == untouched
    assert (tmp_path / "fs" / "tmp" / "out").is_dir()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("heads == heads", True),
        ("heads != heads", False),
        ("10 > 9", True),
        ("'a b' == 'a b' && !(1 == 2)", True),
        ("true || false", True),
        ("abc =~ '^a'", True),
        ("3.5 <= 3", False),
    ],
)
def test_when(expression: str, expected: bool) -> None:
    assert evaluate_when(expression) is expected


def test_when_rejects_what_it_cannot_compare() -> None:
    with pytest.raises(RunError, match="not numbers"):
        evaluate_when("a < b")
    with pytest.raises(RunError, match="not a boolean"):
        evaluate_when("maybe")


def test_depends() -> None:
    phases = {"a": "Succeeded", "b": "Failed", "c": "Skipped"}
    assert evaluate_depends("a && c", phases, {})
    assert evaluate_depends("b.Failed && !b.Succeeded", phases, {})
    assert not evaluate_depends("a && b", phases, {})
    assert evaluate_depends("l.AnySucceeded", {"l": "Failed"}, {"l": ["Failed", "Succeeded"]})
    with pytest.raises(RunError, match="not a task here"):
        evaluate_depends("zz", phases, {})


def test_resource_conditions() -> None:
    job = {"status": {"phase": "Running", "active": 2, "conditions": [{"type": "Created"}]}}
    assert evaluate_condition("status.phase == Running", job)
    assert evaluate_condition("status.phase in (Running,Succeeded),status.active > 1", job)
    assert not evaluate_condition("status.failed > 0", job)
    assert evaluate_condition("status.conditions.0.type = Created", job)
    assert evaluate_condition("status.failed != 3", job)


def test_substitute_names_what_is_missing() -> None:
    assert substitute("{{ a.b }}-{{c}}", {"a.b": "1", "c": "2"}, "x") == "1-2"
    with pytest.raises(RunError, match=r"x: unresolved \{\{tasks.a.outputs.result\}\}"):
        substitute("{{tasks.a.outputs.result}}", {"tasks.b.outputs.result": ""}, "x")


def test_durations() -> None:
    assert duration_seconds("90") == 90
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("500ms") == 0.5
    assert duration_seconds("") is None
    with pytest.raises(RunError):
        duration_seconds("soon")
