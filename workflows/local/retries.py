"""`retryStrategy`, decided as Argo's `processNodeRetries` does (workflow/controller/operator.go).

A retried template becomes a Retry node whose children are the attempts `name(0)`, `name(1)`,
... Its limit and backoff may name parameters (`{{workflow.parameters.x}}`,
`{{inputs.parameters.x}}`): Argo fills them in with the rest of the template (ProcessArgs)
before it reads the strategy. After a failed attempt, in Argo's order:

1. a stopped run ends the retries;
2. with a `backoff`: past `maxDuration` (counted from the first attempt's start) ends them
   ("Max duration limit exceeded"), as does a wait that would end past it; otherwise, when a
   `limit` is set and not yet used up, the node waits `duration * factor^(n-1)` after the
   n-th failed attempt, capped by `cap`, and only then decides. Without a limit Argo does not
   wait at all, and neither does this;
3. an attempt whose phase the policy does not retry ends them with its phase and message.
   `OnFailure` (the default) retries Failed, `OnError` Error, `Always` both; with an
   `expression` and no policy the policy is `Always` (`RetryPolicyActual`), so the expression
   alone decides;
4. past `limit` retries it is "No more retries left" (no limit: retry until success);
5. a false `expression`, which sees `lastRetry.exitCode` (a string, "-1" when unknown),
   `lastRetry.status`, `lastRetry.duration`, `lastRetry.message` and `retries`, ends them.

So a failure the expression refuses still waits one backoff before its node fails, as on a
cluster. The template's own strategy wins over the workflow's `spec.retryStrategy`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.expressions import substitute, substitute_all
from workflows.local.leaves import duration_seconds
from workflows.local.refs import Frame
from workflows.local.scope import Scope
from workflows.local.store import Node, node_type

if TYPE_CHECKING:
    from workflows.local.engine import Run

_RETRIED = {
    "Always": {"Failed", "Error"},
    "OnFailure": {"Failed"},
    "OnError": {"Error"},
    "OnTransientError": set(),  # nothing local is a transient Kubernetes error
}


def run_with_retries(
    run: Run,
    node: Node,
    template: dict[str, Any],
    inputs: dict[str, dict[str, str]],
    scope: Scope,
    strategy: dict[str, Any],
    frame: Frame,
) -> None:
    """Run attempts below the Retry node `node` until one succeeds or the strategy gives up.

    Each attempt is a child with the Retry node's template, templateRef and templateScope,
    and runs in `frame`, the frame the template itself runs in.
    """
    strategy = _resolved(strategy, {**scope, **run.global_scope(), **_inputs(inputs)})
    policy = strategy.get("retryPolicy") or (
        "Always" if strategy.get("expression") else "OnFailure"
    )
    limit = _limit(strategy)
    attempts: list[Node] = []
    while True:
        number = len(attempts)
        name = f"{node.name}({number})"
        child = run.new_node(
            name,
            f"{node.display_name}({number})",
            node_type(template),
            [node],
            template["name"],
            node.boundary_id,
            ref=node.template_ref,
            scope=node.template_scope,
        )
        attempts.append(child)
        run.set_phase(child, "Running")
        run.attempt(
            child,
            template,
            inputs,
            {**scope, **_last_retry(attempts[:-1]), "retries": str(number)},
            frame,
        )
        node.outputs = child.outputs
        if child.phase == "Succeeded":
            run.set_phase(node, "Succeeded", "")
            return
        message = _give_up(run, node, strategy, policy, limit, attempts)
        if message is not None:
            run.set_phase(node, child.phase, message)
            return


def _give_up(
    run: Run,
    node: Node,
    strategy: dict[str, Any],
    policy: str,
    limit: int | None,
    attempts: list[Node],
) -> str | None:
    """Why retrying stops after the last attempt, or None to start the next one now."""
    last = attempts[-1]
    if run.stopping.is_set():
        return run.stop_reason
    backoff = strategy.get("backoff")
    if backoff is not None:
        message = _wait_backoff(run, node, backoff, limit, attempts)
        if message is not None:
            return message
    if last.phase not in _RETRIED[policy]:
        return last.message
    if limit is not None and len(attempts) > limit:
        return "No more retries left"
    if strategy.get("expression"):
        from workflows.local.expr import ExprError, evaluate, expression_env

        env = expression_env({**_last_retry(attempts), "retries": str(len(attempts) - 1)})
        try:
            if evaluate(str(strategy["expression"]), env) is not True:
                return "retryStrategy.expression evaluated to false"
        except ExprError as exc:
            raise RunError(f"retryStrategy.expression: {exc}") from None
    return None


def _wait_backoff(
    run: Run, node: Node, backoff: dict[str, Any], limit: int | None, attempts: list[Node]
) -> str | None:
    """Argo's backoff block: the maxDuration checks, then the wait; a message ends retrying."""
    first, last = attempts[0], attempts[-1]
    max_duration = duration_seconds(str(backoff.get("maxDuration") or ""))
    deadline = None if max_duration is None else first.started + max_duration
    if deadline is not None and time.time() > deadline:
        return "Max duration limit exceeded"
    wait = _backoff(backoff, len(attempts))
    if deadline is not None and last.finished + wait > deadline:
        return "Backoff would exceed max duration limit"
    remaining = last.finished + wait - time.time()
    if remaining > 0 and limit is not None and len(attempts) <= limit:
        run.set_phase(node, node.phase, f"Backoff for {wait:g}s")
        run.stopping.wait(remaining)
        run.set_phase(node, node.phase, "")
        if run.stopping.is_set():
            return run.stop_reason
    return None


def _resolved(strategy: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """The strategy with the parameters in its limit and backoff filled in."""
    out = dict(strategy)
    if out.get("limit") not in (None, ""):
        out["limit"] = substitute(str(out["limit"]), scope, "retryStrategy.limit")
    if out.get("backoff") is not None:
        out["backoff"] = substitute_all(dict(out["backoff"]), scope, "retryStrategy.backoff")
    return out


def _inputs(inputs: dict[str, dict[str, str]]) -> Scope:
    return {f"inputs.parameters.{k}": v for k, v in inputs["parameters"].items()}


def _limit(strategy: dict[str, Any]) -> int | None:
    if strategy.get("limit") in (None, ""):
        return None
    text = str(strategy["limit"])
    try:
        return int(text)
    except ValueError:
        raise RunError(f"retryStrategy.limit: {text!r} is not an integer") from None


def _backoff(backoff: dict[str, Any], failed: int) -> float:
    """Seconds to wait after `failed` failed attempts: duration * factor^(failed-1), capped."""
    base = duration_seconds(str(backoff.get("duration") or ""))
    if base is None:  # operator.go refuses a backoff without one
        raise RunError("retryStrategy.backoff: no base duration specified for retryStrategy")
    text = str(backoff.get("factor") or 0)
    try:
        factor = int(text)
    except ValueError:
        raise RunError(f"retryStrategy.backoff.factor: {text!r} is not an integer") from None
    wait = base * factor ** (failed - 1) if factor > 0 else base
    cap = duration_seconds(str(backoff.get("cap") or ""))
    return min(wait, cap) if cap is not None else wait


def _last_retry(attempts: list[Node]) -> Scope:
    """The `lastRetry.*` variables an attempt and the retry expression see."""
    if not attempts:
        return {
            "lastRetry.exitCode": "0",
            "lastRetry.status": "",
            "lastRetry.duration": "0",
            "lastRetry.message": "",
        }
    last = attempts[-1]
    return {
        "lastRetry.exitCode": str(last.outputs.get("exitCode", "-1")),
        "lastRetry.status": last.phase,
        "lastRetry.duration": str(round(last.finished - last.started, 3)),
        "lastRetry.message": last.message,
    }
