"""Argo's semantic checks: `argo lint`'s verdicts and messages on Argo's own cases and ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from workflows.cli import main
from workflows.pipelines import discover
from workflows.render import render
from workflows.spec import load_spec
from workflows.validation import workflow_problems

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT.parent / "shared" / "argo-conformance"


def conformance_cases() -> list[dict[str, Any]]:
    manifest = CONFORMANCE / "manifest.yaml"
    if not manifest.is_file():
        return []
    return yaml.safe_load(manifest.read_text())["cases"]


INVALID = [c for c in conformance_cases() if c["expect"] == "invalid"]
ACCEPTED = [c for c in conformance_cases() if c["expect"] != "invalid"]


def load_case(case: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((CONFORMANCE / "cases" / case["file"]).read_text())


def test_the_conformance_corpus_is_there() -> None:
    assert len(INVALID) == 3 and len(ACCEPTED) > 40, f"expected Argo's cases under {CONFORMANCE}"


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["file"])
def test_argo_lint_failures_are_reported_in_argos_words(case: dict[str, Any]) -> None:
    problems = workflow_problems(load_case(case))
    assert problems and case["message"]["contains"] in problems[0], problems


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["file"])
def test_llmflow_lint_prints_them_and_fails(case: dict[str, Any], schemas_dir: Path) -> None:
    path = CONFORMANCE / "cases" / case["file"]
    result = CliRunner().invoke(main, ["lint", "--schemas", str(schemas_dir), str(path)])
    assert result.exit_code == 1, result.output
    assert case["message"]["contains"] in result.output


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c["file"])
def test_workflows_argo_accepts_have_no_problems(case: dict[str, Any]) -> None:
    assert workflow_problems(load_case(case)) == []


@pytest.mark.parametrize("name", sorted(discover()))
def test_our_pipelines_have_no_problems(name: str) -> None:
    assert workflow_problems(render(name, load_spec(ROOT / "releases" / "tiny.yaml"))) == []


# -- one small workflow per rule, built from these parts ---------------------------------------


def workflow(*templates: dict[str, Any], entrypoint: str | None = "main", **spec: Any) -> dict:
    body = {"templates": list(templates), **spec}
    if entrypoint is not None:
        body["entrypoint"] = entrypoint
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "rules-"},
        "spec": body,
    }


def echo(name: str = "echo", *inputs: str, args: tuple[str, ...] = ()) -> dict[str, Any]:
    template: dict[str, Any] = {
        "name": name,
        "container": {"image": "busybox", "command": ["echo", *args]},
    }
    if inputs:
        template["inputs"] = {"parameters": [{"name": p} for p in inputs]}
    return template


def steps(name: str, *groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "steps": list(groups)}


def dag(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dag": {"tasks": list(tasks)}}


def call(name: str, template: str = "echo", **fields: Any) -> dict[str, Any]:
    """A step or DAG task; `message="x"` becomes an argument named message."""
    node: dict[str, Any] = {"name": name, "template": template}
    params = [{"name": k, "value": v} for k, v in fields.items() if not k.startswith("_")]
    if params:
        node["arguments"] = {"parameters": params}
    node.update({k[1:]: v for k, v in fields.items() if k.startswith("_")})
    return node


TYPES = (
    "choose one of: container, containerSet, steps, script, resource, dag, suspend, template, "
    "template ref"
)
NAME_RULE = (
    "name must consist of alpha-numeric characters or '-', and must start with an alpha-numeric "
    "character (e.g. My-name1-2, 123-NAME)"
)

RULES = {
    "entrypoint missing": (
        workflow(echo("main"), entrypoint=None),
        "spec.entrypoint is required",
    ),
    "entrypoint undefined": (
        workflow(echo("other")),
        "template name 'main' undefined",
    ),
    "template names unique": (
        workflow(echo("main"), echo("main")),
        "spec.templates[1].name 'main' is not unique",
    ),
    "template names valid": (
        workflow(echo("main"), echo("a_b")),
        f"spec.templates[1].name: 'a_b' is invalid: {NAME_RULE}",
    ),
    "one template type": (
        workflow({**echo("main"), "script": {"image": "busybox", "source": "true"}}),
        f"templates.main multiple template types specified. {TYPES}",
    ),
    "a template type": (
        workflow({"name": "main"}),
        "template 'main' type is unknown",
    ),
    "step calls an undefined template": (
        workflow(steps("main", [call("a", "nope")])),
        "templates.main.steps[0].a template name 'nope' undefined",
    ),
    "task calls an undefined template": (
        workflow(dag("main", call("a", "nope")), echo()),
        "templates.main.tasks.a template name 'nope' undefined",
    ),
    "step names unique": (
        workflow(steps("main", [call("a")], [call("a")]), echo()),
        "templates.main.steps[1].name 'a' is not unique",
    ),
    "task names unique": (
        workflow(dag("main", call("a"), call("a")), echo()),
        "templates.main sorting failed: duplicated nodeName a",
    ),
    "dependency names a task": (
        workflow(dag("main", call("a"), call("b", _dependencies=["c"])), echo()),
        "templates.main sorting failed: invalid dependency c",
    ),
    "no dependency cycle": (
        workflow(dag("main", call("a", _depends="b"), call("b", _depends="a")), echo()),
        "templates.main sorting failed: graph with cycle",
    ),
    "depends or dependencies": (
        workflow(
            dag("main", call("a"), call("b", _depends="a"), call("c", _dependencies=["a"])), echo()
        ),
        "templates.main cannot use both 'depends' and 'dependencies' in the same DAG template",
    ),
    "items-based dependency on a loop": (
        workflow(dag("main", call("a"), call("b", _depends="a.AnySucceeded")), echo()),
        "templates.main.tasks.a dependency 'a' uses an items-based condition such as "
        ".AnySucceeded or .AllFailed but does not contain any items",
    ),
    "onExit defined": (
        workflow(echo("main"), onExit="cleanup"),
        "template name 'cleanup' undefined",
    ),
    "input parameter names unique": (
        workflow(echo("main", "m", "m")),
        "templates.main.inputs.parameters[1].name 'm' is not unique",
    ),
    "argument names unique": (
        workflow(
            steps(
                "main", [call("a", _arguments={"parameters": [{"name": "m", "value": "1"}] * 2})]
            ),
            echo(),
        ),
        "templates.main.steps[0].a.arguments.parameters[1].name 'm' is not unique",
    ),
    "workflow argument names unique": (
        workflow(echo("main"), arguments={"parameters": [{"name": "x", "value": "1"}] * 2}),
        "spec.arguments.parameters[1].name 'x' is not unique",
    ),
    "entrypoint inputs come from spec.arguments": (
        workflow(echo("main", "message")),
        "templates.main inputs.parameters.message was not supplied",
    ),
    "nested calls name every caller": (
        workflow(
            steps("main", [call("a", "inner")]),
            steps("inner", [call("b")]),
            echo("echo", "message"),
        ),
        "templates.main.steps[0].a templates.inner.steps[0].b templates.echo "
        "inputs.parameters.message was not supplied",
    ),
    "a step reads only earlier steps": (
        workflow(
            steps("main", [call("a", message="{{steps.b.outputs.result}}")], [call("b")]),
            echo("echo", "message"),
        ),
        "templates.main.steps failed to resolve {{steps.b.outputs.result}}",
    ),
    "a task reads the status of ancestors only": (
        workflow(dag("main", call("a"), call("b", _when="{{tasks.a.status}} == Failed")), echo()),
        "templates.main.tasks.b failed to resolve {{tasks.a.status}}",
    ),
    "a task depends on the tasks it reads": (
        workflow(
            dag("main", call("a", message="x"), call("b", message="{{tasks.a.outputs.result}}")),
            echo("echo", "message"),
        ),
        "templates.main.tasks.b missing dependency 'a' for parameter 'message'",
    ),
    "a template reads only its inputs": (
        workflow(echo("main", args=("{{inputs.parameters.nope}}",))),
        "templates.main: failed to resolve {{inputs.parameters.nope}}",
    ),
    "workflow parameters are declared": (
        workflow(echo("main", args=("{{workflow.parameters.nope}}",))),
        "templates.main: failed to resolve {{workflow.parameters.nope}}",
    ),
}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_gives_argos_message_first(rule: str) -> None:
    wf, message = RULES[rule]
    problems = workflow_problems(wf)
    assert problems[:1] == [message], problems


def test_valid_parts_pass() -> None:
    ok = workflow(
        dag(
            "main",
            call("a", message="{{workflow.parameters.greeting}}"),
            call("b", message="{{tasks.a.outputs.result}}", _depends="a"),
            call("c", message="{{item}}", _withItems=["x", "y"], _depends="a && b"),
        ),
        echo("echo", "message", args=("{{inputs.parameters.message}}", "{{pod.name}}")),
        steps("exit", [call("report", message="{{workflow.status}} {{workflow.failures}}")]),
        arguments={"parameters": [{"name": "greeting", "value": "hi"}]},
        onExit="exit",
    )
    assert workflow_problems(ok) == []


def test_it_goes_on_past_the_first_problem() -> None:
    wf = workflow(steps("main", [call("a", "nope")], [call("b", "gone")]), echo(), onExit="bye")
    assert workflow_problems(wf) == [
        "templates.main.steps[0].a template name 'nope' undefined",
        "templates.main.steps[1].b template name 'gone' undefined",
        "template name 'bye' undefined",
    ]


def test_a_spec_argument_without_value_hides_the_inputs_default() -> None:
    # As in Argo's ProcessArgs: the named argument, valueless, replaces the default.
    template = {**echo("main"), "inputs": {"parameters": [{"name": "m", "default": "d"}]}}
    assert workflow_problems(workflow(template)) == []
    unset = workflow(template, arguments={"parameters": [{"name": "m"}]})
    assert workflow_problems(unset) == ["templates.main inputs.parameters.m was not supplied"]


def test_templates_and_crons_follow_their_own_rules() -> None:
    library = {
        **workflow(echo("echo", "m", args=("{{workflow.parameters.later}}",)), entrypoint=None),
        "kind": "WorkflowTemplate",
    }
    assert workflow_problems(library) == []
    cron = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "nightly"},
        "spec": {"schedules": ["0 0 * * *"], "workflowSpec": {"templates": [echo("main")]}},
    }
    assert workflow_problems(cron) == ["cannot validate Workflow: spec.entrypoint is required"]


def test_template_refs_are_taken_on_trust() -> None:
    ref = {"name": "a", "templateRef": {"name": "library", "template": "echo"}}
    wf = workflow(
        steps("main", [ref], [call("b", message="{{steps.a.outputs.result}}")]),
        echo("echo", "message"),
    )
    assert workflow_problems(wf) == []


LIBRARY = {
    "kind": "WorkflowTemplate",
    "metadata": {"name": "library"},
    "spec": {
        "templates": [
            {
                **steps("outer", [call("inner", "echo", message="{{inputs.parameters.message}}")]),
                "inputs": {"parameters": [{"name": "message"}]},
            },
            {**echo("echo", "message"), "outputs": {"parameters": [{"name": "said"}]}},
        ]
    },
}


def library(name: str, cluster: bool) -> dict[str, Any] | None:
    return LIBRARY if (name, cluster) == ("library", False) else None


def refers(template: str, library: str = "library", **fields: Any) -> dict[str, Any]:
    step = call("a", **fields)
    del step["template"]
    return {**step, "templateRef": {"name": library, "template": template}}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (refers("echo"), "templates.echo inputs.parameters.message was not supplied"),
        (refers("nope", message="m"), "template reference library.nope not found"),
        (refers("echo", "elsewhere", message="m"), "template reference elsewhere.echo not found"),
        (
            {**refers("echo", message="m"), "template": "echo"},
            "template name cannot be specified with templateRef",
        ),
        (
            {**refers("echo", message="m"), "templateRef": {"name": "library"}},
            "template name is required",
        ),
    ],
)
def test_a_lookup_checks_template_refs_as_validate_template_holder(
    step: dict[str, Any], message: str
) -> None:
    problems = workflow_problems(workflow(steps("main", [step]), echo()), library)
    assert problems == [f"templates.main.steps[0].a {message}"]


def test_a_referenced_template_resolves_its_names_in_its_workflow_template() -> None:
    # `outer` calls the library's `echo`; the Workflow's own `echo`, which needs an input
    # `other` that `outer` does not pass, is not the one it means.
    said = {**refers("echo", message="m"), "name": "c"}
    wf = workflow(
        steps(
            "main",
            [refers("outer", message="hi"), said],
            [call("b", "echo", other="{{steps.c.outputs.parameters.said}}")],
        ),
        echo("echo", "other"),
    )
    assert workflow_problems(wf, library) == []
    # With the referenced template known, its outputs are known: no wildcard any more.
    wf["spec"]["templates"][0]["steps"][1][0]["arguments"]["parameters"][0]["value"] = (
        "{{steps.c.outputs.parameters.nope}}"
    )
    assert workflow_problems(wf, library) == [
        "templates.main.steps failed to resolve {{steps.c.outputs.parameters.nope}}"
    ]
    assert workflow_problems(wf) == []  # without a lookup, taken on trust


def test_a_workflow_template_ref_may_not_come_with_templates() -> None:
    reference = {"workflowTemplateRef": {"name": "library"}}
    assert workflow_problems(workflow(entrypoint=None, **reference)) == []
    assert workflow_problems(workflow(echo("main"), **reference)) == [
        "Templates is invalid field in spec if workflow referred WorkflowTemplate reference"
    ]


def test_malformed_documents_do_not_crash() -> None:
    for spec in ({"templates": "x"}, {"templates": [None, {"name": 3}]}, {"entrypoint": ["x"]}):
        assert isinstance(workflow_problems({"kind": "Workflow", "spec": spec}), list)


def test_lint_checks_only_what_argo_could_decode(registry) -> None:
    from workflows.validation import validate_documents

    misspelled = workflow(echo("other"))
    misspelled["spec"]["entrypiont"] = misspelled["spec"].pop("entrypoint")
    problems = validate_documents([("wf.yaml", misspelled)], registry)
    assert [p.message for p in problems] == ["unknown field; did you mean 'entrypoint'?"]
    undefined = validate_documents([("wf.yaml", workflow(echo("other")))], registry)
    assert [str(p) for p in undefined] == [
        "wf.yaml: Workflow/rules-: (root): template name 'main' undefined"
    ]
