"""The Argo Events Sensor that turns a pushed release tag into a run of the `release` template.

The Sensor keeps only creations of release tags (`release/<model>/<semver>`) of the models
released in its namespace, pushed to the release repository, and submits a Workflow from the
`release` WorkflowTemplate with the parameters `tag` (`release/tiny-llama/1.2.0`), `commit` and
`revision` (the commit the tag points to) and `repo` (the clone URL), as a service account that
may do nothing else. It decides what runs, so it is kept apart from the EventSource and its
webhook settings (`workflows.webhooks`, whose public names are re-exported here), and each of
its choices cites the Argo Events v1.9 source it was read from; `render_triggers` puts both
sides together for every namespace that has release specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workflows.exceptions import SpecError, TriggerError
from workflows.rbac import rbac_objects
from workflows.spec import ReleaseSpec
from workflows.tags import REF_PREFIX, ref_regex
from workflows.webhooks import (
    API_VERSION,
    DEFAULT_PORT,
    LABELS,
    NAME,
    GitHubHook,
    GitLabHook,
    Hooks,
    SecretKey,
    endpoint,
    event_source,
    hooks_for_repo,
    repo_location,
)

__all__ = [
    "API_VERSION",
    "COMMIT_REGEX",
    "DEFAULT_PORT",
    "GITHUB_PARAMETERS",
    "GITLAB_PARAMETERS",
    "NAME",
    "RELEASE_TEMPLATE",
    "TAG_TEMPLATE",
    "TRIGGER_ACCOUNT",
    "WORKFLOW_PARAMETERS",
    "ZERO_SHA_REGEX",
    "GitHubHook",
    "GitLabHook",
    "Hooks",
    "SecretKey",
    "endpoint",
    "event_source",
    "release_workflow",
    "render_triggers",
    "repo_location",
    "sensor",
    "trigger_rbac",
]

#: The WorkflowTemplate a release tag submits, and the parameters it takes, in this order.
#: `revision` is what build-images checks out: the tag's commit too.
RELEASE_TEMPLATE = "release"
WORKFLOW_PARAMETERS = ("tag", "commit", "revision", "repo")

#: Suffix of the Sensor's service account: `<spec.service_account>-release-trigger`.
TRIGGER_ACCOUNT = "release-trigger"

#: A commit id: SHA-1, or SHA-256 in repositories that use it.
COMMIT_REGEX = r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$"
ZERO_SHA_REGEX = r"^0+$"

#: The tag from a push's `ref`: what Argo Events' sprig `trimPrefix` leaves of `refs/tags/...`.
#: A `dataTemplate` is a Go template with sprig over `.Input`, the whole event data
#: (`pkg/sensors/triggers/params.go`, `getValueWithTemplate`); values land at `dest` by sjson.
TAG_TEMPLATE = f'{{{{ .Input.body.ref | trimPrefix "{REF_PREFIX}" }}}}'

#: Where each workflow parameter comes from in a GitHub push event. GitHub's `after` is the
#: tag *object* for an annotated tag; `head_commit.id` is the commit for both kinds of tag.
GITHUB_PARAMETERS = {
    "tag": {"dataTemplate": TAG_TEMPLATE},
    "commit": {"dataKey": "body.head_commit.id"},
    "repo": {"dataKey": "body.repository.clone_url"},
}

#: Where each workflow parameter comes from in a GitLab tag push event. `checkout_sha` is the
#: commit (`null` when a tag is deleted).
GITLAB_PARAMETERS = {
    "tag": {"dataTemplate": TAG_TEMPLATE},
    "commit": {"dataKey": "body.checkout_sha"},
    "repo": {"dataKey": "body.project.git_http_url"},
}


def sensor(
    namespace: str,
    models: Sequence[str],
    account: str,
    github_repository: str | None = None,
    gitlab_project: str | None = None,
    event_bus: str = "default",
) -> dict[str, Any]:
    """The Sensor: keeps creations of these models' release tags, submits `release` for each.

    One dependency and one trigger per provider given: a trigger with no `conditions` waits
    for *all* the dependencies (`pkg/sensors/listener.go`, `getDependencyExpression`), so a
    shared trigger would wait for both hosts.

    Args:
        namespace: Where it runs and submits the Workflow.
        models: The `model.name`s released in the namespace; other tags are dropped.
        account: Its service account, which may submit Workflows (`trigger_rbac`).
        github_repository: `owner/name` whose tags count, for a GitHub dependency.
        gitlab_project: `group/name` whose tags count, for a GitLab dependency.
        event_bus: The EventBus the EventSource publishes to.

    Raises:
        TriggerError: neither provider given.
        ReleaseTagError: no models, or a model that is not a Kubernetes name.
    """
    refs = ref_regex(models)
    dependencies, triggers = [], []
    if github_repository is not None:
        dependencies.append(_dependency("github", _github_filters(refs, github_repository)))
        triggers.append(_trigger(namespace, "github", GITHUB_PARAMETERS))
    if gitlab_project is not None:
        dependencies.append(_dependency("gitlab", _gitlab_filters(refs, gitlab_project)))
        triggers.append(_trigger(namespace, "gitlab", GITLAB_PARAMETERS))
    if not dependencies:
        raise TriggerError("a Sensor needs a GitHub repository or a GitLab project to hear")
    return {
        "apiVersion": API_VERSION,
        "kind": "Sensor",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "eventBusName": event_bus,
            "template": {"serviceAccountName": account},
            "dependencies": dependencies,
            "triggers": triggers,
        },
    }


def release_workflow(namespace: str) -> dict[str, Any]:
    """The Workflow the Sensor submits, before the event's values are put in its parameters."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{RELEASE_TEMPLATE}-",
            "namespace": namespace,
            "labels": {**LABELS, "llmflow.io/pipeline": RELEASE_TEMPLATE},
        },
        "spec": {
            "workflowTemplateRef": {"name": RELEASE_TEMPLATE},
            "arguments": {"parameters": [{"name": name} for name in WORKFLOW_PARAMETERS]},
        },
    }


def trigger_rbac(account: str, namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for the Sensor: submit Workflows, nothing more.

    `operation: submit` runs `argo submit` as the Sensor's service account, then lists
    Workflows by the labels it added (`pkg/sensors/triggers/argo-workflow/argo-workflow.go`,
    `Execute`); `argo submit` gets the WorkflowTemplate to validate the Workflow (argo-workflows
    `server/workflow/workflow_server.go`, `CreateWorkflow`). Hence the Role: create and list
    Workflows, get WorkflowTemplates.

    With a Kafka EventBus the Sensor also elects a leader with a Lease (Argo Events
    `pkg/shared/leaderelection`); the NATS and JetStream buses need nothing of the API server.
    """
    rules = [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "list"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]},
    ]
    return rbac_objects(account, namespace, rules)


def render_triggers(
    specs: Sequence[ReleaseSpec],
    repo: str,
    *,
    webhook_url: str,
    github: GitHubHook | None = None,
    gitlab: GitLabHook | None = None,
    port: int = DEFAULT_PORT,
    event_bus: str = "default",
) -> list[dict[str, Any]]:
    """Per namespace of the specs: EventSource, Sensor, and the Sensor's account and Role.

    Args:
        specs: The release specs (`releases/*.yaml`); each namespace's Sensor accepts tags of
            the models released there.
        repo: The git URL of the repository holding `releases/` (https, ssh or scp-like).
            Without `github`/`gitlab`, its host picks the provider: github.com, or gitlab.com
            and hosts named `gitlab.*`.
        webhook_url: The EventSource's URL as the git host reaches it.
        github: GitHub webhook settings (GitHub Enterprise, organization hooks, Secrets).
        gitlab: GitLab webhook settings (the instance, group hooks, Secrets).
        port: The EventSource's port.
        event_bus: The EventBus in each namespace.

    Raises:
        TriggerError: no specs, a repo URL that cannot be read, or a host that is neither.
        SpecError: specs in one namespace with different `service_account` prefixes.
    """
    if not specs:
        raise TriggerError("no release specs: tags can only release models that have one")
    hooks, github_repository, gitlab_project = hooks_for_repo(
        repo, webhook_url, github=github, gitlab=gitlab, port=port
    )

    objects: list[dict[str, Any]] = []
    for namespace, group in _by_namespace(specs).items():
        account = f"{group[0].service_account}-{TRIGGER_ACCOUNT}"
        models = sorted({spec.model.name for spec in group})
        if len(models) > 1:
            # The templates are named by pipeline: one model's `release` would replace
            # another's, and a tag would run the other model's stages.
            raise TriggerError(
                f"namespace {namespace}: models {', '.join(models)} share it, but the "
                "WorkflowTemplates are one per pipeline and namespace; give each model's spec "
                "a namespace of its own"
            )
        objects.append(event_source(namespace, hooks, github_repository, gitlab_project, event_bus))
        objects.append(
            sensor(namespace, models, account, github_repository, gitlab_project, event_bus)
        )
        objects.extend(trigger_rbac(account, namespace))
    return objects


def _by_namespace(specs: Sequence[ReleaseSpec]) -> dict[str, list[ReleaseSpec]]:
    groups: dict[str, list[ReleaseSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.namespace, []).append(spec)
    for namespace, group in groups.items():
        prefixes = {spec.service_account: spec.model.name for spec in group}
        if len(prefixes) > 1:
            shown = ", ".join(f"{model}: {prefix!r}" for prefix, model in prefixes.items())
            raise SpecError(
                f"namespace {namespace!r}: its specs' service_account differ ({shown}); the "
                "namespace has one release Sensor and one account for it: use one prefix"
            )
    return dict(sorted(groups.items()))


def _github_filters(refs: str, repository: str) -> list[dict[str, Any]]:
    """A push (not a ping) that created a release tag of ours, in the release repository."""
    return [
        _string("headers.X-Github-Event.0", "^push$"),
        _string("body.ref", refs),
        {"path": "body.deleted", "type": "bool", "value": ["false"]},
        _string("body.head_commit.id", COMMIT_REGEX),
        _string("body.repository.full_name", _exactly(repository)),
    ]


def _gitlab_filters(refs: str, project: str) -> list[dict[str, Any]]:
    """A tag push that created a release tag of ours (a deletion has no checkout_sha)."""
    return [
        _string("body.object_kind", "^tag_push$"),
        _string("body.ref", refs),
        _string("body.checkout_sha", COMMIT_REGEX),
        {**_string("body.checkout_sha", ZERO_SHA_REGEX), "comparator": "!="},
        _string("body.project.path_with_namespace", _exactly(project)),
    ]


def _string(path: str, regex: str) -> dict[str, Any]:
    return {"path": path, "type": "string", "value": [regex]}


def _exactly(path: str) -> str:
    """A regex for exactly this repository path; hosts compare paths without case."""
    return "(?i)^" + path.replace(".", r"\.") + "$"


def _dependency(provider: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The provider's events that pass every data filter.

    A webhook's event data is `{"headers": {...}, "body": {...}}`
    (`pkg/eventsources/events/event-data.go`, `GithubEventData`/`GitLabEventData`); headers are
    Go's `http.Header`, so names are canonical (`X-Github-Event`) and values are lists. Data
    filters are gjson paths into it whose `string` values are Go regexes, unanchored
    (`pkg/sensors/dependencies/filter.go`, `filterData`); every filter must pass.
    """
    return {
        "name": provider,
        "eventSourceName": NAME,
        "eventName": provider,
        "filters": {"data": filters},
    }


#: Parameters that take another's value from the event.
_SOURCE_OF = {"revision": "commit"}


def _trigger(namespace: str, provider: str, sources: dict[str, dict[str, str]]) -> dict[str, Any]:
    parameters = [
        {
            "src": {"dependencyName": provider, **sources[_SOURCE_OF.get(name, name)]},
            "dest": f"spec.arguments.parameters.{index}.value",
        }
        for index, name in enumerate(WORKFLOW_PARAMETERS)
    ]
    return {
        "template": {
            "name": f"release-from-{provider}",
            "conditions": provider,
            "argoWorkflow": {
                "operation": "submit",
                "source": {"resource": release_workflow(namespace)},
                "parameters": parameters,
            },
        }
    }
