"""The errors llmflow raises, one base class so callers can catch everything of ours at once.

Every message names the offending thing (a field, a URI, a file) and says how to fix it:
the CLI prints the message as it is, without a traceback.
"""


class LLMFlowError(Exception):
    """Base class of every error llmflow raises on purpose."""


class SpecError(LLMFlowError):
    """A release spec is missing, unreadable, or has a field with a bad value."""


class PipelineNotFoundError(LLMFlowError):
    """A pipeline name that no module in `workflows/` defines."""


class ValidationFailed(LLMFlowError):
    """A rendered manifest does not pass strict schema validation.

    Attributes:
        problems: One line per problem, each starting with the document and field path.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SubmitError(LLMFlowError):
    """The Argo server could not be reached or refused a submission."""


class UnsupportedFeature(LLMFlowError):
    """A Workflow uses a part of Argo the local engine does not implement.

    Raised when the Workflow is loaded, before anything runs, naming the field.
    """


class RunError(LLMFlowError):
    """A local run cannot go on: an unresolved reference, a missing run, a bad argument."""


class InvalidWorkflow(LLMFlowError):
    """A Workflow Argo itself would refuse (`argo lint`): an undefined template, a missing input.

    Raised when the Workflow is loaded, before anything runs; the messages are Argo's.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid Workflow (as `argo lint` finds it):\n  " + "\n  ".join(problems))


class ReleaseTagError(LLMFlowError):
    """A git tag that is not `release/<model>/<semver>`; the message says which part is wrong."""


class TriggerError(LLMFlowError):
    """Git hosting settings from which no webhook can be configured (a repo URL, a hook)."""
