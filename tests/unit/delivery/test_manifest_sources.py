"""Files under manifests/ that mirror generated or shared sources stay in sync with them."""

from __future__ import annotations

from pathlib import Path

from annostack.cli.crds import rendered

ROOT = Path(__file__).parents[3]


def test_the_kustomize_base_ships_the_generated_crds() -> None:
    # kustomize reads nothing outside its root, so manifests/base/crds holds copies of crds/.
    shipped = {p.name: p.read_text() for p in (ROOT / "manifests/base/crds").glob("*.yaml")}
    shipped.pop("kustomization.yaml")
    assert shipped == rendered(), "copy crds/*.yaml to manifests/base/crds/"
