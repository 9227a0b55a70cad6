"""What a principal is and may do: plain enums, no database import, so the CLI can name them
in its options without loading SQLAlchemy."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    admin = "admin"
    registrar = "registrar"
    curator = "curator"
    steward = "steward"
    pipeline = "pipeline"
    auditor = "auditor"


class PrincipalKind(enum.StrEnum):
    person = "person"
    pipeline = "pipeline"
