"""Shared fixtures.

The integration tier runs against the real local stack. `stack_settings` starts it when it is
not running (`annostack dev up`, idempotent) and fails the run loudly when it cannot: a missing
server is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from annostack.devstack.stack import Stack
from annostack.settings import Settings


@pytest.fixture(scope="session")
def local_stack(pytestconfig: pytest.Config) -> Stack:
    stack = Stack()
    # Building the stack on a fresh machine takes minutes: show its progress, uncaptured.
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        stack.up()
    return stack


@pytest.fixture(scope="session")
def stack_settings(local_stack: Stack) -> Iterator[Settings]:
    """Product settings pointing at the local stack, exactly as `annostack dev env` prints."""
    saved = dict(os.environ)
    os.environ.update(local_stack.client_env())
    try:
        yield Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
