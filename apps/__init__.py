"""The tenant-facing HTTP apps (user, open API, admin gateways) built on FastAPI."""
