"""Bulk consent import from CSV: all rows or none.

Format (UTF-8, optional BOM, header row required, comma-separated):

=================  ========  =====================================================
column             required  content
=================  ========  =====================================================
issuer             yes       assigning authority of the patient id
patient_id         yes       the hospital's patient id (stored only as a pseudonym)
decision           yes       ``permit`` or ``deny``
purposes           yes       purpose codes separated by ``;`` (``ai.training;HMB``)
modifiers          no        modifier codes separated by ``;`` (``NCU;IRB``)
modalities         no        DICOM modalities separated by ``;`` (``CT;MR``)
body_parts         no        DICOM body parts separated by ``;`` (``CHEST``)
study_date_from    no        ``YYYY-MM-DD``
study_date_to      no        ``YYYY-MM-DD``
valid_from         no        ISO 8601 instant with zone, or date (default: now)
valid_until        no        ISO 8601 instant with zone, or date
evidence_sha256    no        SHA-256 (hex) of the signed form
sex, birth_year,   no        coarse demographics for subjects seen the first time
site
=================  ========  =====================================================

Every row is checked before anything is written; the report lists every bad line (up to
``MAX_ERRORS``) with its number, so a registrar fixes the file once.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from ledger.clock import utcnow
from ledger.consent import subjects
from ledger.consent.models import ConsentVersion
from ledger.consent.purposes import PurposeTree, tree
from ledger.consent.schemas import ConsentContent, ImportReport, Source, SubjectCreate
from ledger.consent.service import log_data_with, version_values
from ledger.db import bulk_insert
from ledger.dbtypes import table_of
from ledger.errors import InvalidInput
from ledger.provenance import log

REQUIRED = ("issuer", "patient_id", "decision", "purposes")
OPTIONAL = (
    "modifiers",
    "modalities",
    "body_parts",
    "study_date_from",
    "study_date_to",
    "valid_from",
    "valid_until",
    "evidence_sha256",
    "sex",
    "birth_year",
    "site",
)
MAX_ERRORS = 100
BATCH = 5_000


class ImportFailed(InvalidInput):
    """Nothing was imported; ``errors`` lists the bad lines."""


@dataclass
class Row:
    line: int
    patient: subjects.PatientRef
    content: ConsentContent


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "error": message})


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [v for v in value.replace(",", ";").replace(" ", ";").split(";") if v]


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        d = date.fromisoformat(value)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFailed(
            f"line {line}: the file is not UTF-8; save it as CSV UTF-8",
            errors=[{"line": line, "error": "not UTF-8"}],
        ) from exc


CONSENT_COLUMNS = (
    "decision",
    "purposes",
    "modifiers",
    "modalities",
    "body_parts",
    "study_date_from",
    "study_date_to",
    "valid_from",
    "valid_until",
    "evidence_sha256",
)


def _content(t: PurposeTree, get: dict[str, str]) -> ConsentContent:
    for code in _split(get["purposes"]):
        t.validate(code)
    content = ConsentContent(
        decision=get["decision"].lower(),
        purposes=_split(get["purposes"]),
        modifiers=[m.upper() for m in _split(get.get("modifiers"))],
        scope={
            "modalities": _split(get.get("modalities")),
            "body_parts": _split(get.get("body_parts")),
            "study_date_from": get.get("study_date_from") or None,
            "study_date_to": get.get("study_date_to") or None,
        },
        valid_from=_instant(get.get("valid_from")),
        valid_until=_instant(get.get("valid_until")),
        evidence_sha256=get.get("evidence_sha256") or None,
    )
    t.validate_modifiers(content.modifiers)
    return content


def _patient(get: dict[str, str]) -> subjects.PatientRef:
    """The row's patient, checked by the JSON API's own validator (``SubjectCreate``)."""
    checked = SubjectCreate(
        issuer=get["issuer"],
        patient_id=get["patient_id"],
        sex=get.get("sex") or None,
        birth_year=get.get("birth_year") or None,  # text: validated and parsed as the API does
        site=get.get("site") or None,
    )
    demographics = subjects.Demographics(checked.sex, checked.birth_year, checked.site)
    return subjects.PatientRef(checked.issuer, checked.patient_id, demographics)


def parse(text: str) -> Parsed:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        raise ImportFailed(
            "line 1: " + "; ".join(problems) + f". Columns: {', '.join(REQUIRED + OPTIONAL)}",
            errors=[{"line": 1, "error": "; ".join(problems)}],
        )
    reader.fieldnames = header
    parsed = Parsed()
    t = tree()
    # Consent forms repeat: rows with the same consent columns share one validated object.
    contents: dict[tuple[str, ...], ConsentContent] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            parsed.error(line, "more fields than columns")
            continue
        get = {k: (v or "").strip() for k, v in record.items()}
        try:
            key = tuple(get.get(c, "") for c in CONSENT_COLUMNS)
            content = contents.get(key) or _content(t, get)
            contents[key] = content
            if not get["issuer"] or not get["patient_id"]:
                raise ValueError("issuer and patient_id are required")
            patient = _patient(get)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            parsed.error(line, f"{where}: {first.get('msg')}" if where else str(first.get("msg")))
            continue
        except InvalidInput as exc:
            parsed.error(line, exc.detail)
            continue
        except ValueError as exc:
            parsed.error(line, str(exc))
            continue
        parsed.rows.append(Row(line, patient, content))
    if not parsed.rows and not parsed.errors:
        parsed.error(2, "the file has a header but no rows")
    _contradictions(parsed)
    return parsed


def _contradictions(parsed: Parsed) -> None:
    """The same patient, purposes and scope both permitted and denied over overlapping
    periods in one file is a mistake in the file, not something to resolve silently."""
    seen: dict[tuple[Any, ...], list[Row]] = {}
    for row in parsed.rows:
        c = row.content
        key = (
            row.patient.issuer,
            row.patient.patient_id,
            tuple(sorted(set(c.purposes))),
            c.scope.model_dump_json(),
        )
        for other in seen.get(key, []):
            o = other.content
            if o.decision != c.decision and _overlap(o, c):
                parsed.error(
                    row.line,
                    f"contradicts line {other.line}: same patient and purposes, "
                    f"{o.decision.value} and {c.decision.value} over overlapping periods",
                )
        seen.setdefault(key, []).append(row)


def _overlap(a: ConsentContent, b: ConsentContent) -> bool:
    lo = datetime.min.replace(tzinfo=UTC)
    hi = datetime.max.replace(tzinfo=UTC)
    return (a.valid_from or lo) < (b.valid_until or hi) and (b.valid_from or lo) < (
        a.valid_until or hi
    )


def check(parsed: Parsed) -> None:
    if parsed.errors:
        raise ImportFailed(
            f"{len(parsed.errors)} bad line(s); nothing was imported "
            f"(first: line {parsed.errors[0]['line']}: {parsed.errors[0]['error']})",
            errors=parsed.errors,
        )


def import_rows(
    session: Session,
    key: bytes,
    parsed: Parsed,
    *,
    actor: str | None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Write every row (all or nothing: the caller's transaction)."""
    check(parsed)
    now = utcnow()
    subject_ids, created, commitments = subjects.get_or_create_many(
        session, key, [r.patient for r in parsed.rows], actor=actor
    )
    versions: list[dict[str, Any]] = []
    shared: dict[int, dict[str, Any]] = {}  # rows sharing a consent text share its values
    for row, sid in zip(parsed.rows, subject_ids, strict=True):
        base = shared.get(id(row.content))
        if base is None:
            try:
                base = version_values(
                    "",
                    1,
                    "",
                    row.content,
                    event="granted",
                    source=Source.csv,
                    actor=actor,
                    now=now,
                )
            except InvalidInput as exc:
                raise ImportFailed(f"line {row.line}: {exc.detail}; nothing was imported") from exc
            shared[id(row.content)] = base
        versions.append({**base, "consent_id": str(uuid.uuid4()), "subject_id": sid})
    for chunk in _chunks(versions):
        bulk_insert(session, table_of(ConsentVersion), chunk)
        log.append_many(
            session,
            [("consent.recorded", log_data_with(commitments[v["subject_id"]], v)) for v in chunk],
            actor=actor,
        )
        if progress is not None:
            progress(len(chunk))
    return ImportReport(imported=len(versions), subjects_created=created)


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]
