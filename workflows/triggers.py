"""Argo Events objects that turn a pushed release tag into a run of the `release` template.

A push of `release/<model>/<semver>` to the repository that holds `releases/` reaches the
cluster as a webhook (GitHub or GitLab). An EventSource receives it; a Sensor keeps only
creations of release tags of models released in its namespace, and submits a Workflow from the
`release` WorkflowTemplate with the workflow parameters `tag` (`release/tiny-llama/1.2.0`),
`commit` (the commit the tag points to) and `repo` (the clone URL).

What Argo Events v1.9 does with these objects, read from its source:

- The webhook's event data is `{"headers": {...}, "body": {...}}`
  (`pkg/eventsources/events/event-data.go`, `GithubEventData`/`GitLabEventData`); headers are
  Go's `http.Header`, so names are canonical (`X-Github-Event`) and values are lists.
- Data filters are gjson paths whose `string` values are Go regexes, unanchored
  (`pkg/sensors/dependencies/filter.go`, `filterData`); every filter must pass.
- A trigger with no `conditions` waits for *all* dependencies
  (`pkg/sensors/listener.go`, `getDependencyExpression`), so each provider has its own trigger.
- `dataTemplate` is a Go template with sprig over `.Input`, the whole event data
  (`pkg/sensors/triggers/params.go`, `getValueWithTemplate`); values land at `dest` by sjson.
- `operation: submit` runs `argo submit` as the Sensor's service account, then lists Workflows
  by the labels it added (`pkg/sensors/triggers/argo-workflow/argo-workflow.go`, `Execute`);
  `argo submit` gets the WorkflowTemplate to validate the Workflow (argo-workflows
  `server/workflow/workflow_server.go`, `CreateWorkflow`). Hence the Role: create and list
  Workflows, get WorkflowTemplates.

GitHub's `after` is the tag *object* for an annotated tag; `head_commit.id` is the commit for
both kinds of tag. GitLab's `checkout_sha` is the commit (`null` when a tag is deleted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workflows.exceptions import SpecError, TriggerError
from workflows.rbac import rbac_objects
from workflows.spec import ReleaseSpec
from workflows.tags import REF_PREFIX, ref_regex

API_VERSION = "argoproj.io/v1alpha1"

#: The WorkflowTemplate a release tag submits, and the parameters it takes, in this order.
#: `revision` is what build-images checks out: the tag's commit too.
RELEASE_TEMPLATE = "release"
WORKFLOW_PARAMETERS = ("tag", "commit", "revision", "repo")

#: Name of the EventSource and of the Sensor, in each namespace that has release specs.
NAME = "release-tags"

#: Suffix of the Sensor's service account: `<spec.service_account>-release-trigger`.
TRIGGER_ACCOUNT = "release-trigger"

#: The EventSource's webhook port; both providers share its HTTP server.
DEFAULT_PORT = 12000

#: A commit id: SHA-1, or SHA-256 in repositories that use it.
COMMIT_REGEX = r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$"
ZERO_SHA_REGEX = r"^0+$"

#: The tag from a push's `ref`: what Argo Events' sprig `trimPrefix` leaves of `refs/tags/...`.
TAG_TEMPLATE = f'{{{{ .Input.body.ref | trimPrefix "{REF_PREFIX}" }}}}'

#: Where each workflow parameter comes from in a GitHub push event.
GITHUB_PARAMETERS = {
    "tag": {"dataTemplate": TAG_TEMPLATE},
    "commit": {"dataKey": "body.head_commit.id"},
    "repo": {"dataKey": "body.repository.clone_url"},
}

#: Where each workflow parameter comes from in a GitLab tag push event.
GITLAB_PARAMETERS = {
    "tag": {"dataTemplate": TAG_TEMPLATE},
    "commit": {"dataKey": "body.checkout_sha"},
    "repo": {"dataKey": "body.project.git_http_url"},
}

_LABELS = {"app.kubernetes.io/part-of": "llmflow"}
_PATH = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)+$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class SecretKey:
    """A key of a Kubernetes Secret; manifests name it, the EventSource pod reads the value."""

    name: str
    key: str

    def selector(self) -> dict[str, str]:
        """As a `SecretKeySelector`."""
        return {"name": self.name, "key": self.key}


@dataclass(frozen=True)
class GitHubHook:
    """A GitHub webhook for push events, created by the EventSource with an API token.

    Attributes:
        repository: `owner/name` of the repository holding `releases/`; default: the path of
            the release repository's URL. Only its tags start releases.
        organizations: Hook these organizations instead of the one repository (one webhook
            for many repositories); the Sensor still keeps only `repository`'s tags.
        api_token: Secret key with a token that may manage the repository's (or the
            organizations') webhooks.
        webhook_secret: Secret key with the secret GitHub signs deliveries with
            (`X-Hub-Signature-256`); the EventSource rejects unsigned ones.
        enterprise_url: GitHub Enterprise Server's URL (`https://github.example.com`); the
            API and upload URLs are derived from it. None: github.com.
    """

    repository: str | None = None
    organizations: tuple[str, ...] = ()
    api_token: SecretKey = SecretKey("github-access", "token")
    webhook_secret: SecretKey = SecretKey("github-access", "webhook-secret")
    enterprise_url: str | None = None

    def __post_init__(self) -> None:
        if self.repository is not None:
            _check_path(self.repository, "github.repository", "owner/name", range(2, 3))
        for org in self.organizations:
            if not _NAME.match(org):
                raise TriggerError(
                    f"github.organizations: {org!r} is not an organization name (letters, "
                    "digits, '.', '_' and '-'), e.g. my-org"
                )
        if self.enterprise_url is not None:
            _check_url(self.enterprise_url, "github.enterprise_url", "https://github.example.com")


@dataclass(frozen=True)
class GitLabHook:
    """A GitLab webhook for tag push events, created by the EventSource with an access token.

    Attributes:
        project: `group/name` (subgroups allowed) of the project holding `releases/`;
            default: the path of the release repository's URL. Only its tags start releases.
        groups: Hook these groups instead of the one project; the Sensor still keeps only
            `project`'s tags.
        base_url: The GitLab instance.
        access_token: Secret key with a token that may manage the project's (or groups')
            webhooks (GitLab's `api` scope); required by the EventSource.
        secret_token: Secret key with the token GitLab sends as `X-Gitlab-Token`; the
            EventSource rejects deliveries without it.
    """

    project: str | None = None
    groups: tuple[str, ...] = ()
    base_url: str = "https://gitlab.com"
    access_token: SecretKey = SecretKey("gitlab-access", "token")
    secret_token: SecretKey = SecretKey("gitlab-access", "webhook-secret")

    def __post_init__(self) -> None:
        if self.project is not None:
            _check_path(self.project, "gitlab.project", "group/name")
        for group in self.groups:
            _check_path(group, "gitlab.groups", "my-group or my-group/subgroup", range(1, 100))
        _check_url(self.base_url, "gitlab.base_url", "https://gitlab.example.com")


@dataclass(frozen=True)
class Hooks:
    """Where release tags come from: a GitHub and/or a GitLab repository (e.g. a mirror).

    Attributes:
        webhook_url: The EventSource's URL as the git host reaches it (an Ingress to the
            `<name>-eventsource-svc` Service); each provider's endpoint is appended.
        github: The GitHub webhook, if any.
        gitlab: The GitLab webhook, if any.
        port: The port the EventSource listens on and its Service exposes.
    """

    webhook_url: str
    github: GitHubHook | None = None
    gitlab: GitLabHook | None = None
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        _check_url(self.webhook_url, "webhook_url", "https://hooks.example.com")
        if self.github is None and self.gitlab is None:
            raise TriggerError("no git host to hear tags from: give github=... or gitlab=...")
        if not 1 <= self.port <= 65535:
            raise TriggerError(f"port = {self.port}: must be 1-65535, e.g. {DEFAULT_PORT}")


def endpoint(namespace: str, provider: str) -> str:
    """The webhook path of one provider in one namespace: Ingress rules can route on it."""
    return f"/{NAME}/{namespace}/{provider}"


def event_source(
    namespace: str,
    hooks: Hooks,
    github_repository: str | None = None,
    gitlab_project: str | None = None,
    event_bus: str = "default",
) -> dict[str, Any]:
    """The EventSource that receives pushes: a `github` and/or a `gitlab` webhook.

    Args:
        namespace: Where it runs (beside the Sensor and the `release` template).
        hooks: The webhooks and their secrets.
        github_repository: `owner/name` of the release repository, hooked unless
            `hooks.github` hooks organizations.
        gitlab_project: `group/name` of the release project, hooked unless `hooks.gitlab`
            hooks groups.
        event_bus: The EventBus it publishes to.

    Raises:
        TriggerError: a provider has nothing to hook.
    """
    spec: dict[str, Any] = {
        "eventBusName": event_bus,
        "service": {"ports": [{"name": "webhook", "port": hooks.port, "targetPort": hooks.port}]},
    }
    if hooks.github is not None:
        webhook = _webhook(hooks, endpoint(namespace, "github"))
        spec["github"] = {"github": _github_source(hooks.github, github_repository, webhook)}
    if hooks.gitlab is not None:
        webhook = _webhook(hooks, endpoint(namespace, "gitlab"))
        spec["gitlab"] = {"gitlab": _gitlab_source(hooks.gitlab, gitlab_project, webhook)}
    return {
        "apiVersion": API_VERSION,
        "kind": "EventSource",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(_LABELS)},
        "spec": spec,
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

    One dependency and one trigger per provider given (a trigger waits for all the
    dependencies it names, so a shared trigger would wait for both hosts).

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
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(_LABELS)},
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
            "labels": {**_LABELS, "llmflow.io/pipeline": RELEASE_TEMPLATE},
        },
        "spec": {
            "workflowTemplateRef": {"name": RELEASE_TEMPLATE},
            "arguments": {"parameters": [{"name": name} for name in WORKFLOW_PARAMETERS]},
        },
    }


def trigger_rbac(account: str, namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for the Sensor: submit Workflows, nothing more.

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
    host, path = repo_location(repo)
    if github is None and gitlab is None:
        if host == "github.com":
            github = GitHubHook()
        elif host == "gitlab.com" or host.startswith("gitlab."):
            gitlab = GitLabHook(base_url=f"https://{host}")
        else:
            raise TriggerError(
                f"repo {repo!r}: cannot tell whether {host} is GitHub or GitLab; pass "
                "github=GitHubHook(enterprise_url=...) or gitlab=GitLabHook(base_url=...)"
            )
    hooks = Hooks(webhook_url=webhook_url, github=github, gitlab=gitlab, port=port)
    github_repository = (github.repository or path) if github else None
    gitlab_project = (gitlab.project or path) if gitlab else None
    if github_repository is not None:
        _check_path(github_repository, f"repo {repo!r} on GitHub", "owner/name", range(2, 3))

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


def repo_location(repo: str) -> tuple[str, str]:
    """(host, path) of a git URL: `https://github.com/o/n.git` -> ("github.com", "o/n").

    Raises:
        TriggerError: not an https, ssh or scp-like (`git@host:o/n.git`) URL with a path.
    """
    match = re.match(r"^(?:https?|ssh|git)://(?:[^@/]+@)?([^/:]+)(?::[0-9]+)?/(.+)$", repo)
    match = match or re.match(r"^[^@/:]+@([^/:]+):(.+)$", repo)
    path = match.group(2).removesuffix("/").removesuffix(".git") if match else ""
    if not match or not _PATH.match(path):
        raise TriggerError(
            f"repo {repo!r}: not a git URL with an owner and a name; expected e.g. "
            "https://github.com/my-org/llmflow.git or git@gitlab.com:my-group/llmflow.git"
        )
    return match.group(1).lower(), path


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


def _github_source(
    hook: GitHubHook, repository: str | None, webhook: dict[str, str]
) -> dict[str, Any]:
    source: dict[str, Any] = {}
    if hook.organizations:
        source["organizations"] = list(hook.organizations)
    elif repository is not None:
        owner, name = repository.split("/")
        source["repositories"] = [{"owner": owner, "names": [name]}]
    else:
        raise TriggerError("github: no repository to hook; give github_repository (owner/name)")
    source |= {
        "events": ["push"],
        "webhook": webhook,
        "apiToken": hook.api_token.selector(),
        "webhookSecret": hook.webhook_secret.selector(),
        "contentType": "json",
        "active": True,
        "insecure": False,
    }
    if hook.enterprise_url is not None:
        base = hook.enterprise_url.rstrip("/")
        source["githubBaseURL"] = f"{base}/api/v3/"
        source["githubUploadURL"] = f"{base}/api/uploads/"
    return source


def _gitlab_source(
    hook: GitLabHook, project: str | None, webhook: dict[str, str]
) -> dict[str, Any]:
    source: dict[str, Any] = {}
    if hook.groups:
        source["groups"] = list(hook.groups)
    elif project is not None:
        source["projects"] = [project]
    else:
        raise TriggerError("gitlab: no project to hook; give gitlab_project (group/name)")
    return source | {
        "events": ["TagPushEvents"],
        "webhook": webhook,
        "accessToken": hook.access_token.selector(),
        "secretToken": hook.secret_token.selector(),
        "gitlabBaseURL": hook.base_url.rstrip("/"),
        "enableSSLVerification": True,
    }


def _webhook(hooks: Hooks, path: str) -> dict[str, str]:
    return {
        "endpoint": path,
        "port": str(hooks.port),
        "method": "POST",
        "url": hooks.webhook_url.rstrip("/"),
    }


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


def _check_path(value: str, what: str, example: str, parts: range = range(2, 100)) -> None:
    names = value.split("/")
    if len(names) not in parts or not all(_NAME.match(name) for name in names):
        raise TriggerError(
            f"{what}: {value!r} is not a repository path ({example}: letters, digits, "
            "'.', '_' and '-' between slashes)"
        )


def _check_url(value: str, what: str, example: str) -> None:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise TriggerError(f"{what} = {value!r}: must be an http(s) URL, e.g. {example}")
