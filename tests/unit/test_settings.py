from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from annostack.apps.settings import ApiSettings
from annostack.settings import Settings


def test_reads_nested_sections_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOSTACK_DB__PORT", "13306")
    monkeypatch.setenv("ANNOSTACK_S3__SECRET_KEY", "s3cret")
    settings = Settings()
    assert settings.db.port == 13306
    assert settings.s3.secret_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_refuses_empty_credentials_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOSTACK_ENVIRONMENT", "prod")
    monkeypatch.setenv("ANNOSTACK_S3__ACCESS_KEY", "key")
    with pytest.raises(ValidationError, match="ANNOSTACK_DB__ADMIN_PASSWORD") as error:
        Settings()
    assert "ANNOSTACK_S3__ACCESS_KEY" not in str(error.value)


PROD_SECRETS = {
    "ANNOSTACK_DB__ADMIN_PASSWORD": "a-real-password",
    "ANNOSTACK_S3__ACCESS_KEY": "a-real-key",
    "ANNOSTACK_S3__SECRET_KEY": "a-real-secret",
}


def test_refuses_dev_only_placeholders_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dev overlay's generated Secret, copied into prod.
    for name, value in {**PROD_SECRETS, "ANNOSTACK_ENVIRONMENT": "test"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANNOSTACK_S3__SECRET_KEY", "dev-only-secret-key")
    with pytest.raises(ValidationError, match=r"set ANNOSTACK_S3__SECRET_KEY \[type"):
        Settings()


def test_api_refuses_the_default_session_key_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOSTACK_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="ANNOSTACK_API_SESSION_KEY"):
        ApiSettings()
    monkeypatch.setenv("ANNOSTACK_API_SESSION_KEY", "short")
    with pytest.raises(ValidationError, match=r"ANNOSTACK_API_SESSION_KEY \(at least 32"):
        ApiSettings()
    monkeypatch.setenv("ANNOSTACK_API_SESSION_KEY", "k" * 32)
    assert ApiSettings().environment == "prod"


def test_api_admin_gateway_refuses_a_placeholder_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOSTACK_ENVIRONMENT", "prod")
    monkeypatch.setenv("ANNOSTACK_API_SESSION_KEY", "k" * 32)
    monkeypatch.setenv("ANNOSTACK_API_ADMIN_TOKEN", "dev-only-admin-token")
    assert ApiSettings(gateway="open").gateway == "open", "only the admin gateway uses it"
    with pytest.raises(ValidationError, match=r"set ANNOSTACK_API_ADMIN_TOKEN \[type"):
        ApiSettings(gateway="admin")


def test_dev_accepts_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOSTACK_ENVIRONMENT", "dev")
    assert ApiSettings().session_key.get_secret_value().startswith("dev-only-")
    assert Settings().db.admin_password.get_secret_value() == ""


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (["operator", "run"], ["ANNOSTACK_DB__ADMIN_PASSWORD", "ANNOSTACK_S3__SECRET_KEY"]),
        (["api", "run"], ["ANNOSTACK_DB__ADMIN_PASSWORD"]),
        (["api", "run"], ["ANNOSTACK_API_SESSION_KEY"]),
        (["api", "token", "demo"], ["ANNOSTACK_DB__ADMIN_PASSWORD"]),
    ],
)
def test_every_process_refuses_to_start_with_a_default_secret(
    command: list[str], variables: list[str]
) -> None:
    """The real entry points, outside dev, with one secret each left unset: one line, exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNOSTACK_")}
    env.update({**PROD_SECRETS, "ANNOSTACK_API_SESSION_KEY": "k" * 32})
    env["ANNOSTACK_ENVIRONMENT"] = "prod"
    for variable in variables:
        env.pop(variable)
    done = subprocess.run(
        [sys.executable, "-m", "annostack", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert all(variable in lines[0] for variable in variables), lines[0]
    assert "a-real-" not in done.stderr and "kkkk" not in done.stderr, "no secret echoed"
