from __future__ import annotations

import pytest
from pydantic import ValidationError

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
