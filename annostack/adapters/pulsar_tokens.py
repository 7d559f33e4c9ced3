"""Pulsar JWTs (AuthenticationProviderToken, HS256) and the clients' token authentication.

A token's `sub` is the role the broker authorises. annostack issues them itself with the
broker's secret key (`tokenSecretKey`, base64 of the raw key): one role per tenant and
rotation, so that retiring a rotated token is a revoked namespace permission — Pulsar cannot
revoke a token, only what its role may do. Tokens carry no expiry for the same reason: access
ends with the permission, not the token. In production the operator holds the signing key; a
deployment that keeps the key elsewhere gives the operator another `TokenIssuer` (a call to
its token service) instead.
"""

from __future__ import annotations

import base64
from typing import Protocol

import jwt
import pulsar


class TokenIssuer(Protocol):
    def issue(self, role: str) -> str:
        """A token whose subject is `role`."""


class SecretKeyIssuer:
    """Signs HS256 tokens with the broker's own secret key."""

    def __init__(self, key_base64: str) -> None:
        self._key = base64.b64decode(key_base64)

    def issue(self, role: str) -> str:
        return jwt.encode({"sub": role}, self._key, algorithm="HS256")


def role_of(token: str) -> str:
    """The role a token stands for (read without verifying: only the broker verifies)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims.get("sub", ""))


def client_authentication(token: str) -> pulsar.Authentication | None:
    """pulsar-client authentication for `token`; None when the broker has no authentication."""
    return pulsar.AuthenticationToken(token) if token else None
