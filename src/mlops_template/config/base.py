"""The base of every params.yaml section's model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One section of params.yaml: an unknown key is an error (a typo is not ignored), and the
    values cannot change once parsed (every stage sees what was validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
