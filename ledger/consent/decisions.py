"""The two answers a consent gives: a plain enum, no pydantic, so the CLI can name it in its
options without loading the API models."""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    permit = "permit"
    deny = "deny"
