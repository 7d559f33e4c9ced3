"""CustomResourceDefinitions generated from the pydantic models.

The models in `tenants` and `processing` are the single source of truth; this module turns
their JSON Schema into the *structural* OpenAPI v3 schema the apiserver requires (refs inlined,
no titles, no ``additionalProperties: false``, optional fields without ``null``) and adds what
only Kubernetes knows: CEL rules, printer columns, the status subresource. ``annostack crds
generate`` writes ``crds/*.yaml``; a test fails when the files and the models drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from annostack.domain.processing import (
    DatasetSpec,
    DatasetStatus,
    ProcessingJobSpec,
    ProcessingJobStatus,
)
from annostack.domain.tenants import (
    API_GROUP,
    API_VERSION,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    TenantSpec,
    TenantStatus,
)

Schema = dict[str, Any]
# propertyNames (an enum-keyed map) is not in the apiserver's schema dialect: the keys go unchecked
DROPPED_KEYWORDS = {"title", "$defs", "propertyNames"}


@dataclass(frozen=True)
class ResourceKind:
    """Everything needed to render one CRD."""

    kind: str
    plural: str
    scope: Literal["Cluster", "Namespaced"]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[Schema, ...] = ()
    root_rules: tuple[Schema, ...] = ()
    spec_rules: tuple[Schema, ...] = ()
    field_rules: dict[str, tuple[Schema, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.plural}.{API_GROUP}"


def _condition_column(name: str, condition: str, field_: str = "status") -> Schema:
    return {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].{field_}',
    }


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
IMMUTABLE = "self == oldSelf"

TENANT = ResourceKind(
    kind="Tenant",
    plural="tenants",
    scope="Cluster",
    spec=TenantSpec,
    status=TenantStatus,
    short_names=("tn",),
    description=(
        "A tenant of the annotation platform: its namespace and workers, TiDB schema and user, "
        "S3 bucket and Pulsar namespace, reconciled by the annostack operator."
    ),
    printer_columns=(
        _condition_column("Ready", "Ready"),
        _condition_column("Reason", "Ready", "reason"),
        {"name": "Namespace", "type": "string", "jsonPath": ".status.namespace"},
        {"name": "Policy", "type": "string", "jsonPath": ".spec.deletionPolicy"},
        {"name": "Backlog", "type": "integer", "jsonPath": ".status.backlog", "priority": 1},
        {"name": "Workers", "type": "integer", "jsonPath": ".status.replicas", "priority": 1},
        {"name": "Scaler", "type": "string", "jsonPath": ".status.autoscaler", "priority": 1},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
        AGE,
    ),
    root_rules=(
        {
            "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "message": f"tenant names are at most {MAX_NAME_LENGTH} characters: they become "
            "part of the TiDB user name, whose limit is 32",
        },
        {
            "rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
            "message": "tenant names are lowercase letters, digits and '-', starting with a "
            "letter (they become bucket, schema and Pulsar tenant names)",
        },
    ),
    field_rules={
        "workers": (
            {
                "rule": "self.minReplicas <= self.maxReplicas",
                "message": "workers.minReplicas must not exceed workers.maxReplicas",
            },
        ),
    },
)

DATASET = ResourceKind(
    kind="Dataset",
    plural="datasets",
    scope="Namespaced",
    spec=DatasetSpec,
    status=DatasetStatus,
    short_names=("ds",),
    description="A dataset of a tenant, optionally imported from its bucket and processed.",
    printer_columns=(
        {"name": "Type", "type": "string", "jsonPath": ".spec.dataType"},
        _condition_column("Ready", "Ready"),
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Items", "type": "integer", "jsonPath": ".status.items"},
        {"name": "Processed", "type": "integer", "jsonPath": ".status.processed"},
        AGE,
    ),
    spec_rules=(
        {
            "rule": "self.dataType == oldSelf.dataType",
            "message": "dataType cannot change; create a new dataset",
        },
    ),
    field_rules={
        "source": (
            {
                "rule": "!(has(self.s3Prefix) && has(self.archive))",
                "message": "give either source.s3Prefix or source.archive, not both",
            },
        ),
    },
)

PROCESSING_JOB = ResourceKind(
    kind="ProcessingJob",
    plural="processingjobs",
    scope="Namespaced",
    spec=ProcessingJobSpec,
    status=ProcessingJobStatus,
    short_names=("pj",),
    description="A batch of processing (thumbnails, compression, BEV, split) over a dataset, "
    "or an export of its annotations (operations: [export]).",
    printer_columns=(
        {"name": "Dataset", "type": "string", "jsonPath": ".spec.dataset"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.succeeded"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
        {"name": "Total", "type": "integer", "jsonPath": ".status.total"},
        AGE,
    ),
    spec_rules=(
        {
            "rule": "self.dataset == oldSelf.dataset && self.operations == oldSelf.operations",
            "message": "dataset and operations are fixed; create a new job to run others",
        },
        {
            "rule": (
                "has(self.itemPrefix) == has(oldSelf.itemPrefix) && (!has(self.itemPrefix) || "
                "self.itemPrefix == oldSelf.itemPrefix) && has(self.archiveItemId) == "
                "has(oldSelf.archiveItemId) && (!has(self.archiveItemId) || "
                "self.archiveItemId == oldSelf.archiveItemId)"
            ),
            "message": "itemPrefix and archiveItemId are fixed; create a new job instead",
        },
        {
            "rule": "has(self.export) == has(oldSelf.export) && (!has(self.export) || "
            "self.export == oldSelf.export)",
            "message": "export is fixed; create a new job for another export",
        },
        {
            "rule": "!has(self.export) || self.operations == ['export']",
            "message": "an export job has operations: [export] alone; run processing in a job "
            "of its own",
        },
        {
            "rule": "!self.operations.exists(o, o == 'export') || has(self.export)",
            "message": "operations: [export] needs export.format (xtreme1, kitti, coco or "
            "nuscenes)",
        },
    ),
    field_rules={
        "export": (
            {
                "rule": "!has(self.archive) || self.format != 'coco'",
                "message": "export.archive does not apply to coco: a COCO export is one JSON file",
            },
        ),
    },
)

KINDS = (TENANT, DATASET, PROCESSING_JOB)


def structural(node: Any, defs: Schema) -> Any:
    """Rewrite a pydantic JSON Schema node into Kubernetes' structural-schema dialect."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in node and {"type": "null"} in node["anyOf"]:
        # Optional[X]: absence already means "not set"; the schema describes X.
        options = [option for option in node["anyOf"] if option != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", ...) is None:
            del rest["default"]
        only = options[0] if len(options) == 1 else {"anyOf": options}
        return structural({**only, **rest}, defs)
    if node.get("x-kubernetes-int-or-string"):
        return _int_or_string(node)
    out = {}
    for key, value in node.items():
        if key in DROPPED_KEYWORDS or (key == "additionalProperties" and value is False):
            continue
        out[key] = structural(value, defs)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def _int_or_string(node: Schema) -> Schema:
    # The one shape structural schemas allow for int-or-string (as controller-gen emits it);
    # the pattern applies to the string form.
    out: Schema = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": node["pattern"],
    }
    for key in ("description", "default"):
        if key in node:
            out[key] = node[key]
    return out


def _model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = structural(raw, raw.get("$defs", {}))
    schema["description"] = (model.__doc__ or "").strip().splitlines()[0]
    return schema


def _add_rules(schema: Schema, kind: ResourceKind) -> Schema:
    if kind.spec_rules:
        schema["x-kubernetes-validations"] = list(kind.spec_rules)
    for name, rules in kind.field_rules.items():
        schema["properties"][name]["x-kubernetes-validations"] = list(rules)
    return schema


def render_crd(kind: ResourceKind) -> Schema:
    """The CustomResourceDefinition manifest for one resource kind."""
    root: Schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # The apiserver owns metadata's schema; a CRD may only say that it is an object.
            "metadata": {"type": "object"},
            "spec": _add_rules(_model_schema(kind.spec), kind),
            "status": _model_schema(kind.status),
        },
    }
    if kind.root_rules:
        root["x-kubernetes-validations"] = list(kind.root_rules)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.name,
            "labels": {"app.kubernetes.io/part-of": "annostack"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": kind.scope,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["annostack"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }
