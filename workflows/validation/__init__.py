"""Strict validation of rendered manifests against upstream schemas.

`lint` and the tests use it; later pipelines reuse it for every kind they render. Argo kinds
are checked against Argo's JSON schema (or CRDs, or Hera's generated models), custom
resources against their CRDs, built-in kinds with kubernetes-validate's strict schemas, and
manifests embedded in Argo resource templates as objects of their own kind. Every object is
closed: a field the schema does not know is an error, as `kubectl apply --validate=strict`
would report it. A CRD's CEL rules (`x-kubernetes-validations`) run as the API server runs
them on a create (`cel_rules`). Argo kinds then get Argo's semantic checks
(`workflow_problems`): what `argo lint` rejects although the schema passes.
"""

from workflows.validation.argo_rules import workflow_problems
from workflows.validation.registry import SchemaRegistry
from workflows.validation.validate import Problem, validate_documents, validate_files

__all__ = ["Problem", "SchemaRegistry", "validate_documents", "validate_files", "workflow_problems"]
