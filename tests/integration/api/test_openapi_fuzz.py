"""Schemathesis over the whole OpenAPI of the running API: generated requests never get a 5xx.

Driven through Hypothesis directly (schemathesis' pytest fixture integration does not run on
pytest 9), one property per operation, with a real tenant token so requests get past auth.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.api.conftest import ApiTenant

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 25


def test_no_operation_answers_5xx(api: httpx.Client, tenant_a: ApiTenant) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    base_url = str(api.base_url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def property_(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=tenant_a.auth)
            case.validate_response(response, checks=(not_a_server_error,))

        property_()
