"""PodDisruptionBudget and HorizontalPodAutoscaler: kept as data, not acted on locally.

One machine has no node drains that a PodDisruptionBudget could limit, and no spare capacity
an autoscaler could add, so these objects are stored (a later `get` finds them, and
`llmflow local status` lists them as "not acted on locally") and nothing else happens.
"""

from __future__ import annotations

from workflows.local.kinds.service import ServingStoredHandler
from workflows.local.platform import register

#: Kinds stored without effect, with why (shown by `llmflow local status`).
NOT_ACTED_ON = {
    "PodDisruptionBudget": "not acted on locally: one machine has no evictions",
    "HorizontalPodAutoscaler": "not acted on locally: one machine does not autoscale",
}


@register("PodDisruptionBudget")
class PodDisruptionBudgetHandler(ServingStoredHandler):
    """PodDisruptionBudgets: stored only (no evictions on one machine)."""

    kind = "PodDisruptionBudget"


@register("HorizontalPodAutoscaler")
class HorizontalPodAutoscalerHandler(ServingStoredHandler):
    """HorizontalPodAutoscalers: stored only (replicas stay as the Deployment says)."""

    kind = "HorizontalPodAutoscaler"
