"""`retryStrategy`, decided as Argo's `processNodeRetries` does (workflow/controller/operator.go).

A retried template becomes a Retry node whose children are the attempts `name(0)`, `name(1)`,
... After a failed attempt, in this order: a stopped run or an exceeded `backoff.maxDuration`
ends the retries; an attempt whose phase the policy does not retry (`OnFailure`, the default,
retries Failed; `OnError` Error; `Always` both) ends them with the attempt's phase and message;
past `limit` retries it is "No more retries left" (no limit: retry until success); a false
`expression` ends them too. The wait before attempt n+1 is `duration * factor^n`, capped by
`backoff.cap`. The template's own strategy wins over the workflow's `spec.retryStrategy`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workflows.exceptions import RunError
from workflows.local.expressions import substitute
from workflows.local.leaves import duration_seconds
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
) -> None:
    """Run attempts below the Retry node `node` until one succeeds or the strategy gives up."""
    policy = strategy.get("retryPolicy") or (
        "Always" if strategy.get("expression") else "OnFailure"
    )
    limit = _limit(strategy, scope)
    backoff = strategy.get("backoff") or {}
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
        )
        attempts.append(child)
        run.set_phase(child, "Running")
        run.attempt(
            child, template, inputs, {**scope, **_last_retry(attempts[:-1]), "retries": str(number)}
        )
        node.outputs = child.outputs
        if child.phase == "Succeeded":
            run.set_phase(node, "Succeeded", "")
            return
        message = _give_up(run, strategy, policy, limit, backoff, attempts)
        if message is not None:
            run.set_phase(node, child.phase, message)
            return
        wait = _backoff(backoff, len(attempts))
        if wait:
            run.set_phase(node, node.phase, f"Backoff for {wait:g}s")
            run.stopping.wait(wait)
            run.set_phase(node, node.phase, "")


def _give_up(
    run: Run,
    strategy: dict[str, Any],
    policy: str,
    limit: int | None,
    backoff: dict[str, Any],
    attempts: list[Node],
) -> str | None:
    """Why retrying stops after the last attempt, or None to retry."""
    last = attempts[-1]
    if run.stopping.is_set():
        return run.stop_reason
    max_duration = duration_seconds(str(backoff.get("maxDuration") or ""))
    if max_duration is not None:
        deadline = attempts[0].started + max_duration
        if time.time() > deadline:
            return "Max duration limit exceeded"
        if last.finished + _backoff(backoff, len(attempts)) > deadline:
            return "Backoff would exceed max duration limit"
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


def _limit(strategy: dict[str, Any], scope: Scope) -> int | None:
    if strategy.get("limit") in (None, ""):
        return None
    text = substitute(str(strategy["limit"]), scope, "retryStrategy.limit")
    try:
        return int(text)
    except ValueError:
        raise RunError(f"retryStrategy.limit: {text!r} is not an integer") from None


def _backoff(backoff: dict[str, Any], failed: int) -> float:
    """Seconds to wait after `failed` failed attempts: duration * factor^(failed-1), capped."""
    base = duration_seconds(str(backoff.get("duration") or ""))
    if not base:
        return 0.0
    factor = int(backoff.get("factor") or 0)
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
