"""Argo retries of a step that talks to a store: failures that can heal are retried, with backoff.

A step says whether its failure can heal by its exit code (`steps.errors`): 66 (`SourceError`)
and 76 (`IntegrityError`) cannot, 75 (`TransferError`) can. The template's
`retryStrategy.expression` reads it as `lastRetry.exitCode` (a string in Argo) and retries
everything but the permanent codes, so an attempt that crashed (1), was OOM-killed (137) or
lost its pod (phase Error, exit code -1) is retried too: an outage that surfaced in a way
nobody classified is still waited out.

`retryPolicy` is `Always`, which is also Argo's default once an expression is set
(`RetryStrategy.RetryPolicyActual` in workflow_types.go): Failed and Error attempts both reach
the expression. Note what `processNodeRetries` (operator.go) does before it: with a `limit`
set, it waits the backoff before deciding at all, so a permanent failure ends the step one
backoff after its only attempt.

Limit and backoff are workflow parameters, so a run started from the Argo UI can wait longer
for a store that is down; their values come from the release spec (`model.cache.retry`).
There is no `maxDuration`: Argo also makes it the deadline of every retried pod
(`opts.executionDeadline`), which would cut short the long download of a big model.
"""

from dataclasses import dataclass

from hera.workflows import RetryStrategy
from hera.workflows.models import Backoff, IntOrString

from steps.errors import IntegrityError, SourceError

#: Exit codes of failures that no retry can heal.
PERMANENT_EXIT_CODES = (SourceError.exit_code, IntegrityError.exit_code)

#: Retry unless the last attempt ended with a permanent exit code.
RETRY_UNLESS_PERMANENT = (
    "lastRetry.exitCode not in [" + ", ".join(f'"{code}"' for code in PERMANENT_EXIT_CODES) + "]"
)


@dataclass(frozen=True)
class RetryParameters:
    """The workflow parameters holding a step's retry limit and backoff.

    Attributes:
        limit: Retries after the first attempt.
        backoff: Wait before the first retry (an Argo duration: `10s`, `1m`).
        factor: Each further wait is the previous one times this (an integer).
        cap: The longest wait.
    """

    limit: str
    backoff: str
    factor: str
    cap: str

    def strategy(self) -> RetryStrategy:
        """The template's `retryStrategy`, reading its numbers from the workflow parameters."""

        def ref(name: str) -> str:
            return f"{{{{workflow.parameters.{name}}}}}"

        return RetryStrategy(
            retry_policy="Always",
            expression=RETRY_UNLESS_PERMANENT,
            limit=ref(self.limit),
            backoff=Backoff(
                duration=ref(self.backoff),
                factor=IntOrString(root=ref(self.factor)),
                cap=ref(self.cap),
            ),
        )


#: The fetch-weights step's retry parameters (`workflows/_common.py` declares them).
FETCH_RETRY = RetryParameters(
    limit="fetch-retry-limit",
    backoff="fetch-retry-backoff",
    factor="fetch-retry-factor",
    cap="fetch-retry-cap",
)
