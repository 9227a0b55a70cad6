"""Field types for the API's shapes, built on ``ledger.limits``: what an identifier, a name,
free text and an instant may be. Every front door validates through the same schemas, so
the API, the CSV import, FHIR and the CLI refuse the same values.

Use with ``Field`` for lengths: ``name: Name = Field(min_length=1, max_length=200)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from ledger.limits import MAX_INT, instant_problem, label_problem, text_problem

__all__ = ["BigInt", "FreeText", "Identifier", "Instant", "Name"]


def _label(value: str) -> str:
    problem = label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _instant(value: datetime) -> datetime:
    problem = instant_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# Identifiers (ids, UIDs, codes, issuers) and names people read (principals, datasets,
# models, sites): printable, without controls, bidi overrides or zero-width characters.
Identifier = Annotated[str, AfterValidator(_label)]
Name = Annotated[str, AfterValidator(_label)]
# Justifications, comments, reasons, descriptions: may keep tabs and line breaks.
FreeText = Annotated[str, AfterValidator(_text)]
# An instant both databases store and every zone converts: years 1900 to 2999 in UTC.
Instant = Annotated[datetime, AfterValidator(_instant)]
# An integer both databases store.
BigInt = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
