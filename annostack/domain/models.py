"""Base classes and field types shared by the resource models."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose JSON/YAML form uses Kubernetes' camelCase field names."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


# A Kubernetes resource quantity ("500m", "2Gi", 4). The regex is the apiserver's own
# (k8s.io/apimachinery/pkg/api/resource), so a value valid here is valid in a ResourceQuota.
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"


def _as_quantity(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2, 10Gi or 1.5G")
    return value


# Accepts 2 as well as "2Gi" (YAML users write both) and keeps a string.
Quantity = Annotated[
    str,
    BeforeValidator(_as_quantity),
    WithJsonSchema(
        {"type": "string", "pattern": QUANTITY_PATTERN, "x-kubernetes-int-or-string": True}
    ),
]

BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def quantity_bytes(quantity: str) -> int:
    """Bytes in a storage quantity such as "10Gi" or "500M" (no milli-units for bytes)."""
    for suffixes in (BINARY_SUFFIXES, DECIMAL_SUFFIXES):
        for suffix, factor in suffixes.items():
            if quantity.endswith(suffix):
                return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))
