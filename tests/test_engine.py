"""Conformance of the local engine: one small Hera workflow per Argo feature.

Each workflow is written in Hera, rendered to YAML, and executed from that YAML; the tests
assert node phases, messages and outputs as Argo would produce them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from hera.workflows import DAG, Parameter, Resource, RetryStrategy, Steps, Suspend, Task, Workflow
from hera.workflows.models import Backoff, IntOrString, Mutex, Synchronization

from tests.engine_helpers import by_name, execute, outputs, py
from workflows.exceptions import InvalidWorkflow, RunError, UnsupportedFeature
from workflows.local.engine import Run, RunOptions

WRITE = "import pathlib, sys; p = pathlib.Path('/tmp/out'); p.mkdir(parents=True, exist_ok=True); "


def test_parameters_flow_between_dag_tasks(tmp_path: Path) -> None:
    with Workflow(name="params", entrypoint="main", arguments={"greeting": "hello"}) as w:
        make = py(
            "make",
            WRITE + "(p / 'msg').write_text(sys.argv[1] + ' world')",
            inputs=["g"],
            outputs=["msg"],
        )
        make.args = ["{{inputs.parameters.g}}"]
        shout = py(
            "shout",
            WRITE + "(p / 'loud').write_text(sys.argv[1].upper())",
            inputs=["text"],
            outputs=["loud"],
        )
        shout.args = ["{{inputs.parameters.text}}"]
        shout.outputs[0].global_name = "final"
        with DAG(name="main"):
            a = make(name="a", arguments={"g": "{{workflow.parameters.greeting}}"})
            b = shout(name="b", arguments={"text": a.get_parameter("msg")})
            a >> b
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded"
    assert outputs(nodes["a"]) == {"msg": "hello world"}
    assert outputs(nodes["b"]) == {"loud": "HELLO WORLD"}
    assert run.status()["outputs"]["parameters"] == [{"name": "final", "value": "HELLO WORLD"}]
    assert nodes["b"].inputs == {"parameters": [{"name": "text", "value": "hello world"}]}


def test_depends_on_failed_and_succeeded(tmp_path: Path) -> None:
    with Workflow(name="depends", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.exit(3)")
        ok = py("ok", "print('ok')")
        with DAG(name="main"):
            a = fail(name="a")
            Task(name="on-failure", template=ok, depends="a.Failed")
            Task(name="on-success", template=ok, depends="a.Succeeded")
            Task(name="either", template=ok, depends="a.Succeeded || a.Failed")
            a  # noqa: B018 - referenced by the depends strings above
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["a"].phase == "Failed" and nodes["a"].message == "main: Error (exit code 3)"
    assert nodes["on-failure"].phase == "Succeeded"
    assert nodes["on-success"].phase == "Omitted"
    assert nodes["either"].phase == "Succeeded"
    # on-success is a leaf, omitted below the failed a: it inherits Failed, as in Argo.
    assert run.phase == "Failed"


def test_an_unhandled_failure_fails_the_dag(tmp_path: Path) -> None:
    with Workflow(name="unhandled", entrypoint="main") as w:
        fail = py("fail", "import sys; sys.exit(1)")
        ok = py("ok", "print('ok')")
        with DAG(name="main"):
            fail(name="a") >> ok(name="b")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert (nodes["a"].phase, nodes["b"].phase, run.phase) == ("Failed", "Omitted", "Failed")


def test_when_true_and_false(tmp_path: Path) -> None:
    with Workflow(name="when", entrypoint="main") as w:
        flip = py("flip", "print('heads')")
        ok = py("ok", "print('ran')")
        with DAG(name="main"):
            coin = flip(name="coin")
            heads = ok(
                name="heads",
                when=f"{coin.result} == heads",
            )
            tails = ok(name="tails", when=f"{coin.result} == tails")
            coin >> [heads, tails]
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["coin"].outputs["result"] == "heads"
    assert nodes["heads"].phase == "Succeeded" and nodes["heads"].outputs["result"] == "ran"
    assert nodes["tails"].phase == "Skipped"
    assert nodes["tails"].message == "when 'heads == tails' evaluated false"
    assert run.phase == "Succeeded"


COUNTER = (
    "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
    "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
    "sys.exit(0 if n >= int(sys.argv[2]) else 1)"
)


@pytest.mark.parametrize(
    ("succeed_on", "limit", "phases", "phase"),
    [
        (3, 4, ["Failed", "Failed", "Succeeded"], "Succeeded"),
        (99, 1, ["Failed", "Failed"], "Failed"),
    ],
)
def test_retries(
    tmp_path: Path, succeed_on: int, limit: int, phases: list[str], phase: str
) -> None:
    counter = tmp_path / "counter"
    with Workflow(name="retry", entrypoint="main") as w:
        flaky = py(
            "flaky",
            COUNTER,
            retry_strategy=RetryStrategy(
                limit=limit, retry_policy="OnFailure", backoff=Backoff(duration="0.1s", factor=2)
            ),
        )
        flaky.args = [str(counter), str(succeed_on)]
        with DAG(name="main"):
            flaky(name="flaky")
    run = execute(w, tmp_path / "root")
    retry = by_name(run)["flaky"]
    assert retry.type == "Retry" and retry.phase == phase
    attempts = [run.nodes[c] for c in retry.children]
    assert [a.phase for a in attempts] == phases
    assert [a.name.rsplit(".", 1)[-1] for a in attempts] == [
        f"flaky({i})" for i in range(len(phases))
    ]
    assert counter.read_text() == str(len(phases))
    if phase == "Failed":
        assert retry.message == "No more retries left" and run.phase == "Failed"


#: Each attempt exits with the next code listed in the file argv[1].
EXIT_CODES = (
    "import pathlib, sys; p = pathlib.Path(sys.argv[1]); codes = p.read_text().split(); "
    "p.write_text(' '.join(codes[1:])); sys.exit(int(codes[0]))"
)


def exit_codes_workflow(codes_file: Path, codes: str, strategy: RetryStrategy) -> Workflow:
    """A workflow whose one task exits with `codes` in turn, retried by `strategy`."""
    codes_file.write_text(codes)
    arguments = {"limit": "3", "backoff": "0.3s", "factor": "2"}
    with Workflow(name="codes", entrypoint="main", arguments=arguments) as w:
        step = py("step", EXIT_CODES, retry_strategy=strategy)
        step.args = [str(codes_file)]
        with DAG(name="main"):
            step(name="step")
    return w


#: Limit and backoff from workflow parameters; everything is retried but exit code 66.
BY_EXIT_CODE = RetryStrategy(
    expression='lastRetry.exitCode not in ["66"]',
    limit="{{workflow.parameters.limit}}",
    backoff=Backoff(
        duration="{{workflow.parameters.backoff}}",
        factor=IntOrString(root="{{workflow.parameters.factor}}"),
        cap="10s",
    ),
)


def test_retry_expression_on_exit_codes_with_parameter_backoff(tmp_path: Path) -> None:
    """With an expression the policy is Always (RetryPolicyActual): the expression decides."""
    run = execute(exit_codes_workflow(tmp_path / "codes", "75 1 0", BY_EXIT_CODE), tmp_path)
    retry = by_name(run)["step"]
    attempts = [run.nodes[c] for c in retry.children]
    assert [(a.phase, a.outputs["exitCode"]) for a in attempts] == [
        ("Failed", "75"),
        ("Failed", "1"),
        ("Succeeded", "0"),
    ]
    assert retry.phase == "Succeeded" and run.phase == "Succeeded"
    # backoff 0.3 s, then 0.3 * 2: the parameters reached the strategy
    assert attempts[1].started - attempts[0].finished >= 0.3
    assert attempts[2].started - attempts[1].finished >= 0.6


def test_retry_expression_refusing_waits_one_backoff_then_fails(tmp_path: Path) -> None:
    """processNodeRetries waits the backoff before it reads the expression (operator.go)."""
    run = execute(exit_codes_workflow(tmp_path / "codes", "66 0", BY_EXIT_CODE), tmp_path)
    retry = by_name(run)["step"]
    [attempt] = [run.nodes[c] for c in retry.children]
    assert attempt.phase == "Failed" and attempt.outputs["exitCode"] == "66"
    assert retry.phase == "Failed" and run.phase == "Failed"
    assert retry.message == "retryStrategy.expression evaluated to false"
    assert retry.finished - attempt.finished >= 0.3
    assert (tmp_path / "codes").read_text() == "0"  # no second attempt ran


def test_retry_without_a_limit_does_not_back_off(tmp_path: Path) -> None:
    """Argo waits only while `limit` is set and not used up (operator.go, processNodeRetries)."""
    strategy = RetryStrategy(retry_policy="OnFailure", backoff=Backoff(duration="30s"))
    run = execute(exit_codes_workflow(tmp_path / "codes", "1 0", strategy), tmp_path)
    attempts = [run.nodes[c] for c in by_name(run)["step"].children]
    assert [a.phase for a in attempts] == ["Failed", "Succeeded"]
    assert attempts[1].started - attempts[0].finished < 10


def test_exit_handler_sees_the_failure(tmp_path: Path) -> None:
    with Workflow(name="exit", entrypoint="main", on_exit="bye") as w:
        fail = py("fail", "import sys; sys.exit(2)")
        bye = py(
            "bye", "import sys; print(sys.argv[1], len(__import__('json').loads(sys.argv[2])))"
        )
        bye.args = ["{{workflow.status}}", "{{workflow.failures}}"]
        with DAG(name="main"):
            fail(name="boom")
    run = execute(w, tmp_path)
    handler = next(n for n in run.nodes.values() if n.name == "exit.onExit")
    # workflow.failures lists every Failed or Errored node: the pod and the DAG above it.
    assert handler.phase == "Succeeded" and handler.outputs["result"] == "Failed 2"
    assert run.phase == "Failed"


def test_loops_over_items_and_over_a_json_parameter(tmp_path: Path) -> None:
    with Workflow(name="loops", entrypoint="main") as w:
        gen = py("gen", "import json; print(json.dumps([{'n': 1}, {'n': 2}, {'n': 3}]))")
        sq = py(
            "square",
            WRITE + "(p / 'sq').write_text(str(int(sys.argv[1]) ** 2))",
            inputs=["n"],
            outputs=["sq"],
        )
        sq.args = ["{{inputs.parameters.n}}"]
        show = py("show", "print(1)", inputs=["squares", "all"])
        with DAG(name="main"):
            g = gen(name="gen")
            items = sq(name="items", arguments={"n": "{{item}}"}, with_items=[4, 5])
            param = sq(
                name="param",
                arguments={"n": "{{item.n}}"},
                with_param="{{tasks.gen.outputs.result}}",
            )
            g >> param
            shown = show(
                name="show",
                arguments={
                    "squares": "{{tasks.items.outputs.parameters.sq}}",
                    "all": "{{tasks.param.outputs.parameters}}",
                },
            )
            [items, param] >> shown
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded"
    assert nodes["items"].type == "TaskGroup"
    assert sorted(run.nodes[c].display_name for c in nodes["items"].children) == [
        "items(0:4)",
        "items(1:5)",
    ]
    # A loop's outputs are JSON lists in scope, as Argo aggregates them.
    received = {p["name"]: json.loads(p["value"]) for p in nodes["show"].inputs["parameters"]}
    assert received["squares"] == ["16", "25"]
    assert received["all"] == [{"sq": "1"}, {"sq": "4"}, {"sq": "9"}]
    assert sorted(run.nodes[c].display_name for c in nodes["param"].children) == [
        "param(0:n:1)",
        "param(1:n:2)",
        "param(2:n:3)",
    ]


def test_template_deadline_exceeded(tmp_path: Path) -> None:
    with Workflow(name="deadline", entrypoint="main") as w:
        slow = py("slow", "import time; time.sleep(60)", active_deadline_seconds=1)
        with DAG(name="main"):
            slow(name="slow")
    started = time.monotonic()
    run = execute(w, tmp_path)
    node = by_name(run)["slow"]
    assert node.phase == "Failed"
    assert node.message == "Pod was active on the node longer than the specified deadline"
    assert run.phase == "Failed" and time.monotonic() - started < 30


def test_workflow_deadline_exceeded_still_runs_the_exit_handler(tmp_path: Path) -> None:
    with Workflow(
        name="wf-deadline", entrypoint="main", active_deadline_seconds=1, on_exit="bye"
    ) as w:
        slow = py("slow", "import time; time.sleep(60)")
        bye = py("bye", "import sys; print(sys.argv[1])")
        bye.args = ["{{workflow.status}}"]
        with DAG(name="main"):
            slow(name="slow")
    run = execute(w, tmp_path)
    # Argo ends the running pods with "Step exceeded its deadline" (exec_control.go).
    assert run.phase == "Failed" and run.message == "Step exceeded its deadline"
    assert by_name(run)["slow"].phase == "Failed"
    handler = next(n for n in run.nodes.values() if n.name.endswith(".onExit"))
    assert handler.outputs["result"] == "Failed"


def test_steps_run_groups_in_order_and_steps_of_a_group_together(tmp_path: Path) -> None:
    stamp = (
        "import sys, time; t = time.time(); time.sleep(0.5); "
        "open(sys.argv[1], 'a').write(f'{sys.argv[2]} {t} {time.time()}\\n')"
    )
    log = tmp_path / "log"
    with Workflow(name="steps", entrypoint="main") as w:
        s = py("stamp", stamp, inputs=["who"])
        s.args = [str(log), "{{inputs.parameters.who}}"]
        with Steps(name="main") as steps:
            s(name="first", arguments={"who": "first"})
            with steps.parallel():
                s(name="b", arguments={"who": "b"})
                s(name="c", arguments={"who": "c"})
    run = execute(w, tmp_path / "root")
    assert run.phase == "Succeeded"
    spans = {
        line.split()[0]: tuple(map(float, line.split()[1:]))
        for line in log.read_text().splitlines()
    }
    assert spans["first"][1] <= min(spans["b"][0], spans["c"][0])
    assert spans["b"][0] < spans["c"][1] and spans["c"][0] < spans["b"][1]  # overlapped
    assert [n.display_name for n in run.nodes.values() if n.type == "StepGroup"] == ["[0]", "[1]"]


def test_mutex_serialises_two_runs(tmp_path: Path) -> None:
    stamp = (
        "import sys, time; t = time.time(); time.sleep(1); "
        "open(sys.argv[1], 'a').write(f'{t} {time.time()}\\n')"
    )
    log = tmp_path / "log"

    def build(name: str) -> Workflow:
        with Workflow(
            name=name,
            entrypoint="main",
            synchronization=Synchronization(mutexes=[Mutex(name="gpu-node")]),
        ) as w:
            s = py("stamp", stamp)
            s.args = [str(log)]
            with DAG(name="main"):
                s(name="work")
        return w

    runs = [
        Run(build(f"mutex-{i}").to_dict(), RunOptions(root=tmp_path / "root")) for i in range(2)
    ]
    threads = [threading.Thread(target=r.execute) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.phase for r in runs] == ["Succeeded", "Succeeded"]
    (a0, a1), (b0, b1) = sorted(
        tuple(map(float, line.split())) for line in log.read_text().splitlines()
    )
    assert a1 <= b0, "the second run started while the first held the mutex"


def test_suspend_until_resumed(tmp_path: Path) -> None:
    with Workflow(name="suspend", entrypoint="main") as w:
        wait_ = Suspend(name="approve")
        ok = py("ok", "print('after')")
        with Steps(name="main"):
            wait_(name="approve")
            ok(name="after")
    run = Run(w.to_dict(), RunOptions(root=tmp_path))
    thread = threading.Thread(target=run.execute)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(n.type == "Suspend" and n.phase == "Running" for n in run.nodes.values()):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    assert run.phase == "Running" and "after" not in by_name(run)
    from click.testing import CliRunner

    from workflows.cli import main

    result = CliRunner().invoke(main, ["runs", "--root", str(tmp_path), "resume", "suspend"])
    assert result.exit_code == 0, result.output
    thread.join(30)
    assert run.phase == "Succeeded" and by_name(run)["after"].outputs["result"] == "after"


def test_resource_templates_and_secret_references(tmp_path: Path) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {TOKEN: s3cr3t}\n"
    with Workflow(name="resources", entrypoint="main", namespace="team") as w:
        make = Resource(
            name="make",
            action="create",
            manifest=secret,
            outputs=[Parameter(name="name", value_from={"jsonPath": "{.metadata.name}"})],
        )
        use = py(
            "use",
            "import os; print(len(os.environ['TOKEN']))",
            env=[
                __import__("hera.workflows", fromlist=["SecretEnv"]).SecretEnv(
                    name="TOKEN", secret_name="creds", secret_key="TOKEN"
                )
            ],
        )
        with DAG(name="main"):
            make(name="make") >> use(name="use")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded", run.message
    assert outputs(nodes["make"]) == {"name": "creds"}
    assert nodes["use"].outputs["result"] == "6"
    assert "s3cr3t" not in (tmp_path / "runs" / "resources" / "status.json").read_text()
    again = execute(w, tmp_path / "other")  # a fresh platform: create succeeds again
    assert again.phase == "Succeeded"


def test_resource_conditions_and_unsupported_kinds(tmp_path: Path) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {ready: 'yes'}\n"
    job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {}\n"
    with Workflow(name="conditions", entrypoint="main") as w:
        ready = Resource(
            name="ready", action="apply", manifest=config, success_condition="data.ready == yes"
        )
        never = Resource(
            name="never", action="apply", manifest=config, failure_condition="data.ready == yes"
        )
        unknown = Resource(name="unknown", action="create", manifest=job)
        with DAG(name="main"):
            ready(name="ready")
            never(name="never")
            unknown(name="unknown")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["ready"].phase == "Succeeded"
    assert nodes["never"].phase == "Failed"
    assert nodes["never"].message == "failure condition 'data.ready == yes' matched"
    assert nodes["unknown"].phase == "Failed"
    assert "kind 'Job' is not supported locally" in nodes["unknown"].message


def test_stop_ends_processes_and_runs_the_exit_handler(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with Workflow(name="stop", entrypoint="main", on_exit="bye") as w:
        slow = py(
            "slow",
            "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)",
        )
        slow.args = [str(pid_file)]
        bye = py("bye", "import sys; print(sys.argv[1])")
        bye.args = ["{{workflow.status}}"]
        with DAG(name="main"):
            slow(name="slow")
    run = Run(w.to_dict(), RunOptions(root=tmp_path / "root"))
    threading.Timer(1.5, run.stop, args=("Stopped by user (Ctrl-C)",)).start()
    started = time.monotonic()
    assert run.execute() == "Failed"
    assert time.monotonic() - started < 20
    assert run.message == "Stopped by user (Ctrl-C)"
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    handler = next(n for n in run.nodes.values() if n.name.endswith(".onExit"))
    assert handler.outputs["result"] == "Failed"


def test_unsupported_fields_fail_at_load_time(tmp_path: Path) -> None:
    with Workflow(name="unsupported", entrypoint="main") as w:
        ok = py("ok", "print(1)")
        with DAG(name="main"):
            ok(name="a")
    manifest = w.to_dict()
    templates = manifest["spec"]["templates"]
    container = next(i for i, t in enumerate(templates) if "container" in t)
    dag = next(i for i, t in enumerate(templates) if "dag" in t)
    templates[container]["container"]["lifecycle"] = {"preStop": {}}
    templates[dag]["dag"]["tasks"][0]["hooks"] = {"exit": {"template": "ok"}}
    with pytest.raises(UnsupportedFeature) as info:
        Run(manifest, RunOptions(root=tmp_path))
    message = str(info.value)
    assert f"spec.templates[{container}].container.lifecycle: not supported" in message
    assert f"spec.templates[{dag}].dag.tasks[0].hooks: lifecycle hooks are not" in message
    assert not (tmp_path / "runs").exists()


def test_expressions_run_and_a_broken_one_names_itself(tmp_path: Path) -> None:
    with Workflow(name="expr", entrypoint="main", arguments={"n": "2"}) as w:
        echo = py("echo", "import sys; print(sys.argv[1])", inputs=["x"])
        echo.args = ["{{inputs.parameters.x}}"]
        with DAG(name="main"):
            echo(
                name="a",
                when="{{=1 == 1}}",
                arguments={"x": "{{=asInt(workflow.parameters.n) + 1}}"},
            )
            echo(name="b", arguments={"x": "{{=jsonpath(workflow.parameters.n, '$.id')}}"})
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert nodes["a"].phase == "Succeeded" and nodes["a"].outputs["result"] == "3"
    assert nodes["b"].phase == "Error" and "jsonpath" in nodes["b"].message
    assert run.phase == "Error"


def test_unresolved_references_are_refused_at_load(tmp_path: Path) -> None:
    with Workflow(name="unresolved", entrypoint="main") as w:
        echo = py("echo", "print(1)", inputs=["x"])
        with DAG(name="main"):
            echo(name="a", arguments={"x": "{{tasks.nope.outputs.result}}"})
    with pytest.raises(InvalidWorkflow, match=r"failed to resolve \{\{tasks.nope.outputs.result"):
        Run(w.to_dict(), RunOptions(root=tmp_path))
    assert not (tmp_path / "runs").exists()


def test_parameters_can_be_overridden_and_are_checked(tmp_path: Path) -> None:
    with Workflow(
        name="override",
        entrypoint="main",
        arguments=[Parameter(name="mode", value="a", enum=["a", "b"])],
    ) as w:
        echo = py("echo", "import sys; print(sys.argv[1])")
        echo.args = ["{{workflow.parameters.mode}}"]
        with DAG(name="main"):
            echo(name="echo")
    run = execute(w, tmp_path, parameters={"mode": "b"})
    assert by_name(run)["echo"].outputs["result"] == "b"
    with pytest.raises(RunError, match="is not one of"):
        Run(w.to_dict(), RunOptions(root=tmp_path, parameters={"mode": "c"}))
    with pytest.raises(RunError, match="no such workflow parameter"):
        Run(w.to_dict(), RunOptions(root=tmp_path, parameters={"mood": "a"}))


def test_artifacts_defaults_and_template_outputs(tmp_path: Path) -> None:
    from hera.workflows import Artifact, Container
    from hera.workflows.models import ValueFrom

    with Workflow(name="artifacts", entrypoint="main") as w:
        produce = Container(
            name="produce",
            image="python",
            command=[
                "python",
                "-c",
                "import os; os.makedirs('/tmp/art', exist_ok=True); "
                "open('/tmp/art/data.txt', 'w').write('payload')",
            ],
            outputs=[
                Artifact(name="data", path="/tmp/art/data.txt"),
                Parameter(name="absent", value_from=ValueFrom(path="/tmp/none", default="dflt")),
            ],
        )
        consume = Container(
            name="consume",
            image="python",
            command=["python", "-c", "print(open('/tmp/in/data.txt').read().upper())"],
            inputs=[Artifact(name="data", path="/tmp/in/data.txt")],
        )
        inner = DAG(
            name="inner",
            outputs=[
                Parameter(
                    name="shouted",
                    value_from=ValueFrom(parameter="{{tasks.consume.outputs.result}}"),
                )
            ],
        )
        with inner:
            p = produce(name="produce")
            c = consume(name="consume", arguments={"data": p.get_artifact("data")})
            p >> c
        with DAG(name="main"):
            inner(name="inner")
    run = execute(w, tmp_path)
    nodes = by_name(run)
    assert run.phase == "Succeeded", run.message
    assert nodes["consume"].outputs["result"] == "PAYLOAD"
    assert outputs(nodes["produce"]) == {"absent": "dflt"}
    [saved] = nodes["produce"].outputs["artifacts"]
    assert Path(saved["path"]).read_text() == "payload"
    assert Path(saved["path"]).is_relative_to(tmp_path / "runs" / "artifacts")
    assert outputs(nodes["inner"]) == {"shouted": "PAYLOAD"}


def test_template_mutex_serialises_parallel_tasks(tmp_path: Path) -> None:
    stamp = (
        "import sys, time; t = time.time(); time.sleep(0.5); "
        "open(sys.argv[1], 'a').write(f'{t} {time.time()}\\n')"
    )
    log = tmp_path / "log"
    with Workflow(name="template-mutex", entrypoint="main") as w:
        s = py("stamp", stamp, synchronization=Synchronization(mutexes=[Mutex(name="one-gpu")]))
        s.args = [str(log)]
        with DAG(name="main"):
            s(name="a")
            s(name="b")
    run = execute(w, tmp_path / "root")
    assert run.phase == "Succeeded"
    (a0, a1), (b0, b1) = sorted(tuple(map(float, x.split())) for x in log.read_text().splitlines())
    assert a1 <= b0, "two tasks held the same template mutex at once"
