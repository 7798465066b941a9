"""Variables in scope while a workflow runs, and the marker for an absent optional output.

A scope maps Argo's variable names (`inputs.parameters.x`, `tasks.a.outputs.result`, ...) to
string values, as the controller's scope does. A Skipped or Omitted node produced no outputs;
its declared output parameters are still put in scope, as Argo does: with the producer's
`valueFrom.default`, or else as `ABSENT`. An argument that is only a reference to an absent
value counts as not supplied (the consumer's input default applies); any other use of it is
an error naming the reference.
"""

from __future__ import annotations

Scope = dict[str, str]

#: The value of a skipped or omitted node's output that has no default ("absent optional").
ABSENT = "\x00absent-optional\x00"
