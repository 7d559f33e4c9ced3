"""From a namespaced resource (Dataset, ProcessingJob) to its tenant's own connections."""

from __future__ import annotations

import kopf

from annostack.domain.tenants import TenantNames
from annostack.services.tenancy import TenantContext, TenantDirectory


def tenant_context(memo: kopf.Memo, namespace: str | None) -> TenantContext:
    """The tenant owning `namespace`, with a pool as that tenant's database user.

    Datasets and ProcessingJobs only mean something in a tenant's namespace; anywhere else is
    a mistake a person has to fix, so it is a permanent error with the reason.
    """
    names = TenantNames.of_namespace(namespace or "")
    if names is None:
        raise kopf.PermanentError(
            f"namespace {namespace!r} is not a tenant namespace (tenant-<name>); "
            "create Datasets and ProcessingJobs in the namespace of their Tenant"
        )
    directory: TenantDirectory = memo["directory"]
    return directory.get(names.tenant)  # UnknownTenant until the Tenant is provisioned
