"""Release over DICOMweb: QIDO-RS search and WADO-RS retrieve under a grant (PS3.18).

The same release, through the standard's read routes: every call opens the grant exactly
as ``release.manifest_page``, ``release.instance`` and ``release.download`` do (header,
own grant, not revoked), works only on the grant's frozen manifest, re-checks
eligibility now, logs what it releases (``release.prepare``: one ``release.instances``
entry per call) and logs refusals in a transaction of their own
(``release._logging_refusals``).

What a pipeline sees is de-identified: the manifest holds the de-identified SOP Instance
UIDs, and the study and series UIDs are derived on the fly by the same per-grant engine
(``release.deidentifier``; ``Deidentifier.uid`` is the same HMAC the de-identified files
carry), so nothing new is stored and a study looks the same in a search and in its files.
Searches answer UIDs, modality, SOP class and counts only: no names, identifiers or dates
(dates are shifted per patient inside the files, and only there).

An instance no longer eligible (or quarantined by the index, as release refuses it) is
left out of searches and retrievals and counted in a ``Warning`` (PS3.18 §8.3.5.1 lets a
response carry warnings); it is never served. A study or series whose instances are all
no longer eligible answers 410, an instance 410, as ``release.instance`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access.archive import Quarantined, render
from ledger.access.grant_manifest import Instance
from ledger.access.models import GrantImage
from ledger.access.release import (
    Desk,
    NoLongerEligible,
    NotReleasable,
    OpenGrant,
    Refused,
    _logging_refusals,
    _may_show_text,
    deidentifier,
    eligibility_now,
    open_grant,
    prepare,
)
from ledger.errors import InvalidInput, NotFound
from ledger.images.models import Image

Level = Literal["studies", "series", "instances"]

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
SOP_CLASS_UID, MODALITY, MODALITIES_IN_STUDY = "00080016", "00080060", "00080061"
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = "00201206", "00201208", "00201209"

# Query keys a search matches on (single-value or UID-list matching), by keyword and tag.
MATCH_KEYS = {
    "StudyInstanceUID": STUDY_UID,
    "SeriesInstanceUID": SERIES_UID,
    "SOPInstanceUID": SOP_UID,
    "SOPClassUID": SOP_CLASS_UID,
    "Modality": MODALITY,
    "ModalitiesInStudy": MODALITIES_IN_STUDY,
}
IGNORED_KEYS = {"includefield", "fuzzymatching"}
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Row:
    """A manifest instance with its de-identified place in the study hierarchy."""

    instance: Instance
    study: str
    series: str
    sop_class: str
    modality: str
    may_show_text: bool  # release's quarantine rule, from the index


@dataclass
class Found:
    """A search's matches as DICOM JSON, and what was left out as no longer eligible."""

    matches: list[dict[str, Any]]
    left_out: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Retrieved:
    """De-identified files to stream; how many were released and left out is known first."""

    files: Iterator[bytes]
    released: int
    left_out: int


def _rows(session: Session, desk: Desk, opened: OpenGrant) -> list[Row]:
    engine = deidentifier(desk.keys, opened.grant.id, opened.purpose)
    out = []
    for position, image_id, deid_uid, study, series, sop_class, modality, burned in session.execute(
        select(
            col(GrantImage.position),
            col(GrantImage.image_id),
            col(GrantImage.deid_uid),
            col(Image.study_uid),
            col(Image.series_uid),
            col(Image.sop_class_uid),
            col(Image.modality),
            col(Image.burned_in),
        )
        .join(Image, col(Image.id) == col(GrantImage.image_id))
        .where(col(GrantImage.grant_id) == opened.grant.id)
        .order_by(col(GrantImage.position))
    ):
        if study is None or series is None:
            continue  # erased since the grant was issued: nothing of it is released
        out.append(
            Row(
                Instance(position, image_id, deid_uid),
                engine.uid(study),
                engine.uid(series),
                sop_class or "",
                modality or "",
                _may_show_text(sop_class, burned),
            )
        )
    return out


def _value(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def _match(query: Mapping[str, list[str]]) -> tuple[dict[str, set[str]], int, int, list[str]]:
    """The attribute filters, offset and limit of a QIDO query, and warnings for the keys
    it ignores."""
    filters: dict[str, set[str]] = {}
    warnings = []
    offset, limit = 0, MAX_LIMIT
    tags = {
        **{k.lower(): v for k, v in MATCH_KEYS.items()},
        **{v.lower(): v for v in MATCH_KEYS.values()},
    }
    for key, values in query.items():
        name = key.lower()
        if name in ("offset", "limit"):
            try:
                number = int(values[-1])
            except ValueError:
                raise InvalidInput(f"{key} must be a whole number") from None
            if number < 0:
                raise InvalidInput(f"{key} must not be negative")
            offset, limit = (
                (number, limit) if name == "offset" else (offset, min(number, MAX_LIMIT))
            )
        elif name in tags:
            wanted = {v.strip() for value in values for v in value.split(",") if v.strip()}
            if wanted:
                filters[tags[name]] = wanted
        elif name not in IGNORED_KEYS:
            warnings.append(f"the query key {key[:64]} is not supported and was ignored")
    return filters, offset, limit, warnings


def _attributes(level: Level, rows: list[Row]) -> dict[str, Any]:
    first = rows[0]
    if level == "studies":
        return {
            MODALITIES_IN_STUDY: _value("CS", *sorted({r.modality for r in rows if r.modality})),
            STUDY_SERIES: _value("IS", len({r.series for r in rows})),
            STUDY_INSTANCES: _value("IS", len(rows)),
            STUDY_UID: _value("UI", first.study),
        }
    if level == "series":
        return {
            MODALITY: _value("CS", first.modality),
            STUDY_UID: _value("UI", first.study),
            SERIES_UID: _value("UI", first.series),
            SERIES_INSTANCES: _value("IS", len(rows)),
        }
    return {
        SOP_CLASS_UID: _value("UI", first.sop_class),
        SOP_UID: _value("UI", first.instance.deid_uid),
        MODALITY: _value("CS", first.modality),
        STUDY_UID: _value("UI", first.study),
        SERIES_UID: _value("UI", first.series),
    }


def _key(level: Level, row: Row) -> tuple[str, ...]:
    if level == "studies":
        return (row.study,)
    if level == "series":
        return (row.study, row.series)
    return (row.study, row.series, row.instance.deid_uid)


def _matches(filters: dict[str, set[str]], group: list[Row]) -> bool:
    """Whether a group (a study, a series or an instance) has each filtered value."""
    values: dict[str, Callable[[Row], str]] = {
        STUDY_UID: lambda r: r.study,
        SERIES_UID: lambda r: r.series,
        SOP_UID: lambda r: r.instance.deid_uid,
        SOP_CLASS_UID: lambda r: r.sop_class,
        MODALITY: lambda r: r.modality,
        MODALITIES_IN_STUDY: lambda r: r.modality,
    }
    return all(any(values[tag](r) in wanted for r in group) for tag, wanted in filters.items())


def _within(rows: list[Row], study: str | None, series: str | None) -> list[Row]:
    return [
        r
        for r in rows
        if (study is None or r.study == study) and (series is None or r.series == series)
    ]


def _eligible(
    session: Session, desk: Desk, opened: OpenGrant, rows: list[Row]
) -> tuple[list[Row], int]:
    if not rows:
        return [], 0
    classes = eligibility_now(session, desk.policies, opened, [r.instance for r in rows])
    kept = [r for r, c in zip(rows, classes, strict=True) if c.eligible and not r.may_show_text]
    return kept, len(rows) - len(kept)


def search(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    level: Level,
    query: Mapping[str, list[str]],
    *,
    pipeline_id: str,
    study: str | None = None,
    series: str | None = None,
) -> Found:
    """QIDO-RS at ``level`` (within ``study`` and ``series`` when given): the grant's
    instances eligible now, grouped and matched; the others are only counted."""

    def run() -> Found:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        filters, offset, limit, warnings = _match(query)
        scope = _within(_rows(session, desk, opened), study, series)
        if study is not None and not scope:
            raise NotFound("no such study (or series) in this grant")
        kept, left_out = _eligible(session, desk, opened, scope)
        groups: dict[tuple[str, ...], list[Row]] = {}
        for row in kept:
            groups.setdefault(_key(level, row), []).append(row)
        matched = [g for g in groups.values() if _matches(filters, g)]
        if left_out:
            warnings.append(f"{left_out} instance(s) are no longer eligible and were left out")
        page = matched[offset : offset + limit]
        if offset + limit < len(matched):
            warnings.append(f"{len(matched) - offset - limit} more match(es): use offset")
        return Found([_attributes(level, g) for g in page], left_out, warnings)

    return _logging_refusals(desk, session, grant_id, pipeline_id, run)


def retrieve(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    *,
    pipeline_id: str,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Retrieved:
    """WADO-RS: the de-identified files of a study, a series or one instance of the
    grant. Those no longer eligible are left out (and counted); if nothing is left, 410.
    A study or series holds one of the grant's download slots until its stream ends."""

    def run() -> Retrieved:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        scope = _within(_rows(session, desk, opened), study, series)
        if sop is not None:
            scope = [r for r in scope if r.instance.deid_uid == sop]
        if not scope:
            raise NotFound("no such study, series or instance in this grant's manifest")
        whole = sop is None
        if whole:
            desk.slots.take(grant_id)
        try:
            ready, refused = prepare(
                session,
                desk.keys,
                desk.policies,
                opened,
                [r.instance for r in scope],
                actor=pipeline_id,
            )
            if not ready:
                raise NoLongerEligible(_summary(refused))
        except BaseException:
            if whole:
                desk.slots.give(grant_id)
            raise
        engine = deidentifier(desk.keys, grant_id, opened.purpose)
        if not whole:
            try:
                data = render(desk.store, engine, ready[0])
            except Quarantined as exc:
                raise NotReleasable(exc.reasons) from exc
            return Retrieved(iter([data]), 1, 0)

        def files() -> Iterator[bytes]:
            try:
                for item in ready:
                    try:
                        yield render(desk.store, engine, item)
                    except Quarantined:
                        continue  # withheld, never sent (the headers have gone already)
            finally:
                desk.slots.give(grant_id)

        return Retrieved(files(), len(ready), len(refused))

    return _logging_refusals(desk, session, grant_id, pipeline_id, run)


def _summary(refused: list[Refused]) -> Refused:
    if len(refused) == 1:
        return refused[0]
    policy_ids = tuple(sorted({p for r in refused for p in r.policy_ids}))
    reasons = tuple(dict.fromkeys(reason for r in refused for reason in r.reasons))
    return Refused(f"{len(refused)} instances", policy_ids, reasons)
