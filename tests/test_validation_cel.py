"""CRDs' CEL rules (`x-kubernetes-validations`), as the API server runs them."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.validation import SchemaRegistry, validate_documents
from workflows.validation.cel_rules import NOT_EVALUATED, compile_rule, rule_failures, rules_in

MIRROR_BOTH = "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"
NUMERATOR = "numerator must be less than or equal to denominator"
NO_PORT = "Must have port for Service reference"


def route(*filters: dict[str, Any], backend: dict[str, Any] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [backend or {"name": "stable", "port": 8000}]}
    if filters:
        rule["filters"] = list(filters)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "llm", "namespace": "llmflow"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [rule]},
    }


def mirror(**settings: Any) -> dict[str, Any]:
    backend = {"name": "shadow", "port": 8000}
    return {"type": "RequestMirror", "requestMirror": {"backendRef": backend, **settings}}


def problems(registry: SchemaRegistry, *objects: dict[str, Any]) -> list[str]:
    return [
        f"{p.path}: {p.message}"
        for p in validate_documents([("test", obj) for obj in objects], registry)
    ]


# Gateway API: the RequestMirror filter and backend references.


def test_a_mirror_with_percent_and_fraction_is_refused(registry: SchemaRegistry) -> None:
    both = route(mirror(percent=10, fraction={"numerator": 1, "denominator": 10}))
    assert problems(registry, both) == [f"spec.rules[0].filters[0].requestMirror: {MIRROR_BOTH}"]


def test_a_fraction_over_one_is_refused(registry: SchemaRegistry) -> None:
    over = route(mirror(fraction={"numerator": 3, "denominator": 2}))
    assert problems(registry, over) == [
        f"spec.rules[0].filters[0].requestMirror.fraction: {NUMERATOR}"
    ]


def test_the_defaulted_denominator_counts(registry: SchemaRegistry) -> None:
    """`denominator` defaults to 100 before the rule runs, as the API server defaults it."""
    assert problems(registry, route(mirror(fraction={"numerator": 100}))) == []
    assert problems(registry, route(mirror(fraction={"numerator": 101}))) == [
        f"spec.rules[0].filters[0].requestMirror.fraction: {NUMERATOR}"
    ]


@pytest.mark.parametrize(
    "settings",
    [{}, {"percent": 10}, {"fraction": {"numerator": 1, "denominator": 10}}],
    ids=["all", "percent", "fraction"],
)
def test_a_valid_mirror_passes(settings: dict[str, Any], registry: SchemaRegistry) -> None:
    assert problems(registry, route(mirror(**settings))) == []


def test_a_service_reference_needs_a_port(registry: SchemaRegistry) -> None:
    """No `kind` is given: the schema's default (Service) makes the rule apply."""
    assert problems(registry, route(backend={"name": "stable"})) == [
        f"spec.rules[0].backendRefs[0]: {NO_PORT}"
    ]
    no_port_mirror = mirror()
    del no_port_mirror["requestMirror"]["backendRef"]["port"]
    assert problems(registry, route(no_port_mirror)) == [
        f"spec.rules[0].filters[0].requestMirror.backendRef: {NO_PORT}"
    ]


def test_other_backend_kinds_need_no_port(registry: SchemaRegistry) -> None:
    bucket = {"group": "storage.example.com", "kind": "Bucket", "name": "models"}
    assert problems(registry, route(backend=bucket)) == []


def test_escaped_property_names(registry: SchemaRegistry) -> None:
    """Rules read `namespace` as `__namespace__`: two parents in two namespaces are two."""
    obj = route()
    obj["spec"]["parentRefs"] = [
        {"name": "gateway", "namespace": "a"},
        {"name": "gateway", "namespace": "b"},
    ]
    assert problems(registry, obj) == []
    obj["spec"]["parentRefs"][1]["namespace"] = "a"
    assert [p.split(": ", 1)[1] for p in problems(registry, obj)] == [
        "sectionName must be unique when parentRefs includes 2 or more references to the same "
        "parent"
    ]


def test_gateway_listener_names_are_unique(registry: SchemaRegistry) -> None:
    listener = {"name": "http", "port": 80, "protocol": "HTTP"}
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gateway"},
        "spec": {"gatewayClassName": "nginx", "listeners": [listener]},
    }
    assert problems(registry, gateway) == []
    gateway["spec"]["listeners"].append({**listener, "port": 8080})
    assert problems(registry, gateway) == [
        "spec.listeners: Listener name must be unique within the Gateway"
    ]


# Embedded manifests: values Argo fills in at run time.


def embedded(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "shift"},
        "spec": {
            "entrypoint": "apply",
            "templates": [
                {
                    "name": "apply",
                    "inputs": {"parameters": [{"name": "n"}, {"name": "p"}]},
                    "resource": {"action": "apply", "manifest": yaml.safe_dump(manifest)},
                }
            ],
        },
    }


def test_rules_in_embedded_manifests(registry: SchemaRegistry) -> None:
    bad = route(mirror(fraction={"numerator": 3, "denominator": 2}))
    assert problems(registry, embedded(bad)) == [
        f"spec.templates[0].resource.manifest:spec.rules[0].filters[0].requestMirror.fraction: "
        f"{NUMERATOR}"
    ]


def test_rules_that_read_run_time_values_are_not_judged(registry: SchemaRegistry) -> None:
    later = route(mirror(fraction={"numerator": "{{inputs.parameters.n}}", "denominator": 2}))
    assert problems(registry, embedded(later)) == []
    # A rule that reads no run-time value is still judged.
    both = route(mirror(percent="{{inputs.parameters.p}}", fraction={"numerator": 1}))
    assert problems(registry, embedded(both)) == [
        f"spec.templates[0].resource.manifest:spec.rules[0].filters[0].requestMirror: {MIRROR_BOTH}"
    ]


# Other CRDs of the registry: Argo Workflows, Kubeflow Trainer.


def workflow(*tasks: dict[str, Any], **echo: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "cel-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "dag": {"tasks": list(tasks)}},
                {"name": "echo", "container": {"image": "busybox"}, **echo},
            ],
        },
    }


def test_argo_rules(registry: SchemaRegistry) -> None:
    first = {"name": "first", "template": "echo"}
    assert (
        problems(registry, workflow(first, {"name": "b", "template": "echo", "depends": "first"}))
        == []
    )
    both = {"name": "b", "template": "echo", "depends": "first", "dependencies": ["first"]}
    assert "spec.templates[0].dag.tasks[1]: cannot use both 'depends' and 'dependencies'" in (
        problems(registry, workflow(first, both))
    )
    two_kinds = workflow(first, script={"image": "busybox", "source": "true"})
    assert "spec.templates: template must have at most one template type" in problems(
        registry, two_kinds
    )


def trainjob(**metadata: str) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": {"runtimeRef": {"name": "torch-distributed"}},
    }


def test_kubeflow_trainjob_names(registry: SchemaRegistry) -> None:
    assert problems(registry, trainjob(name="finetune")) == []
    # The API server names the object from generateName before it validates it.
    assert problems(registry, trainjob(generateName="finetune-")) == []
    assert problems(registry, trainjob(name="Fine_Tune")) == [
        ": metadata.name must match RFC 1035 DNS label format"
    ]
    # A generated name is cut to fit: generateName's length is no problem.
    assert problems(registry, trainjob(generateName="x" * 70)) == []
    assert problems(registry, trainjob(name="x" * 70)) == [
        ": metadata.name must be no more than 63 characters"
    ]


def test_kubeflow_runtime_has_one_policy(registry: SchemaRegistry) -> None:
    runtime = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": "torch"},
        "spec": {"mlPolicy": {"torch": {}}, "template": {"spec": {"replicatedJobs": []}}},
    }
    assert problems(registry, runtime) == []
    runtime["spec"]["mlPolicy"]["mpi"] = {}
    assert problems(registry, runtime) == [
        "spec.mlPolicy: Only one of the policy can be configured"
    ]


# Rule semantics, on a CRD of our own.

WIDGET = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "min-replicas": {"type": "integer", "default": 1},
                "replicas": {
                    "type": "integer",
                    "x-kubernetes-validations": [
                        {"rule": "self >= 0", "message": "replicas must not be negative"}
                    ],
                },
                "size": {
                    "type": "object",
                    "default": {},
                    "properties": {"limit": {"type": "string", "default": "1Gi"}},
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "self.size() <= 5"}],
                    },
                },
                "timeout": {"type": "string", "format": "duration"},
                "old": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf"}],
                },
            },
            "x-kubernetes-validations": [
                {
                    "rule": "self.replicas >= self.min__dash__replicas",
                    "messageExpression": "'replicas ' + string(self.replicas) + ' is too few'",
                    "fieldPath": ".replicas",
                },
                {"rule": "quantity(self.size.limit).isLessThan(quantity('2Gi'))"},
                {"rule": "!has(self.timeout) || self.timeout <= duration('1h')"},
            ],
        },
    },
}


@pytest.fixture
def widgets(tmp_path: Path) -> SchemaRegistry:
    def crd(schema: dict[str, Any]) -> dict[str, Any]:
        version = {"name": "v1", "served": True, "storage": True}
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced",
                "versions": [{**version, "schema": {"openAPIV3Schema": schema}}],
            },
        }

    path = tmp_path / "widget.yaml"
    path.write_text(yaml.safe_dump(crd(WIDGET)))
    return SchemaRegistry.load(crd_paths=[path])


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_semantics_on_a_widget(widgets: SchemaRegistry) -> None:
    assert problems(widgets, widget(replicas=2, labels={"a": "short"}, old="x")) == []
    # A scalar's rule, a message from messageExpression at fieldPath, a default read.
    assert problems(widgets, widget(replicas=-1)) == [
        "spec.replicas: replicas must not be negative",
        "spec.replicas: replicas -1 is too few",
    ]
    # A map value's rule, with the default message.
    assert problems(widgets, widget(replicas=1, labels={"a": "too long"})) == [
        "spec.labels.a: failed rule: self.size() <= 5"
    ]
    # A nested default (size.limit = 1Gi) read through a defaulted parent; a quantity.
    assert problems(widgets, widget(replicas=1, size={"limit": "3Gi"})) == [
        "spec: failed rule: quantity(self.size.limit).isLessThan(quantity('2Gi'))"
    ]
    # format: duration values are durations.
    assert problems(widgets, widget(replicas=1, timeout="30m")) == []
    assert problems(widgets, widget(replicas=1, timeout="2h")) == [
        "spec: failed rule: !has(self.timeout) || self.timeout <= duration('1h')"
    ]


def test_a_wrong_type_stops_the_rules(widgets: SchemaRegistry) -> None:
    """As on the API server: the type error is reported, the rules do not run."""
    assert problems(widgets, widget(replicas="many")) == [
        "spec.replicas: 'many' is not of type 'integer'"
    ]


def test_a_rule_that_fails_to_evaluate_is_a_problem(widgets: SchemaRegistry) -> None:
    schema = {"x-kubernetes-validations": [{"rule": "self.missing > 1", "message": "m"}]}
    assert [f.message for f in rule_failures({}, schema)] == [
        "no such key: missing evaluating rule: self.missing > 1"
    ]


def test_a_rule_that_cannot_be_compiled_is_a_problem() -> None:
    for rule in ("self.?x.orValue(1) > 0", "self.names.isSortedBy(x, x)"):
        schema = {"x-kubernetes-validations": [{"rule": rule}]}
        [failure] = rule_failures({"names": []}, schema)
        assert failure.message.startswith("rule cannot be evaluated here (")
        assert failure.message.endswith(rule)


def test_rules_compile_once() -> None:
    rule = "self.x == 1"
    assert compile_rule(rule) is compile_rule(rule)


# What the upstream schemas hold.


def every_rule(registry: SchemaRegistry) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for schema in registry.crds.values() for r in rules_in(schema)}


def test_not_evaluated_lists_exactly_the_rules_celpy_cannot_run(registry: SchemaRegistry) -> None:
    rules = every_rule(registry)
    cannot = {
        text
        for text, rule in rules.items()
        if compile_rule(text, bool(rule.get("optionalOldSelf"))).unsupported
    }
    assert cannot == set(NOT_EVALUATED)


def test_only_transition_rules_are_left_to_updates(registry: SchemaRegistry) -> None:
    skipped = {text for text in every_rule(registry) if compile_rule(text).skipped}
    assert skipped == {"self == oldSelf"}


#: Candidate strings for a pattern-checked property: the first one that matches is used.
_STRINGS = ("a", "1s", "/", "a.example.com", "10.0.0.1", "1", "http://a")


def example(schema: Any) -> Any:
    """A value for a schema with every property set, lists of one item."""
    if not isinstance(schema, dict):
        return "a"
    if "enum" in schema:
        return schema["enum"][0]
    if "properties" in schema:
        return {name: example(prop) for name, prop in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        return {"k": example(schema["additionalProperties"])}
    kind = schema.get("type")
    if kind == "array":
        return [example(schema.get("items"))]
    if kind == "integer" or schema.get("x-kubernetes-int-or-string"):
        return schema.get("minimum", 1)
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "object":
        return {}
    return next((s for s in _STRINGS if matches(schema.get("pattern"), s)), "a")


def matches(pattern: str | None, text: str) -> bool:
    try:
        return not pattern or bool(re.search(pattern, text))
    except re.error:  # RE2 syntax Python's re does not take
        return False


def test_every_rule_runs_on_an_example(registry: SchemaRegistry) -> None:
    """No rule meets a missing function or a wrong overload on a value its schema allows."""
    errors = set()
    for (api_version, kind), schema in registry.crds.items():
        obj = {**example(schema), "metadata": {"name": "example"}}
        for failure in rule_failures(copy.deepcopy(obj), schema):
            if "evaluating rule" in failure.message or "cannot be evaluated" in failure.message:
                errors.add(f"{api_version} {kind}: {failure.message}")
    assert sorted(errors) == []


# Kubernetes' CEL libraries, which celpy lacks.


@pytest.mark.parametrize(
    "rule",
    [
        "'a/b/c'.split('/') == ['a', 'b', 'c']",
        "'a/b/c'.split('/', 2) == ['a', 'b/c']",
        "'abc'.split('') == ['a', 'b', 'c']",
        "['a', 'b'].join('-') == 'a-b'",
        "'hello'.charAt(1) == 'e' && 'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3",
        "'Hello'.lowerAscii() == 'hello' && 'Hello'.upperAscii() == 'HELLO'",
        "'  x '.trim() == 'x' && 'hello'.substring(1, 3) == 'el' && 'ab'.reverse() == 'ba'",
        "'aaa'.replace('a', 'b', 2) == 'bba'",
        "[1, 2, 3].isSorted() && [1, 2, 3].sum() == 6 && [1, 3, 2].max() == 3",
        "[1, 2, 3].min() == 1 && [1, 2, 1].lastIndexOf(1) == 2 && [1, 2].indexOf(2) == 1",
        "'abc123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
        "isURL('https://example.com:8443/p?q=1') && !isURL('not a url')",
        "url('https://example.com:8443/p?q=1').getHostname() == 'example.com'",
        "url('https://example.com:8443/p').getPort() == '8443'",
        "url('https://[::1]:80/p').getHost() == '[::1]:80'",
        "url('https://a/p?q=1&q=2').getQuery()['q'] == ['1', '2']",
        "url('https://a/x%20y').getEscapedPath() == '/x%20y'",
        "isIP('10.0.0.1') && !isIP('10.0.0.300') && ip('::1').family() == 6",
        "ip('127.0.0.1').isLoopback() && !ip('8.8.8.8').isLoopback()",
        "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))",
        "cidr('10.0.0.0/8').containsIP('10.9.9.9')",
        "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.1.2.3/8').prefixLength() == 8",
        "cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8')",
        "cidr('10.1.2.3/8').ip() == ip('10.1.2.3') && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
        "isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0')",
        "quantity('1') == quantity('1000m') && quantity('1Ki').asInteger() == 1024",
        "isQuantity('1.5Gi') && !isQuantity('1.5GB') && quantity('1e3').asInteger() == 1000",
        "quantity('500m').isLessThan(quantity('1')) && quantity('2').isGreaterThan(quantity('1'))",
        "quantity('1').add(1) == quantity('2') && quantity('1').sub(quantity('1')).sign() == 0",
        "quantity('1').compareTo(quantity('2')) == -1 && !quantity('1.5').isInteger()",
        "quantity('1.5').asApproximateFloat() == 1.5",
        "dyn(1) == 1",
    ],
)
def test_kubernetes_library_functions(rule: str) -> None:
    assert rule_failures({}, {"x-kubernetes-validations": [{"rule": rule}]}) == []


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("'abc'.substring(2, 9) == ''", "substring: index out of range: [2:9]"),
        ("quantity('1.5').asInteger() == 1", "asInteger: 1.5 is not an int64 integer"),
        ("ip('10.0.0.300').family() == 4", "ip: '10.0.0.300' does not appear to be"),
    ],
)
def test_library_errors_fail_the_rule(rule: str, error: str) -> None:
    [failure] = rule_failures({}, {"x-kubernetes-validations": [{"rule": rule}]})
    assert failure.message.startswith(error)
    assert failure.message.endswith(f"evaluating rule: {rule}")
