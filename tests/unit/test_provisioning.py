"""Provisioning logic that real backends cannot easily be made to exercise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

from annostack.domain.conditions import ConditionType
from annostack.domain.errors import Backend, BackendUnavailable
from annostack.domain.tenants import TenantSpec
from annostack.services.tenants import TenantProvisioner
from annostack.settings import Settings


def test_an_unreadable_secret_never_rotates_the_database_password() -> None:
    kube_down = BackendUnavailable(Backend.KUBERNETES, "connection refused")
    backends: Any = SimpleNamespace(
        settings=Settings(),
        kube=MagicMock(
            **{f"{call}.side_effect": kube_down for call in ("secret_data", "apply", "get")}
        ),
        db=MagicMock(),
        s3=MagicMock(),
        pulsar=MagicMock(),
    )
    report = TenantProvisioner(backends).reconcile("acme", TenantSpec(display_name="Acme"))
    database = next(r for r in report.results if r.condition == ConditionType.DATABASE_READY)
    assert not database.ok and database.temporary
    assert "cannot read the tenant's Secret" in database.message
    backends.db.ensure_user.assert_not_called()
