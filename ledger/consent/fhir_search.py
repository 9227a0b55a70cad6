"""FHIR search over consents, and what the server says it does (its CapabilityStatement)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.consent import fhir, fhir_bundle, fhir_store, service
from ledger.consent.fhir_patient import error
from ledger.consent.fhir_service import alive, view
from ledger.consent.fhir_store import Keys
from ledger.consent.models import ConsentVersion, Subject

# -- search -----------------------------------------------------------------------------

SEARCH_PARAMS = ("patient", "subject", "status", "date", "identifier", "_count", "_format")
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


def _date_test(value: str) -> Any:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    text = value[2:] if value[:2] in _PREFIXES else value
    if value[:2].isalpha() and value[:2] not in _PREFIXES:
        raise error("date", f"prefix {value[:2]!r} is not supported; use one of {_PREFIXES}")
    start, end = fhir.date_range(text, "date")
    if start is None or end is None:
        raise error("date", "give a date, e.g. ge2016-01-01")

    def test(have: tuple[datetime | None, datetime | None]) -> bool:
        lo, hi = have
        if lo is None or hi is None:
            return False
        inside = lo >= start and hi <= end
        return {
            "eq": inside,
            "ne": not inside,
            "gt": hi > end,
            "lt": lo < start,
            "ge": hi > start,
            "le": lo < end,
        }[prefix]

    return test


def _subject_id(reference: str) -> str:
    return reference.rsplit("/", 1)[-1] if "/" in reference else reference


def search(
    session: Session,
    keys: Keys,
    params: Sequence[tuple[str, str]],
    *,
    base: str,
    self_url: str,
) -> dict[str, Any]:
    """``GET Consent?patient=&status=&date=&identifier=``: a searchset Bundle. Parameters
    are ANDed; commas in a value are ORs. A patient or an identifier is required."""
    unknown = sorted({name for name, _ in params} - set(SEARCH_PARAMS))
    if unknown:
        raise error(unknown[0], f"not a supported search parameter; use {SEARCH_PARAMS[:5]}")
    candidates: set[str] | None = None
    for name, value in params:
        if name in ("patient", "subject"):
            found: set[str] = set()
            for ref in value.split(","):
                sid = _subject_id(ref.strip())
                if session.get(Subject, sid) is not None:
                    alive(session, sid)
                ids = session.execute(
                    select(col(ConsentVersion.consent_id))
                    .where(col(ConsentVersion.subject_id) == sid)
                    .where(col(ConsentVersion.version) == 1)
                ).scalars()
                found |= set(ids) - fhir_store.exception_parts(session, sid)
            candidates = found if candidates is None else candidates & found
        elif name == "identifier":
            found = set()
            for item in value.split(","):
                system, bar, code = item.partition("|")
                if not bar or not system or not code:
                    raise error("identifier", "search by identifier=<system>|<value>")
                hit = fhir_store.by_identifier(session, keys.pseudonym_key, system, code)
                found |= {hit} if hit else set()
            candidates = found if candidates is None else candidates & found
    if candidates is None:
        raise error("patient", "search by patient (Patient/<subject id>) or identifier")
    statuses = [set(v.split(",")) for n, v in params if n == "status"]
    dates = [_date_test(v) for n, v in params if n == "date"]
    out: list[tuple[datetime, dict[str, Any]]] = []
    for consent_id in candidates:
        subject_id = service.current(session, consent_id).subject_id
        subject = session.get(Subject, subject_id)
        if subject is None or subject.erased_at is not None:
            continue
        resource, when = view(session, keys, consent_id)
        if any(resource["status"] not in s for s in statuses):
            continue
        if any(not test(when) for test in dates):
            continue
        out.append((service.history(session, consent_id)[0].recorded_at, resource))
    out.sort(key=lambda item: item[0], reverse=True)
    return fhir_bundle.searchset(base, self_url, [r for _, r in out])


# -- capabilities -----------------------------------------------------------------------


def capability(base: str, software_version: str) -> dict[str, Any]:
    """``GET metadata``: what this FHIR server does (R5 CapabilityStatement)."""
    consent_params = [
        ("patient", "reference", "Patient/<subject id>, as the ledger answers it"),
        ("subject", "reference", "the same as patient"),
        ("status", "token", "active or inactive"),
        ("date", "date", "the consent's own date (R4 dateTime, R5 date); eq ne gt lt ge le"),
        ("identifier", "token", "<system>|<value> of the Consent's identifier"),
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-02",
        "kind": "instance",
        "software": {"name": "ledger", "version": software_version},
        "implementation": {
            "description": "Consent and provenance ledger for medical-imaging AI",
            "url": base,
        },
        "fhirVersion": "5.0.0",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Consents are taken as R4 (4.0) or R5 (5.0) and answered in the version "
                    "they came in; consents recorded otherwise are answered as R5. Elements "
                    "the ledger cannot honour are refused (422), never dropped. Patients are "
                    "answered pseudonymously. Errors are OperationOutcome when the client "
                    "accepts application/fhir+json."
                ),
                "security": {"description": "Authorization: Bearer <ledger API key>"},
                "resource": [
                    {
                        "type": "Consent",
                        "interaction": [
                            {"code": c}
                            for c in (
                                "read",
                                "vread",
                                "update",
                                "create",
                                "search-type",
                                "history-instance",
                            )
                        ],
                        "versioning": "versioned-update",
                        "readHistory": True,
                        "updateCreate": False,
                        "conditionalCreate": True,
                        "conditionalUpdate": False,
                        "conditionalDelete": "not-supported",
                        "searchParam": [
                            {"name": n, "type": t, "documentation": d} for n, t, d in consent_params
                        ],
                    },
                    {"type": "Patient", "interaction": [{"code": "read"}]},
                ],
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
