"""Template resolution: which template a step or task runs, as Argo's templateresolution finds it.

A port of `workflow/templateresolution/context.go` (argoproj/argo-workflows at v4.1). Every
template lives in a holder: the Workflow (scope `local`), a WorkflowTemplate (`namespaced`)
or a ClusterWorkflowTemplate (`cluster`). A call with `template: x` finds `x` in the holder
of the template that makes the call; a call with `templateRef: {name, template}` finds it in
the WorkflowTemplate `name` (`clusterScope: true`: the ClusterWorkflowTemplate), and from then
on that WorkflowTemplate is the holder its own `template:` calls resolve in, while its own
`templateRef`s go to the store again (`WithTemplateHolder`). A node records the scope the
resolution started from (`templateScope`: `local/<workflow>`, `namespaced/<name>`,
`cluster/<name>`) and the `templateRef` it was called with.

The controller fetches a WorkflowTemplate the first time a node needs it. Here every
`templateRef` reachable from the Workflow is resolved when the run loads, so a missing
WorkflowTemplate, or a template missing in one, is an error before any step runs; the run
then works from that snapshot. The walk visits each (holder, template) once, so references
that form a cycle end it. A cycle is legal in Argo (recursion ended by a `when`); one that
never ends stops at Argo's stack depth (`MAX_STACK_DEPTH`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.exceptions import RunError
from workflows.local.merge import join_workflow_spec, template_label
from workflows.local.templates import LocalTemplates

Template = dict[str, Any]

#: Nested template calls a run may make (the controller's `maxAllowedStackDepth`).
MAX_STACK_DEPTH = 100
#: The controller's message when a call goes deeper (`ErrMaxDepthExceeded`).
MAX_DEPTH_MESSAGE = (
    "Maximum recursion depth exceeded. See "
    "https://argo-workflows.readthedocs.io/en/latest/scaling/#maximum-recursion-depth"
)

LOCAL, NAMESPACED, CLUSTER = "local", "namespaced", "cluster"
_KINDS = {NAMESPACED: "WorkflowTemplate", CLUSTER: "ClusterWorkflowTemplate"}
_APPLY = "apply it with `llmflow templates apply --local` (or kubectl apply -f)"


@dataclass(frozen=True)
class Holder:
    """Argo's TemplateHolder: the Workflow or WorkflowTemplate whose templates `template:` names.

    Attributes:
        kind: The resource scope: `local`, `namespaced` or `cluster`.
        name: The holder's name (the Workflow's, or the WorkflowTemplate's).
        templates: Its templates by name.
    """

    kind: str
    name: str
    templates: Mapping[str, Template] = field(default_factory=dict, compare=False)

    @property
    def scope(self) -> str:
        """The `templateScope` of nodes whose resolution starts here (`GetTemplateScope`)."""
        return f"{self.kind}/{self.name}"

    def describe(self) -> str:
        """The holder in words, for messages."""
        return f"{_KINDS[self.kind]} {self.name!r}" if self.kind in _KINDS else "the Workflow"


@dataclass(frozen=True)
class Callee:
    """A resolved call: the template to run and where its own calls resolve.

    Attributes:
        template: The template.
        holder: The holder it was found in (its `template:` calls resolve there).
        ref: The `templateRef` of the call, or None for a `template:` call.
    """

    template: Template
    holder: Holder
    ref: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The template's name (a node's `template_name`)."""
        return str(self.template.get("name", ""))


@dataclass(frozen=True)
class Frame:
    """Where a template runs: the holder of its calls, and how deeply calls are nested."""

    holder: Holder
    depth: int = 0

    def enter(self, callee: Callee) -> Frame:
        """The frame a called template runs in."""
        return Frame(callee.holder, self.depth + 1)


def target(call: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The template name and `templateRef` a call names, without resolving them."""
    ref = call.get("templateRef")
    if isinstance(ref, dict):
        return str(ref.get("template", "")), dict(ref)
    return str(call.get("template", "")), None


def calls(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step and task of a steps or DAG template, with what to call it in messages."""
    for group in template.get("steps") or []:
        for step in group if isinstance(group, list) else []:
            if isinstance(step, dict):
                yield f"step {step.get('name')!r}", step
    for task in (template.get("dag") or {}).get("tasks") or []:
        if isinstance(task, dict):
            yield f"task {task.get('name')!r}", task


def holder_of(manifest: dict[str, Any], kind: str) -> Holder:
    """The holder a stored WorkflowTemplate (or ClusterWorkflowTemplate) makes."""
    spec = manifest.get("spec") or {}
    templates = [t for t in spec.get("templates") or [] if isinstance(t, dict)]
    name = str((manifest.get("metadata") or {}).get("name", ""))
    return Holder(kind, name, {str(t.get("name")): t for t in templates})


class Resolver:
    """Argo's TemplateContext over a snapshot of the WorkflowTemplates a run reaches.

    Args:
        local: The Workflow's own templates (the holder of its entrypoint).
        store: Where WorkflowTemplates are found.
        namespace: The Workflow's namespace: its `templateRef`s name templates there.
    """

    def __init__(self, local: Holder, store: LocalTemplates, namespace: str) -> None:
        self.local = local
        self.store = store
        self.namespace = namespace
        self.holders: dict[str, Holder] = {local.scope: local}
        self._missing: set[tuple[str, str]] = set()
        #: Every template reached through a templateRef, with where it lives, in walk order.
        self.referenced: list[tuple[str, Template]] = []

    # --- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Resolve every call reachable from the Workflow's templates, once each.

        Raises:
            RunError: naming each call whose WorkflowTemplate or template is missing.
        """
        problems: list[str] = []
        seen: set[tuple[str, str]] = set()
        stack = [(self.local, t) for t in reversed(list(self.local.templates.values()))]
        while stack:
            holder, template = stack.pop()
            key = (holder.scope, str(template.get("name")))
            if key in seen:
                continue
            seen.add(key)
            if holder is not self.local:
                index = list(holder.templates).index(key[1])
                self.referenced.append((f"{holder.describe()} spec.templates[{index}]", template))
            for what, call in calls(template):
                where = what if holder is self.local else f"{what} (in {holder.describe()})"
                callee = self._find(holder, call, where, problems)
                if callee is not None and callee.holder is not self.local:
                    stack.append((callee.holder, callee.template))
        if problems:
            raise RunError("\n".join(problems))

    def _find(
        self, holder: Holder, call: Mapping[str, Any], where: str, problems: list[str]
    ) -> Callee | None:
        ref = call.get("templateRef")
        if ref is None:
            name = call.get("template")
            template = holder.templates.get(str(name))
            if template is None:
                if holder is not self.local and name is not None:  # the Workflow's: argo lint's
                    problems.append(
                        f"{where}: no template {name!r} in {holder.describe()}; its templates: "
                        f"{', '.join(holder.templates) or 'none'}"
                    )
                return None
            return Callee(template, holder)
        if not isinstance(ref, dict):
            return None  # not a templateRef at all: the schema and support checks say so
        name, wanted = str(ref.get("name", "")), str(ref.get("template", ""))
        what = f"{where}: templateRef {name}/{wanted}"
        if "{{" in name or "{{" in wanted:
            problems.append(
                f"{what}: a templateRef that names a parameter is resolved only as the step runs, "
                "and the local engine resolves templateRefs when the run loads; name the "
                "WorkflowTemplate and the template literally"
            )
            return None
        found = self._holder(ref)
        if found is None:
            kind = CLUSTER if ref.get("clusterScope") else NAMESPACED
            where_kind = "" if kind == CLUSTER else f" in namespace {self.namespace!r}"
            problems.append(f"{what}: no {_KINDS[kind]} {name!r}{where_kind}; {_APPLY}")
            return None
        template = found.templates.get(wanted)
        if template is None:
            problems.append(
                f"{what}: {found.describe()} has no template {wanted!r}; its templates: "
                f"{', '.join(found.templates) or 'none'}"
            )
            return None
        return Callee(template, found, dict(ref))

    def _holder(self, ref: Mapping[str, Any]) -> Holder | None:
        """The holder a templateRef names, read from the store the first time."""
        kind = CLUSTER if ref.get("clusterScope") else NAMESPACED
        name = str(ref.get("name", ""))
        scope = f"{kind}/{name}"
        if scope in self.holders:
            return self.holders[scope]
        if (kind, name) in self._missing:
            return None
        manifest = self.store.get(self.namespace, name, cluster=kind == CLUSTER)
        if manifest is None:
            self._missing.add((kind, name))
            return None
        self.holders[scope] = holder_of(manifest, kind)
        return self.holders[scope]

    def lookup(self, name: str, cluster: bool) -> dict[str, Any] | None:
        """A loaded WorkflowTemplate as a manifest, for the lint rules (`workflow_problems`)."""
        holder = self.holders.get(f"{CLUSTER if cluster else NAMESPACED}/{name}")
        if holder is None:
            return None
        return {"metadata": {"name": name}, "spec": {"templates": list(holder.templates.values())}}

    # --- running ---------------------------------------------------------------------------

    def resolve(self, holder: Holder, call: Mapping[str, Any]) -> Callee:
        """The template a step, task, entrypoint or exit handler calls from `holder`.

        Raises:
            RunError: it names nothing (only a call the load could not see gets here).
        """
        problems: list[str] = []
        callee = self._find(holder, call, f"call of {target(call)[0]!r}", problems)
        if callee is None:
            name = target(call)[0]
            raise RunError(
                problems[0] if problems else f"no template named {name!r} in {holder.describe()}"
            )
        return callee

    def template_of(self, scope: str, name: str, ref: Mapping[str, Any] | None) -> Template | None:
        """The template a node ran, from its `templateScope`, `templateName` and `templateRef`."""
        if ref is not None:
            kind = CLUSTER if ref.get("clusterScope") else NAMESPACED
            holder = self.holders.get(f"{kind}/{ref.get('name')}")
            return None if holder is None else holder.templates.get(str(ref.get("template")))
        holder = self.holders.get(scope)
        return None if holder is None else holder.templates.get(name)


def expand(workflow: dict[str, Any], store: LocalTemplates, namespace: str) -> dict[str, Any]:
    """The Workflow as the controller runs it: a `workflowTemplateRef` joined in (merge.py).

    A Workflow without one is returned as it is.

    Raises:
        RunError: the referenced WorkflowTemplate is not in the store.
    """
    spec = workflow.get("spec") or {}
    ref = spec.get("workflowTemplateRef")
    if not isinstance(ref, dict):
        return workflow
    name, cluster = str(ref.get("name") or ""), bool(ref.get("clusterScope"))
    if not name:
        raise RunError("spec.workflowTemplateRef.name is required: the WorkflowTemplate to run")
    manifest = store.get(namespace, name, cluster=cluster)
    if manifest is None:
        kind = _KINDS[CLUSTER if cluster else NAMESPACED]
        where_kind = "" if cluster else f" in namespace {namespace!r}"
        raise RunError(f"spec.workflowTemplateRef: no {kind} {name!r}{where_kind}; {_APPLY}")
    expanded = dict(workflow)
    expanded["spec"] = join_workflow_spec(spec, manifest.get("spec") or {})
    meta = dict(workflow.get("metadata") or {})
    key, value = template_label(ref)
    meta["labels"] = {**(meta.get("labels") or {}), key: value}
    expanded["metadata"] = meta
    return expanded
