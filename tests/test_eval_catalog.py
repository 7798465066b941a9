"""The eval catalog: suites and tasks read from their YAML files, fast and without lm-eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evals import catalog, tiny_data
from evals.catalog import CatalogError


def test_suites_name_their_tasks() -> None:
    assert catalog.suites()["tiny"] == ["tiny_instructions_mc", "tiny_instructions_gen"]


def test_tasks_resolve_includes_metrics_and_versions() -> None:
    tasks = catalog.tasks()
    mc, gen = tasks["tiny_instructions_mc"], tasks["tiny_instructions_gen"]
    assert (mc.output_type, mc.metrics, mc.version) == (
        "multiple_choice",
        {"acc": True, "acc_norm": True},
        1.0,
    )
    assert (gen.output_type, gen.metrics) == ("generate_until", {"exact_match": True})
    # From the shared template, through `include:`.
    assert mc.config["dataset_path"] == gen.config["dataset_path"] == "json"
    assert gen.config["generation_kwargs"]["until"] == ["\n"]
    files = mc.config["dataset_kwargs"]["data_files"]
    assert (catalog.DATA_ROOT / files["test"]).is_file()


def test_suite_tasks_in_suite_order() -> None:
    assert [t.name for t in catalog.suite_tasks("tiny")] == [
        "tiny_instructions_mc",
        "tiny_instructions_gen",
    ]


def test_unknown_suite_suggests_a_close_name() -> None:
    with pytest.raises(
        CatalogError, match=r"eval suite 'tinyy' does not exist; did you mean 'tiny'"
    ):
        catalog.suite_tasks("tinyy")
    with pytest.raises(CatalogError, match=r"known: tiny"):
        catalog.suite_tasks("zzz")


def test_unknown_task_in_a_suite_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.yaml").write_text("group: broken\ntask: [tiny_instructions_mcq]\n")
    monkeypatch.setattr(catalog, "SUITES", tmp_path)
    with pytest.raises(CatalogError) as err:
        catalog.suite_tasks("broken")
    message = str(err.value)
    assert "'tiny_instructions_mcq': did you mean 'tiny_instructions_mc'?" in message
    assert "broken.yaml" in message


def test_suite_files_need_a_group_and_a_task_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.yaml").write_text("task: tiny_instructions_mc\n")
    monkeypatch.setattr(catalog, "SUITES", tmp_path)
    with pytest.raises(CatalogError, match="bad.yaml: a suite needs `group: <name>`"):
        catalog.suites()


def test_include_cycles_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("include: b.yaml\ntask: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(CatalogError, match="include:` cycle"):
        catalog.load_yaml(tmp_path / "a.yaml")


def test_builtin_families_are_read_without_importing_lm_eval() -> None:
    code = (
        "import sys\n"
        "from evals import catalog\n"
        "catalog.suite_tasks('tiny')\n"
        "arc = catalog.tasks(['arc'])['arc_easy']\n"
        "print(arc.output_type, *sorted(arc.metrics), 'lm_eval' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["multiple_choice", "acc", "acc_norm", "False"]


def test_include_paths_name_our_folders_and_asked_families() -> None:
    assert catalog.include_paths()[:2] == [catalog.TASKS, catalog.SUITES]
    arc = catalog.include_paths(["arc"])[2]
    assert (arc / "arc_easy.yaml").is_file()
    with pytest.raises(CatalogError, match="lm-eval family 'arcc'.*did you mean 'arc'"):
        catalog.include_paths(["arcc"])


def test_committed_items_are_what_the_generator_writes() -> None:
    committed = tiny_data.OUTPUT.read_text().splitlines()
    assert [json.loads(line) for line in committed] == tiny_data.items()
    items = tiny_data.items()
    assert len(items) == 100 and {i["source"] for i in items} == {"train", "test"}
    for item in items:
        choices = item["choices"]
        assert isinstance(choices, list) and len(set(choices)) == 4
        assert choices[item["answer"]] == item["response"]  # type: ignore[index]
