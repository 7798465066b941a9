"""WorkflowTemplates in the local engine: the store, `templateRef` and `workflowTemplateRef`.

What Argo does, read from its source at v4.1: `JoinWorkflowSpec` joins a referenced
WorkflowTemplate's spec under the Workflow's (workflow/util/merge.go); templateresolution
resolves `template:` names inside the WorkflowTemplate a `templateRef` reached and its own
`templateRef`s through the store again; `ProcessArgs` fills `workflow.parameters` from the
calling Workflow's globals (workflow/common/util.go). Workflows and WorkflowTemplates are
written in Hera and executed from their YAML, as in test_engine.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows import DAG, Parameter, RetryStrategy, Step, Steps, Task, Workflow
from hera.workflows import WorkflowTemplate as HeraWorkflowTemplate
from hera.workflows.models import TemplateRef, WorkflowTemplateRef

from tests.engine_helpers import by_name, execute, outputs, py
from workflows.exceptions import InvalidWorkflow, LLMFlowError, RunError, UnsupportedFeature
from workflows.local.engine import Run, RunOptions
from workflows.local.refs import MAX_DEPTH_MESSAGE, MAX_STACK_DEPTH
from workflows.local.templates import LocalTemplates

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT.parent / "shared" / "argo-conformance" / "cases"
FIXTURES = Path(__file__).parent / "argo"
WRITE = "import pathlib, sys; p = pathlib.Path('/tmp/out'); p.mkdir(parents=True, exist_ok=True); "
SHOUT = WRITE + "(p / 'loud').write_text(sys.argv[1].upper())"


@pytest.fixture
def store(tmp_path: Path) -> LocalTemplates:
    return LocalTemplates(tmp_path)


def ref(name: str, template: str, cluster: bool = False) -> TemplateRef:
    return TemplateRef(name=name, template=template, cluster_scope=cluster or None)


def shouting_library(name: str = "lib") -> HeraWorkflowTemplate:
    """A WorkflowTemplate whose `shout` upper-cases its input into the output `loud`."""
    with HeraWorkflowTemplate(name=name) as library:
        shout = py("shout", SHOUT, inputs=["text"], outputs=["loud"])
        shout.args = ["{{inputs.parameters.text}}"]
    return library


def run_in(store: LocalTemplates, workflow: Any, **options: Any) -> Run:
    return execute(workflow, store.root, templates=store, **options)


def template_node(run: Run, template: str) -> Any:
    """The node whose template is `template`, as code that finds `fetch-weights` looks."""
    return next(n for n in run.nodes.values() if n.template_name == template and n.type == "Pod")


# --- the store --------------------------------------------------------------------------------


def test_templates_are_applied_read_listed_and_deleted(tmp_path: Path) -> None:
    store = LocalTemplates(tmp_path)
    manifest = shouting_library().to_dict()
    assert store.apply(manifest) == "workflowtemplate.argoproj.io/lib created"
    path = tmp_path / "platform" / "workflowtemplates" / "default" / "lib.yaml"
    assert yaml.safe_load(path.read_text())["metadata"] == {"name": "lib", "namespace": "default"}
    assert "namespace" not in manifest["metadata"]  # the caller's manifest is left alone

    manifest["spec"]["entrypoint"] = "shout"
    assert store.apply(manifest) == "workflowtemplate.argoproj.io/lib configured"
    other = shouting_library("other").to_dict()
    other["metadata"]["namespace"] = "team"
    store.apply(other)
    assert sorted(os.listdir(path.parent)) == ["lib.yaml"]  # no temporary file stays behind

    got = store.get("default", "lib")
    assert got is not None and got["spec"]["entrypoint"] == "shout"
    assert store.get("team", "lib") is None and store.get("default", "../default/lib") is None
    assert [t["metadata"]["name"] for t in store.list()] == ["lib", "other"]
    assert [t["metadata"]["name"] for t in store.list("team")] == ["other"]
    assert store.list("nowhere") == []
    assert store.delete("default", "lib") is True
    assert store.delete("default", "lib") is False and store.get("default", "lib") is None


def test_cluster_workflow_templates_are_kept_apart(store: LocalTemplates) -> None:
    manifest = {**shouting_library("shared").to_dict(), "kind": "ClusterWorkflowTemplate"}
    manifest["metadata"]["namespace"] = "ignored"
    assert store.apply(manifest) == "clusterworkflowtemplate.argoproj.io/shared created"
    got = store.get("", "shared", cluster=True)
    assert got is not None and "namespace" not in got["metadata"]
    assert store.get("default", "shared") is None and store.list() == []
    assert [t["metadata"]["name"] for t in store.list(cluster=True)] == ["shared"]
    assert store.delete("", "shared", cluster=True) is True


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"kind": "Workflow", "metadata": {"name": "a"}, "spec": {}}, "kind 'Workflow'"),
        ({"kind": "WorkflowTemplate", "spec": {}}, "metadata.name is required"),
        (
            {"kind": "WorkflowTemplate", "metadata": {"generateName": "a-"}, "spec": {}},
            "generateName is not enough",
        ),
        (
            {"kind": "WorkflowTemplate", "metadata": {"name": "../a"}, "spec": {}},
            "'../a' is not a valid Kubernetes name",
        ),
        (
            {"kind": "WorkflowTemplate", "metadata": {"name": "a", "namespace": "A B"}, "spec": {}},
            "metadata.namespace 'A B' is not a valid Kubernetes name",
        ),
        (
            {"kind": "WorkflowTemplate", "metadata": {"name": "a"}, "spec": {"templates": "x"}},
            "spec must be a mapping whose templates is a list",
        ),
    ],
)
def test_apply_refuses_what_is_no_template(
    store: LocalTemplates, manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(LLMFlowError) as caught:
        store.apply(manifest)
    assert message in str(caught.value)
    assert not (store.root / "platform").exists()


# --- workflowTemplateRef -------------------------------------------------------------------


def greeting_template() -> HeraWorkflowTemplate:
    """Entrypoint `main` prints its inputs, which the workflow's arguments fill; `other` prints
    something else."""
    with HeraWorkflowTemplate(
        name="greeter",
        entrypoint="main",
        on_exit="bye",
        parallelism=1,
        arguments=[
            Parameter(name="greeting", value="template-greeting"),
            Parameter(name="size", value="s", enum=["s", "m"]),
            Parameter(name="who", value="template-who"),
        ],
    ) as template:
        main = py("main", "import sys; print(' '.join(sys.argv[1:]))", inputs=["greeting", "size"])
        main.args = ["{{inputs.parameters.greeting}}", "{{inputs.parameters.size}}"]
        py("other", "print('other entrypoint')")
        bye = py("bye", "import sys; print(sys.argv[1])")
        bye.args = ["{{workflow.parameters.who}}"]
    return template


def test_workflow_template_ref_joins_the_template_as_argo_does(store: LocalTemplates) -> None:
    store.apply(greeting_template().to_dict())
    workflow = Workflow(
        name="from-template",
        workflow_template_ref=WorkflowTemplateRef(name="greeter"),
        parallelism=3,
        arguments=[Parameter(name="greeting", value="hello"), Parameter(name="size", value="xl")],
    ).to_dict()
    workflow["spec"]["arguments"]["parameters"] += [{"name": "extra", "value": "e"}]
    run = Run(workflow, RunOptions(root=store.root, templates=store, parameters={"who": "set"}))
    # The Workflow's fields win; what it leaves out comes from the template.
    assert run.spec["entrypoint"] == "main" and run.spec["onExit"] == "bye"
    assert run.spec["parallelism"] == 3
    # A valued parameter is taken whole from the Workflow: `xl` is not held to the enum.
    assert run.parameters == {"greeting": "hello", "size": "xl", "who": "set", "extra": "e"}
    labels = run.workflow["metadata"]["labels"]
    assert labels == {"workflows.argoproj.io/workflow-template": "greeter"}
    assert run.execute() == "Succeeded"
    entry = by_name(run)["from-template"]
    assert entry.outputs["result"] == "hello xl"  # the arguments reached the entrypoint's inputs
    assert entry.template_name == "main"
    assert entry.to_json()["templateScope"] == "local/"  # the joined spec's holder has no name
    handler = next(n for n in run.nodes.values() if n.name == "from-template.onExit")
    assert handler.outputs["result"] == "set"


def test_the_workflows_entrypoint_picks_another_template(store: LocalTemplates) -> None:
    store.apply(greeting_template().to_dict())
    workflow = Workflow(
        name="other-entry",
        entrypoint="other",
        workflow_template_ref=WorkflowTemplateRef(name="greeter"),
    )
    run = run_in(store, workflow)
    assert run.phase == "Succeeded"
    assert by_name(run)["other-entry"].outputs["result"] == "other entrypoint"
    assert by_name(run)["other-entry"].template_name == "other"


def test_templates_beside_a_workflow_template_ref_are_invalid(store: LocalTemplates) -> None:
    store.apply(greeting_template().to_dict())
    with Workflow(
        name="both", entrypoint="mine", workflow_template_ref=WorkflowTemplateRef(name="greeter")
    ) as workflow:
        py("mine", "print(1)")
    with pytest.raises(InvalidWorkflow) as caught:
        Run(workflow.to_dict(), RunOptions(root=store.root, templates=store))
    assert caught.value.problems == [
        "Templates is invalid field in spec if workflow referred WorkflowTemplate reference"
    ]


def test_a_missing_workflow_template_is_refused_at_load(store: LocalTemplates) -> None:
    workflow = Workflow(name="orphan", workflow_template_ref=WorkflowTemplateRef(name="gone"))
    with pytest.raises(RunError) as caught:
        Run(workflow.to_dict(), RunOptions(root=store.root, templates=store))
    assert str(caught.value) == (
        "spec.workflowTemplateRef: no WorkflowTemplate 'gone' in namespace 'default'; apply it "
        "with `llmflow templates apply --local` (or kubectl apply -f)"
    )


# --- templateRef ---------------------------------------------------------------------------


def test_template_ref_from_dag_tasks_passes_arguments_and_outputs(store: LocalTemplates) -> None:
    store.apply(shouting_library().to_dict())
    with Workflow(name="dag-ref", entrypoint="main") as w:
        echo = py("echo", "import sys; print(sys.argv[1])", inputs=["text"])
        echo.args = ["{{inputs.parameters.text}}"]
        with DAG(name="main"):
            a = Task(name="a", template_ref=ref("lib", "shout"), arguments={"text": "hi"})
            b = echo(name="b", arguments={"text": "{{tasks.a.outputs.parameters.loud}}!"})
            a >> b
    run = run_in(store, w)
    nodes = by_name(run)
    assert run.phase == "Succeeded"
    assert outputs(nodes["a"]) == {"loud": "HI"} and nodes["b"].outputs["result"] == "HI!"
    assert nodes["a"].inputs == {"parameters": [{"name": "text", "value": "hi"}]}
    assert template_node(run, "shout") is nodes["a"]
    status = nodes["a"].to_json()
    assert status["templateRef"] == {"name": "lib", "template": "shout"}
    assert status["templateScope"] == "local/dag-ref" and "templateName" not in status
    assert nodes["b"].to_json()["templateName"] == "echo"


def test_template_ref_from_steps_with_retries_and_loops(store: LocalTemplates) -> None:
    with HeraWorkflowTemplate(name="lib") as library:
        shout = py(
            "shout", SHOUT, inputs=["text"], outputs=["loud"], retry_strategy=RetryStrategy(limit=1)
        )
        shout.args = ["{{inputs.parameters.text}}"]
    store.apply(library.to_dict())
    with Workflow(name="steps-ref", entrypoint="main") as w:
        with Steps(name="main"):
            Step(name="one", template_ref=ref("lib", "shout"), arguments={"text": "a"})
            Step(
                name="many",
                template_ref=ref("lib", "shout"),
                arguments={"text": "{{item}}"},
                with_items=["b", "c"],
            )
    run = run_in(store, w)
    nodes = by_name(run)
    assert run.phase == "Succeeded"
    retry = nodes["one"]
    attempt = run.nodes[retry.children[0]]
    assert retry.type == "Retry" and attempt.template_name == "shout"
    assert attempt.to_json()["templateRef"] == {"name": "lib", "template": "shout"}
    assert outputs(retry) == {"loud": "A"}
    assert [outputs(nodes[f"many({i}:{x})"]) for i, x in enumerate("bc")] == [
        {"loud": "B"},
        {"loud": "C"},
    ]


def test_a_referenced_template_calls_its_siblings_not_the_workflows(
    store: LocalTemplates,
) -> None:
    """`template:` inside a WorkflowTemplate names its own templates; `templateRef` goes to the
    store again (here a ClusterWorkflowTemplate)."""
    with HeraWorkflowTemplate(name="outer-lib") as library:
        inner = py("inner", "print('inner of the library')")
        with DAG(name="outer"):
            inner(name="first")
            Task(
                name="second",
                template_ref=ref("shared", "shout", cluster=True),
                arguments={"text": "x"},
            )
    store.apply(library.to_dict())
    store.apply({**shouting_library("shared").to_dict(), "kind": "ClusterWorkflowTemplate"})
    with Workflow(name="scopes", entrypoint="main") as w:
        py("inner", "import sys; print('inner of the workflow'); sys.exit(3)")
        with Steps(name="main"):
            Step(name="call", template_ref=ref("outer-lib", "outer"))
    run = run_in(store, w)
    nodes = by_name(run)
    assert run.phase == "Succeeded", run.message
    assert nodes["first"].outputs["result"] == "inner of the library"
    assert nodes["first"].to_json()["templateScope"] == "namespaced/outer-lib"
    assert nodes["first"].to_json()["templateName"] == "inner"
    assert outputs(nodes["second"]) == {"loud": "X"}
    assert nodes["second"].to_json()["templateRef"] == {
        "name": "shared",
        "template": "shout",
        "clusterScope": True,
    }
    assert nodes["call"].type == "DAG" and nodes["call"].template_name == "outer"


def test_workflow_parameters_in_a_referenced_template_are_the_callers(
    store: LocalTemplates,
) -> None:
    """ProcessArgs gets the calling Workflow's globals; the template's arguments are unused."""
    with HeraWorkflowTemplate(
        name="lib", arguments=[Parameter(name="greeting", value="from-the-template")]
    ) as library:
        say = py("say", "import sys; print(sys.argv[1], sys.argv[2])")
        say.args = ["{{workflow.parameters.greeting}}", "{{workflow.name}}"]
    store.apply(library.to_dict())
    with Workflow(name="caller", entrypoint="main", arguments={"greeting": "from-the-caller"}) as w:
        with Steps(name="main"):
            Step(name="say", template_ref=ref("lib", "say"))
    run = run_in(store, w)
    assert by_name(run)["say"].outputs["result"] == "from-the-caller caller"


def steps_calling(name: str, template_ref: TemplateRef, **arguments: str) -> Workflow:
    with Workflow(name=name, entrypoint="main") as w:
        with Steps(name="main"):
            Step(name="step", template_ref=template_ref, arguments=arguments or None)
    return w


def test_a_missing_workflow_template_is_refused_before_anything_runs(
    store: LocalTemplates,
) -> None:
    with pytest.raises(RunError) as caught:
        Run(steps_calling("m", ref("next-template", "next")).to_dict(), RunOptions(root=store.root))
    assert str(caught.value) == (
        "step 'step': templateRef next-template/next: no WorkflowTemplate 'next-template' in "
        "namespace 'default'; apply it with `llmflow templates apply --local` (or kubectl apply -f)"
    )
    assert not (store.root / "runs").exists()


def test_a_missing_template_is_refused_before_anything_runs(store: LocalTemplates) -> None:
    with HeraWorkflowTemplate(name="lib") as library:
        with Steps(name="outer"):
            Step(name="deeper", template="absent")
        py("echo", "print(1)")
    store.apply(library.to_dict())
    with pytest.raises(RunError) as caught:
        Run(steps_calling("m", ref("lib", "nope")).to_dict(), RunOptions(root=store.root))
    assert str(caught.value) == (
        "step 'step': templateRef lib/nope: WorkflowTemplate 'lib' has no template 'nope'; "
        "its templates: outer, echo"
    )
    with pytest.raises(RunError) as caught:
        Run(steps_calling("m", ref("lib", "outer")).to_dict(), RunOptions(root=store.root))
    assert str(caught.value) == (
        "step 'deeper' (in WorkflowTemplate 'lib'): no template 'absent' in WorkflowTemplate "
        "'lib'; its templates: outer, echo"
    )


def test_a_referenced_template_meets_the_lint_and_support_checks(store: LocalTemplates) -> None:
    store.apply(shouting_library().to_dict())
    with pytest.raises(InvalidWorkflow) as caught:
        Run(steps_calling("m", ref("lib", "shout")).to_dict(), RunOptions(root=store.root))
    assert caught.value.problems == [
        "templates.main.steps[0].step templates.shout inputs.parameters.text was not supplied"
    ]
    library = shouting_library().to_dict()
    library["spec"]["templates"][0]["sidecars"] = [{"name": "db", "image": "postgres"}]
    store.apply(library)
    with pytest.raises(UnsupportedFeature) as refused:
        Run(
            steps_calling("m", ref("lib", "shout"), text="x").to_dict(), RunOptions(root=store.root)
        )
    assert (
        "WorkflowTemplate 'lib' spec.templates[0].sidecars: sidecars are not supported locally"
        in str(refused.value)
    )


def test_references_that_form_a_cycle_load_and_recurse_until_when_stops_them(
    store: LocalTemplates,
) -> None:
    """ping calls pong calls ping: legal in Argo as long as a `when` ends it."""
    for me, other in (("ping", "pong"), ("pong", "ping")):
        with HeraWorkflowTemplate(name=me) as template:
            with Steps(name=me, inputs=[Parameter(name="n")]):
                Step(
                    name="again",
                    template_ref=ref(other, other),
                    arguments={"n": "{{=asInt(inputs.parameters.n) - 1}}"},
                    when="{{inputs.parameters.n}} > 0",
                )
        store.apply(template.to_dict())
    run = run_in(store, steps_calling("rally", ref("ping", "ping"), n="3"))
    assert run.phase == "Succeeded"
    calls = [n for n in run.nodes.values() if n.display_name == "again"]
    ran = [n for n in calls if n.phase == "Succeeded"]
    assert sorted(n.inputs["parameters"][0]["value"] for n in ran) == ["0", "1", "2"]
    assert [n.phase for n in calls if n not in ran] == ["Skipped"]  # pong(0): when 0 > 0
    assert {n.to_json()["templateScope"] for n in ran} == {"namespaced/ping", "namespaced/pong"}


def test_a_cycle_without_an_end_stops_at_argos_stack_depth(
    store: LocalTemplates, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_STACK_DEPTH == 100  # maxAllowedStackDepth; lowered here to keep the test short
    monkeypatch.setattr("workflows.local.engine.MAX_STACK_DEPTH", 10)
    with HeraWorkflowTemplate(name="loop") as template:
        with Steps(name="forever"):
            Step(name="again", template_ref=ref("loop", "forever"))
    store.apply(template.to_dict())
    run = run_in(store, steps_calling("endless", ref("loop", "forever")))
    assert run.phase == "Failed"
    [deepest] = [n for n in run.nodes.values() if n.phase == "Error"]
    assert deepest.message == MAX_DEPTH_MESSAGE and deepest.type == "Skipped"
    # The entry is call 1, `step` call 2, each `again` one more: the 10th is refused.
    assert deepest.name.count(".again") == 8


# --- Argo's own case --------------------------------------------------------------------------


def test_argos_entrypoint_name_case_runs_with_its_workflow_template(store: LocalTemplates) -> None:
    """TestEntrypointName (test/e2e/functional_test.go): with entrypointName-template.yaml
    applied, node `step` Succeeds and its input is the Workflow's entrypoint, `bar`."""
    case = CASES / "entrypointName-workflow.yaml"
    if not case.is_file():
        pytest.fail(f"conformance corpus missing: {case} (expected ../shared)")
    fixture = FIXTURES / "entrypointName-template.yaml"  # an unchanged copy of Argo's file
    store.apply(yaml.safe_load(fixture.read_text()))
    images = {"argoproj/argosay:v2": [str(FIXTURES / "argosay")]}
    run = run_in(store, yaml.safe_load(case.read_text()), images=images)
    step = by_name(run)["step"]
    assert step.phase == "Succeeded"
    assert step.inputs["parameters"][0]["value"] == "bar"
    status = json.loads((run.store.path / "status.json").read_text())
    assert status["nodes"][step.id]["templateRef"] == {"name": "next-template", "template": "next"}
