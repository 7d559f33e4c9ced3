"""From a kopf `spec` to the typed model every handler works with."""

from __future__ import annotations

from typing import TypeVar

import kopf
from pydantic import BaseModel, ValidationError

Spec = TypeVar("Spec", bound=BaseModel)


def parse_spec(model: type[Spec], spec: kopf.Spec, kind: str) -> Spec:
    """The validated spec; a PermanentError naming the problem if it is invalid.

    The CRD schema rejects most bad specs at the apiserver; what it cannot express is a
    permanent error a person has to fix, so kopf must not retry it.
    """
    try:
        return model.model_validate(dict(spec))
    except ValidationError as error:
        raise kopf.PermanentError(f"invalid {kind} spec: {error}") from error
