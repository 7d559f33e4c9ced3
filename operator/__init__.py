"""The kopf operator: reconciles Tenant, Dataset and ProcessingJob into tenant stacks."""
