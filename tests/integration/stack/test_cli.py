"""`annostack dev status | env` against the running stack."""

from __future__ import annotations

import shlex

import pytest
from typer.testing import CliRunner

from annostack.cli import app
from annostack.devstack.stack import Stack

pytestmark = pytest.mark.integration


def test_status_lists_every_component_ready_and_the_add_ons_left_off(local_stack: Stack) -> None:
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 0, result.output
    for component in local_stack.components:
        line = next(line for line in result.output.splitlines() if component.name in line)
        if component.wanted:
            assert "ready" in line and "not ready" not in line
        else:  # KEDA, unless ANNOSTACK_DEV_KEDA=true
            assert " off " in line, line


def test_env_prints_exports_for_every_setting(local_stack: Stack) -> None:
    result = CliRunner().invoke(app, ["dev", "env"])
    assert result.exit_code == 0, result.output
    exported = {}
    for line in result.output.splitlines():
        keyword, assignment = line.split(" ", 1)
        assert keyword == "export"
        key, value = assignment.split("=", 1)
        exported[key] = shlex.split(value)[0]
    assert exported == local_stack.client_env()
    assert {
        "KUBECONFIG",
        "ANNOSTACK_DB__HOST",
        "ANNOSTACK_S3__ENDPOINT",
        "ANNOSTACK_PULSAR__SERVICE_URL",
        "ANNOSTACK_REDIS__URL",
    } <= exported.keys()
