"""The git hosts' side of tag releases: webhook settings and the EventSource that receives pushes.

A push of `release/<model>/<semver>` to the repository that holds `releases/` reaches the
cluster as a webhook from GitHub or GitLab. The EventSource here has the host create that
webhook (with an API token from a Secret) and publishes each delivery to the EventBus, where the
Sensor of `workflows.triggers` decides what runs. The settings are frozen dataclasses checked
when built, so a malformed repository path, group or URL fails at render time with the fix
rather than as a webhook that never arrives; the release repository's URL is read here too,
because its host picks the provider when no settings are given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workflows.exceptions import TriggerError

API_VERSION = "argoproj.io/v1alpha1"

#: Name of the EventSource and of the Sensor, in each namespace that has release specs.
NAME = "release-tags"

#: The EventSource's webhook port; both providers share its HTTP server.
DEFAULT_PORT = 12000

#: Labels of every Argo Events object rendered for tag releases.
LABELS = {"app.kubernetes.io/part-of": "llmflow"}

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
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(LABELS)},
        "spec": spec,
    }


def hooks_for_repo(
    repo: str,
    webhook_url: str,
    github: GitHubHook | None = None,
    gitlab: GitLabHook | None = None,
    port: int = DEFAULT_PORT,
) -> tuple[Hooks, str | None, str | None]:
    """The webhooks that hear the release repository, and whose tags count on each host.

    Args:
        repo: The git URL of the repository holding `releases/` (https, ssh or scp-like).
            Without `github`/`gitlab`, its host picks the provider: github.com, or gitlab.com
            and hosts named `gitlab.*`.
        webhook_url: The EventSource's URL as the git host reaches it.
        github: GitHub webhook settings, if any.
        gitlab: GitLab webhook settings, if any.
        port: The EventSource's port.

    Returns:
        The hooks; the GitHub `owner/name` and the GitLab `group/name` whose tags the Sensor
        keeps (the hook's own setting, else the path of `repo`), None for a host not hooked.

    Raises:
        TriggerError: a repo URL that cannot be read, a host that is neither, or settings
            that are not valid.
    """
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
    return hooks, github_repository, gitlab_project


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
