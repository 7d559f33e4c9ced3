"""The CRDs in crds/ are exactly what the models generate, and read well in `kubectl explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from annostack.cli.crds import rendered
from annostack.domain.crds import KINDS, render_crd

CRDS = Path(__file__).parents[2] / "crds"


@pytest.mark.parametrize("name", sorted(rendered()))
def test_committed_crd_matches_the_models(name: str) -> None:
    committed = CRDS / name
    assert committed.exists(), f"{name} missing: run `annostack crds generate`"
    assert committed.read_text() == rendered()[name], "stale: run `annostack crds generate`"


def _properties_without_description(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if here.count(".") == 1 and name == "metadata":
            continue  # described by the apiserver itself
        if not prop.get("description"):
            missing.append(here)
        missing += _properties_without_description(prop, here)
        missing += _properties_without_description(prop.get("items", {}), here + "[]")
    return missing


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_every_field_has_a_description(kind: Any) -> None:
    schema = render_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _properties_without_description(schema, kind.kind) == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_schema_is_structural(kind: Any) -> None:
    text = yaml.safe_dump(render_crd(kind))
    for forbidden in ("$ref", "$defs", "title:", "additionalProperties: false", "type: 'null'"):
        assert forbidden not in text
