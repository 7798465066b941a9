"""Argo's templateValidationCtx: the walk from the entrypoint through every template it calls."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from workflows.validation.argo_rules._checks import check_arguments, check_hooks, check_resource
from workflows.validation.argo_rules._dag import check_dag
from workflows.validation.argo_rules._invalid import Invalid, within
from workflows.validation.argo_rules._names import names_problem
from workflows.validation.argo_rules._steps import check_steps
from workflows.validation.argo_rules._substitution import (
    CHECKED_ROOTS,
    PLACEHOLDER,
    RUNTIME_ROOTS,
    is_parameter,
    substitute,
    tags,
)
from workflows.validation.argo_rules._template_types import (
    LEAF_TYPES,
    POD_TYPES,
    RESULT_FIELDS,
    TYPE_CHOICES,
    TYPES,
    artifact_paths,
    output_paths,
    template_type,
)
from workflows.validation.argo_rules._yaml import (
    as_dict,
    as_dicts,
    as_list,
    as_str,
    set_or_pop,
    to_json,
)

_RETRY_POLICIES = {"Always", "OnError", "OnFailure", "OnTransientError", ""}
_RETRY_KEYS = (
    "retries lastRetry.exitCode lastRetry.status lastRetry.duration lastRetry.message".split()
)
#: An input artifact with one of these has a location of its own (approximates HasLocationOrKey).
_ARTIFACT_LOCATIONS = "s3 git http artifactory hdfs raw oss gcs azure plugin".split()

#: The arguments of a call; None stands for Argo's FakeArguments (every input supplied).
Args = dict[str, Any] | None

#: Finds a WorkflowTemplate by name (True: a ClusterWorkflowTemplate): its manifest, or None.
TemplateLookup = Callable[[str, bool], "dict[str, Any] | None"]


class Validator:
    """Argo's templateValidationCtx: one pass over one workflow spec."""

    def __init__(
        self,
        meta: dict[str, Any],
        spec: dict[str, Any],
        *,
        lint: bool = True,
        template: bool = False,
        optional_entrypoint: bool = False,
        lookup: TemplateLookup | None = None,
    ) -> None:
        self.meta, self.spec = meta, spec
        self.allow_empty_arguments = lint or template
        self.template_validation = template
        self.optional_entrypoint = optional_entrypoint
        self.lookup = lookup
        #: The templates `template:` names resolve in, and their holder's templateScope.
        self.templates = as_dicts(spec.get("templates"))
        self.base = "local/"
        self.globals: dict[str, str] = {}
        self.validated: set[str] = set()
        self.reported: set[str] = set()
        self.context: list[str] = []
        self.problems: list[str] = []
        self.placeholders = 0

    def run(self) -> list[str]:
        """Every problem, in the order Argo's Workflow() meets them."""
        if self.spec.get("workflowTemplateRef") is not None:
            if self.templates:  # WorkflowTemplateRefFields
                self._record(
                    Invalid(
                        "Templates is invalid field in spec if workflow referred "
                        "WorkflowTemplate reference"
                    )
                )
            return self.problems  # the rest is checked on the spec joined with the template
        problem = names_problem(self.templates, params=False)
        if problem:
            self._record(Invalid(f"spec.templates{problem}"))
        args = as_dict(self.spec.get("arguments"))
        self.attempt(None, check_arguments, "spec.arguments.", args, self.allow_empty_arguments)
        self._set_globals(args)
        entrypoint = as_str(self.spec.get("entrypoint"))
        if not entrypoint and not self.optional_entrypoint:
            self._record(Invalid("spec.entrypoint is required"))
        elif entrypoint:
            entry_args = None if self.template_validation else args
            self.attempt(None, self._holder, {"template": entrypoint}, entry_args)
        on_exit = as_str(self.spec.get("onExit"))
        if on_exit:
            self.globals["workflow.failures"] = self._placeholder()
            outputs = [as_dict(t.get("outputs")) for t in self.templates]
            artifacts = [a for o in outputs for a in as_dicts(o.get("artifacts"))]
            if any(is_parameter(as_str(a.get("globalName"))) for a in artifacts):
                self.globals["workflow.outputs.artifacts.*"] = "true"
            self.attempt(None, self._holder, {"template": on_exit}, args)
        self.attempt(None, check_hooks, self.spec.get("hooks"), "hooks")
        for name in [as_str(t.get("name")) for t in self.templates]:
            self.attempt(f"templates.{name}", self._holder, {"template": name}, None)
        return self.problems

    def _record(self, exc: Invalid) -> None:
        if exc.message is not None:
            message = " ".join([*self.context, exc.message])
            if message not in self.problems:
                self.problems.append(message)

    def attempt(self, prefix: str | None, check: Callable[..., object], *args: Any) -> bool:
        """Run a check; record its problem, if any, and say whether it passed."""
        try:
            check(*args)
        except Invalid as exc:
            self._record(exc if prefix is None else within(prefix, exc))
            return False
        return True

    def _placeholder(self) -> str:
        self.placeholders += 1
        return f"{PLACEHOLDER}{self.placeholders}"

    def _once(self, tmpl: dict[str, Any], message: str) -> Invalid:
        """A problem of a template itself, which Argo meets at every call: report it once."""
        name = self.base + as_str(tmpl.get("name"))
        first = name not in self.reported
        self.reported.add(name)
        return Invalid(message if first else None)

    def _set_globals(self, args: dict[str, Any]) -> None:
        g = self.globals
        for key in ("name", "namespace", "mainEntrypoint", "serviceAccountName", "uid"):
            g[f"workflow.{key}"] = self._placeholder()
        params = as_dicts(args.get("parameters"))
        if params:
            g["workflow.parameters"] = g["workflow.parameters.json"] = self._placeholder()
        for param in params:
            if as_str(param.get("name")):
                value = param.get("value")
                text = as_str(value) if value is not None else self._placeholder()
                g[f"workflow.parameters.{as_str(param.get('name'))}"] = text
        created = as_dict(self.spec.get("workflowMetadata"))
        annotations = [*as_dict(self.meta.get("annotations")), *as_dict(created.get("annotations"))]
        labels = [*as_dict(self.meta.get("labels")), *as_dict(created.get("labels"))]
        labels += list(as_dict(created.get("labelsFrom")))
        for root, keys in (("annotations", annotations), ("labels", labels)):
            for key in keys:
                g[f"workflow.{root}.{key}"] = self._placeholder()
            g[f"workflow.{root}"] = g[f"workflow.{root}.json"] = self._placeholder()
        if self.spec.get("priority") is not None:
            g["workflow.priority"] = as_str(self.spec["priority"])
        g["workflow.status"] = self._placeholder()

    # -- templates -------------------------------------------------------------------------

    def _holder(self, holder: dict[str, Any], args: Args) -> dict[str, Any] | None:
        """validateTemplateHolder: find what a step, task or entrypoint calls, and check it."""
        if holder.get("templateRef") is not None:
            return self._referenced(holder, args)
        name = as_str(holder.get("template"))
        found = next((t for t in self.templates if as_str(t.get("name")) == name), None)
        if name and found is None:
            raise Invalid(f"template name '{name}' undefined")
        inline = holder.get("inline")
        tmpl = copy.deepcopy(inline if isinstance(inline, dict) else found)
        if tmpl is None:
            raise Invalid("failed to get a template")
        self._resolved(tmpl, args)
        return tmpl

    def _resolved(self, tmpl: dict[str, Any], args: Args) -> None:
        """The checks of a template once found: its type and retry policy, then the template."""
        if template_type(tmpl) == "Unknown":
            raise self._once(tmpl, f"template '{as_str(tmpl.get('name'))}' type is unknown")
        retry = tmpl.get("retryStrategy")
        policy = as_str(as_dict(retry).get("retryPolicy"))
        if retry is not None and policy not in _RETRY_POLICIES:
            raise self._once(tmpl, f"{policy} is not a valid RetryPolicy")
        self._template(tmpl, args)

    def _referenced(self, holder: dict[str, Any], args: Args) -> dict[str, Any] | None:
        """A `templateRef` call, checked inside the WorkflowTemplate it names.

        There its own `template:` calls name that WorkflowTemplate's templates
        (templateresolution's WithTemplateHolder). Without a lookup, or with a parameter in
        the reference, it is taken on trust, as Argo defers such a reference to run time.
        """
        if self.lookup is None:
            return None
        ref = as_dict(holder.get("templateRef"))
        if as_str(holder.get("template")):
            raise Invalid("template name cannot be specified with templateRef")
        name, wanted = as_str(ref.get("name")), as_str(ref.get("template"))
        if not name:
            raise Invalid("resource name is required")
        if not wanted:
            raise Invalid("template name is required")
        if "{{" in name or "{{" in wanted:
            return None  # VerifyResolvedVariables: resolved when it runs
        cluster = ref.get("clusterScope") is True
        manifest = as_dict(self.lookup(name, cluster))
        templates = as_dicts(as_dict(manifest.get("spec")).get("templates"))
        found = next((t for t in templates if as_str(t.get("name")) == wanted), None)
        if found is None:
            raise Invalid(f"template reference {name}.{wanted} not found")
        tmpl = copy.deepcopy(found)
        outer = self.templates, self.base
        self.templates, self.base = templates, f"{'cluster' if cluster else 'namespaced'}/{name}"
        try:
            self._resolved(tmpl, args)
        finally:
            self.templates, self.base = outer
        return tmpl

    def call(self, prefix: str, holder: dict[str, Any], args: Args) -> Any:
        """A call from a step or task: its problems carry the caller's path before theirs."""
        self.context.append(prefix)
        try:
            return self._holder(holder, args)
        except Invalid as exc:
            raise within(prefix, exc) from None
        finally:
            self.context.pop()

    def _template(self, tmpl: dict[str, Any], args: Args) -> None:
        """validateTemplate: type, inputs and arguments, then (once) its body and outputs."""
        name = as_str(tmpl.get("name"))
        count = sum(tmpl.get(key) is not None for key in TYPES)
        if count != 1:
            which = "multiple template types specified" if count else "template type unspecified"
            raise self._once(tmpl, f"templates.{name} {which}. {TYPE_CHOICES}")
        scope = self._input_scope(tmpl)
        local: dict[str, str] = {}
        if template_type(tmpl) in POD_TYPES:
            local["pod.name"] = scope["pod.name"] = self._placeholder()
        if tmpl.get("retryStrategy") is not None:
            for key in _RETRY_KEYS:
                local[key] = scope[key] = self._placeholder()
        if template_type(tmpl) in LEAF_TYPES:
            scope.update({key: True for key in output_paths(tmpl)})
        try:
            new = self._process_args(tmpl, args, local)
        except Invalid as exc:
            raise within(f"templates.{name}", exc) from None
        if self.base + name in self.validated:  # results[templateScope+tmplID]
            return
        self.validated.add(self.base + name)
        scope.update(self.globals)
        if template_type(new) == "Steps":
            check_steps(self, scope, new)
        elif template_type(new) == "DAG":
            check_dag(self, scope, new)
        else:
            try:
                self.resolve(scope, to_json(new))
            except Invalid as exc:
                raise Invalid(f"templates.{name}: {exc.message}") from None
            check_resource(new)
        outputs = as_dict(new.get("outputs"))
        for kind in ("parameters", "artifacts"):
            problem = names_problem(as_list(outputs.get(kind)), params=True)
            if problem:
                raise Invalid(f"templates.{name}.outputs.{kind} {problem}")
        try:
            self.resolve(scope, to_json(outputs))
        except Invalid as exc:
            raise within(f"templates.{name}.outputs", exc) from None

    def _input_scope(self, tmpl: dict[str, Any]) -> dict[str, Any]:
        """validateInputs: input names, and the references the inputs make valid."""
        name = as_str(tmpl.get("name"))
        inputs = as_dict(tmpl.get("inputs"))
        params, arts = as_dicts(inputs.get("parameters")), as_dicts(inputs.get("artifacts"))
        for kind, items in (("parameters", params), ("artifacts", arts)):
            problem = names_problem(items, params=True)
            if problem:
                raise self._once(tmpl, f"templates.{name}.inputs.{kind}{problem}")
        scope: dict[str, Any] = {f"inputs.parameters.{as_str(p.get('name'))}": True for p in params}
        if params:
            scope["inputs.parameters"] = True
        for art in arts:
            ref = f"inputs.artifacts.{as_str(art.get('name'))}"
            scope[ref] = True
            if template_type(tmpl) in LEAF_TYPES:
                scope[f"{ref}.path"] = True
            elif as_str(art.get("path")):
                where = f"templates.{name}.{ref}.path"
                raise self._once(tmpl, f"{where} only valid in container/script templates")
            if as_str(art.get("from")):
                raise self._once(tmpl, f"templates.{name}.{ref}.from not valid in inputs")
        return scope

    def _process_args(self, tmpl: dict[str, Any], args: Args, local: dict[str, str]) -> Any:
        """common.ProcessArgs: bind the arguments to the inputs, then substitute what is known."""
        new = copy.deepcopy(tmpl)
        inputs = as_dict(new.get("inputs"))
        for param in as_dicts(inputs.get("parameters")):
            if param.get("value") is None and param.get("default") is not None:
                param["value"] = param["default"]
            arg = self._argument(args, "parameters", as_str(param.get("name")))
            if arg is not None:
                set_or_pop(param, "value", arg.get("value"))
                value_from = arg.get("valueFrom") if arg.get("value") is None else None
                set_or_pop(param, "valueFrom", value_from)
            from_config_map = as_dict(param.get("valueFrom")).get("configMapKeyRef") is not None
            if not from_config_map and param.get("value") is None:
                raise Invalid(f"inputs.parameters.{as_str(param.get('name'))} was not supplied")
        artifacts = as_list(inputs.get("artifacts"))
        for i, art in enumerate([as_dict(a) for a in artifacts]):
            arg = self._argument(args, "artifacts", as_str(art.get("name")))
            located = any(art.get(key) is not None for key in _ARTIFACT_LOCATIONS)
            if arg is None and not art.get("optional") and not located:
                raise Invalid(f"inputs.artifacts.{as_str(art.get('name'))} was not supplied")
            if arg is not None:
                artifacts[i] = dict(arg)
                for key in ("path", "mode", "recurseMode"):
                    set_or_pop(artifacts[i], key, art.get(key))
        values = {**self.globals, **local}
        new = json.loads(substitute(to_json(new), values))
        params = as_dicts(as_dict(new.get("inputs")).get("parameters"))
        for param in params:
            if param.get("value") is not None:
                values[f"inputs.parameters.{as_str(param.get('name'))}"] = as_str(param["value"])
        values["inputs.parameters"] = to_json(params)
        values.update(artifact_paths(new, "inputs"))
        values.update(output_paths(new))
        return json.loads(substitute(to_json(new), values))

    def _argument(self, args: Args, kind: str, name: str) -> dict[str, Any] | None:
        if args is None:
            fake = {"name": name, "value": self._placeholder()}
            return fake if kind == "parameters" else {"name": name}
        return next((a for a in as_dicts(args.get(kind)) if as_str(a.get("name")) == name), None)

    # -- scopes ----------------------------------------------------------------------------

    def resolve(self, scope: Mapping[str, Any], text: str) -> None:
        """resolveAllVariables: each checked `{{...}}` must be in scope or global."""
        wildcards = tuple(key[:-1] for key in scope if key.endswith(".*"))
        for tag in tags(text):
            key = tag.strip()
            if tag.startswith("=") or not key.startswith(CHECKED_ROOTS):
                continue
            if key in scope or key in self.globals or key.startswith(RUNTIME_ROOTS):
                continue
            if wildcards and key.startswith(wildcards):
                continue
            if self.template_validation and key.startswith("workflow.parameters"):
                continue
            raise Invalid(f"failed to resolve {{{{{tag}}}}}")

    def add_outputs(
        self,
        scope: dict[str, Any],
        kind: str,
        node: dict[str, Any],
        tmpl: dict[str, Any] | None,
        aggregate: bool,
        ancestor: bool = False,
    ) -> None:
        """addOutputsToScope: what later steps or tasks may reference of this one."""
        base = f"{kind}.{as_str(node.get('name'))}"
        for key in ("id", "startedAt", "finishedAt", "hostNodeName"):
            scope[f"{base}.{key}"] = True
        if node.get("templateRef") is not None and tmpl is None:
            scope[f"{base}.*"] = True  # its template is not known here: accept any reference
        if tmpl is None:
            return
        if tmpl.get("daemon") is True:
            scope[f"{base}.ip"] = True
        containers = as_dicts(as_dict(tmpl.get("containerSet")).get("containers"))
        has_main = any(as_str(c.get("name")) == "main" for c in containers)
        if has_main or any(tmpl.get(key) is not None for key in RESULT_FIELDS):
            scope[f"{base}.outputs.result"] = scope[f"{base}.exitCode"] = True
        outputs = as_dict(tmpl.get("outputs"))
        for field_ in ("parameters", "artifacts"):
            for out in as_dicts(outputs.get(field_)):
                scope[f"{base}.outputs.{field_}.{as_str(out.get('name'))}"] = True
                global_name = as_str(out.get("globalName"))
                if global_name and not is_parameter(global_name):
                    key = f"workflow.outputs.{field_}.{global_name}"
                    scope[key], self.globals[key] = True, self._placeholder()
                elif global_name:
                    scope[f"workflow.outputs.{field_}.*"] = True
        if aggregate:
            if template_type(tmpl) in ("Script", "ContainerSet"):
                scope[f"{base}.outputs.result"] = scope[f"{base}.exitCode"] = True
            scope[f"{base}.outputs.parameters"] = True
        if ancestor:
            scope[f"{base}.status"] = True

    def inline_inputs(self, node: dict[str, Any]) -> dict[str, str]:
        """The input parameters of a node's inline template, each a placeholder."""
        params = as_dicts(as_dict(as_dict(node.get("inline")).get("inputs")).get("parameters"))
        return {f"inputs.parameters.{as_str(p.get('name'))}": self._placeholder() for p in params}
