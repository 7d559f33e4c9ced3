import os

import pytest


@pytest.fixture(autouse=True)
def _no_stack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no ANNOSTACK_* variables from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("ANNOSTACK_"):
            monkeypatch.delenv(key)
