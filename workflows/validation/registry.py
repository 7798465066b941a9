"""Where the schema for an (apiVersion, kind) comes from.

In order of preference: a schemas folder laid out like the upstream release files (Argo's
`schema-*.json` plus CRD YAML files), CRD files the user passes (`llmflow lint --crds`, e.g.
what `kubectl get crd NAME -o yaml` prints from their cluster), then what installed packages
provide: Hera's generated Argo models and kubernetes-validate's built-in kinds. A kind none of
these knows is *unchecked*, which lint reports as a failure unless allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from workflows.exceptions import LLMFlowError
from workflows.validation._strict import close_schema

ARGO_GROUP_VERSION = "argoproj.io/v1alpha1"
ARGO_WORKFLOW_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
ARGO_SCHEMA_FILE = "argo-workflows/schema-v4.1.2.json"
KUBERNETES_VERSION = "1.33"

#: libyaml's loader when present: upstream CRD files are megabytes of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class SchemaRegistry:
    """Validators by (apiVersion, kind), built lazily and cached.

    Attributes:
        argo_schema: Argo's whole JSON schema (with `definitions`), if a file was found.
        crds: Open API schemas of custom resources by (apiVersion, kind).
        kubernetes_version: Version of the built-in kinds' schemas (kubernetes-validate).
        origin: What the Argo schema came from, for messages.
    """

    argo_schema: dict[str, Any] | None = None
    crds: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    kubernetes_version: str = KUBERNETES_VERSION
    origin: str = "Hera's generated models"
    _validators: dict[tuple[str, str], jsonschema.protocols.Validator] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def load(
        cls, schemas_dir: str | Path | None = None, crd_paths: Iterable[str | Path] = ()
    ) -> SchemaRegistry:
        """Build a registry from a schemas folder and/or CRD files.

        Raises:
            LLMFlowError: a named folder or file is missing or is not a CRD.
        """
        registry = cls()
        if schemas_dir is not None:
            root = Path(schemas_dir)
            argo = root / ARGO_SCHEMA_FILE
            if not argo.is_file():
                raise LLMFlowError(
                    f"schemas folder {root} has no {ARGO_SCHEMA_FILE}; point --schemas at a "
                    "folder of upstream schema files, or leave it out"
                )
            registry.argo_schema = json.loads(argo.read_text())
            registry.origin = str(argo)
            for crd_file in sorted(root.rglob("*.yaml")):
                registry.add_crds(crd_file)
        for path in crd_paths:
            path = Path(path)
            if not path.exists():
                raise LLMFlowError(f"--crds {path}: no such file or folder")
            for crd_file in sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]:
                registry.add_crds(crd_file, required=True)
        return registry

    def add_crds(self, path: Path, required: bool = False) -> None:
        """Add every CustomResourceDefinition in a YAML file (also inside a `List`)."""
        found = 0
        for doc in yaml.load_all(path.read_text(), Loader=_LOADER):
            items = (
                doc.get("items", [])
                if isinstance(doc, dict) and doc.get("kind") == "List"
                else [doc]
            )
            for item in items:
                if isinstance(item, dict) and item.get("kind") == "CustomResourceDefinition":
                    found += self._add_crd(item)
        if required and not found:
            raise LLMFlowError(
                f"--crds {path}: no CustomResourceDefinition with a schema in it; pass what "
                "`kubectl get crd NAME -o yaml` prints"
            )

    def _add_crd(self, crd: dict[str, Any]) -> int:
        spec = crd.get("spec", {})
        group, kind = spec.get("group"), spec.get("names", {}).get("kind")
        added = 0
        for version in spec.get("versions", []):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema and group and kind:
                self.crds[(f"{group}/{version['name']}", kind)] = schema
                self._validators.pop((f"{group}/{version['name']}", kind), None)
                added += 1
        return added

    def validator(self, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
        """A strict validator for the kind, or None when only kubernetes-validate can check it."""
        key = (api_version, kind)
        if key not in self._validators:
            schema = self._schema(api_version, kind)
            if schema is None:
                return None
            cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
            self._validators[key] = cls(close_schema(schema))
        return self._validators[key]

    def rules_schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        """The CRD schema whose CEL rules apply to the kind, if a CRD for it was loaded.

        For Argo's workflow kinds this is the CRD even where the structure is checked against
        Argo's JSON schema: the API server runs the rules of the CRD that is installed.
        """
        return self.crds.get((api_version, kind))

    def _schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        argo_kind = api_version == ARGO_GROUP_VERSION and kind in ARGO_WORKFLOW_KINDS
        if argo_kind and self.argo_schema is not None:
            return {
                "$schema": self.argo_schema.get("$schema"),
                "definitions": self.argo_schema["definitions"],
                "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}",
            }
        if (api_version, kind) in self.crds:
            return self.crds[(api_version, kind)]
        if argo_kind:
            return _hera_schema(kind)
        return None


def _hera_schema(kind: str) -> dict[str, Any]:
    """Argo's schema as Hera's generated models describe it (field names as in YAML)."""
    from hera.workflows import models

    schema = getattr(models, kind).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
