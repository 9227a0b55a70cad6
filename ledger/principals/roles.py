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


class OrganisationType(enum.StrEnum):
    """What kind of organisation a principal acts for; NPU (DUO:0000045) consents serve only
    ``not_for_profit``, and ``unknown`` counts as for-profit (fail closed)."""

    for_profit = "for_profit"
    not_for_profit = "not_for_profit"
    unknown = "unknown"


class PrincipalKind(enum.StrEnum):
    person = "person"
    pipeline = "pipeline"
