"""Every pattern-based validator refuses a trailing newline (`$` with `re.match` lets it in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from annostack.adapters import database
from annostack.domain.annotations import valid_source
from annostack.domain.errors import BackendRejected, Invalid
from annostack.domain.items import FileKind, classify
from annostack.services.annotations import document_key
from annostack.services.datasets import DatasetCreate
from annostack.services.uploads import object_key

ROOT = Path(__file__).parents[2]
PACKAGES = ("annostack", "apps", "operator", "workers")


def test_annotation_sources() -> None:
    assert valid_source("lidar")
    assert not valid_source("lidar\n")
    with pytest.raises(Invalid):
        document_key(1, "abc\n")


def test_upload_extensions() -> None:
    assert object_key(1, 2, "scan.pcd") == "data/1/2.pcd"
    assert object_key(1, 2, "scan.pcd\n") == "data/1/2", "no newline in an object key"


def test_archive_directories() -> None:
    # A cloud in an Xtreme1 sidecar folder is kept as a sidecar; in a look-alike folder whose
    # name ends in a newline it is a cloud like any other.
    assert classify("scene/camera_config/front.pcd").kind is FileKind.SIDECAR
    assert classify("scene/result/front.pcd").kind is FileKind.SIDECAR
    assert classify("scene/camera_config\n/front.pcd").kind is FileKind.POINT_CLOUD
    assert classify("scene/result\n/front.pcd").kind is FileKind.POINT_CLOUD


def test_sql_identifiers() -> None:
    assert database._identifier("u_demo") == "u_demo"
    with pytest.raises(BackendRejected):
        database._identifier("u_demo\n")


def test_pydantic_patterns_anchor_at_the_very_end() -> None:
    """Field(pattern=...) runs Rust's regex, where `$` is the end of the text: keep it so."""
    DatasetCreate(name="drive-01", displayName="d", dataType="IMAGE")
    with pytest.raises(ValidationError):
        DatasetCreate(name="drive-01\n", displayName="d", dataType="IMAGE")


def _dollar_patterns(tree: ast.Module) -> set[str]:
    """Module-level names bound to `re.compile("...$")`."""
    names = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "re.compile"
            and isinstance(pattern := node.value.args[0], ast.Constant)
            and str(pattern.value).endswith("$")
        ):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_no_validator_uses_match_with_a_dollar() -> None:
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            compiled = _dollar_patterns(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                target, method = ast.unparse(node.func.value), node.func.attr
                dollar_literal = (
                    target == "re"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).endswith("$")
                )
                if method == "match" and (target in compiled or dollar_literal):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"use fullmatch: {offenders}"
